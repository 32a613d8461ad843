package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"sando.dev/sando/client"
	sandorun "sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

const (
	bLatency    = "1. Hand-off latency"
	bThroughput = "2. Run throughput"
	bPoll       = "3. Poll cost"
	bLongPoll   = "4. Long-poll capacity"
	bFootprint  = "5. Footprint"
	bBacklog    = "6. Queue layout under a backlog"
)

// chainQueue is the bare chains' queue: not one of Sando's.
const chainQueue = "bench-chain"

// worst tracks the speed goal furthest from being met, for the CPU
// profile (command counts are explained by their per-command breakdown).
type gap struct {
	score    float64 // achieved ÷ required (higher is better); < 1 misses
	scenario string
	what     string
}

func (b *bench) track(score float64, scenario, what string) {
	if b.worst == nil || score < b.worst.score {
		b.worst = &gap{score: score, scenario: scenario, what: what}
	}
}

// ---------------------------------------------------------------- 1. latency

func (b *bench) latency(ctx context.Context) error {
	o := b.opt
	sando, chain, floorV, naive := newPair(), newPair(), newPair(), newPair()
	fl := newFloor(b.repo, b.sha, filepath.Join(b.work, "floor-lat"))
	// Repetitions interleave Sando and its baselines, so a neighbour's
	// load on a shared machine hits them alike.
	for rep := range o.Reps {
		s, err := b.startStack(stackOpts{Pipeline: pipelineSpec{Name: "lat", Repo: b.repo}, Workers: 1, Concurrency: o.Concurrency})
		if err != nil {
			return err
		}
		a := newAPI(s.API.Addr, b.sha)
		err = sando.sample(o.LatencyRuns, 2, func() (time.Duration, error) {
			t0 := time.Now()
			id, err := a.Rebuild(ctx)
			if err != nil {
				return 0, err
			}
			v, err := a.WaitUntil(ctx, id, time.Minute, terminal)
			if err != nil {
				return 0, err
			}
			if v.Result != "passed" {
				return 0, fmt.Errorf("run %d %s: %v", id, v.Result, v.FailureSummary)
			}
			return time.Since(t0), nil
		})
		s.Stop()
		if err != nil {
			return err
		}
		if err := b.redis.Flush(ctx); err != nil {
			return err
		}
		ch, err := startChains(b.redis.Addr, 1, o.Concurrency, o.PollInterval)
		if err != nil {
			return err
		}
		err = chain.sample(o.LatencyRuns, 2, func() (time.Duration, error) { return ch.One(ctx) })
		ch.Stop()
		if err != nil {
			return err
		}
		err = floorV.sample(o.LatencyRuns, 1, func() (time.Duration, error) {
			t0 := time.Now()
			err := fl.One(ctx)
			return time.Since(t0), err
		})
		if err != nil {
			return err
		}
		b.logf("rep %d p50: sando %.1f ms, bare chain %.1f ms, floor %.1f ms", rep+1,
			last(sando[0]), last(chain[0]), last(floorV[0]))
	}
	chd, err := startChains(b.redis.Addr, 1, o.Concurrency, 0)
	if err != nil {
		return err
	}
	for range o.Reps {
		if err := naive.sample(o.DefaultRuns, 0, func() (time.Duration, error) { return chd.One(ctx) }); err != nil {
			chd.Stop()
			return err
		}
	}
	chd.Stop()
	b.logf("bare chain at asynq's default p50 %s", naive[0])

	sum := func(x, y value) value {
		out := value{Unit: "ms"}
		for i := range min(len(x.Samples), len(y.Samples)) {
			out.Samples = append(out.Samples, x.Samples[i]+y.Samples[i])
		}
		return out
	}
	interval := o.PollInterval.String()
	for i, q := range []string{"p50", "p99"} {
		b.report.add(line{Bench: bLatency, Measure: "POST /rebuild → result=passed, " + q + ", one worker, idle", Sando: sando[i], Bases: []base{
			{"bare asynq chain of 4, TaskCheckInterval " + interval, chain[i]},
			{"same chain at asynq's default (1 s)", naive[i]},
			{"floor: same git + commands, no queue", floorV[i]},
			{"floor + bare chain", sum(floorV[i], chain[i])},
		}})
	}
	limit := floorV[0].Median() + chain[0].Median() + 10
	got := sando[0].Median()
	b.report.goal(bLatency, "p50 ≤ floor + bare chain + 10 ms", got <= limit,
		"%.1f ms vs %.1f + %.1f + 10 = %.1f ms", got, floorV[0].Median(), chain[0].Median(), limit)
	b.report.goal(bLatency, "p50 < 100 ms on this machine", got < 100, "%.1f ms", got)
	b.track(limit/got, "latency", "hand-off latency p50 vs floor + bare chain + 10 ms")
	return nil
}

// pair is the p50 and p99 (ms) of each repetition.
type pair [2]value

func newPair() *pair { return &pair{{Unit: "ms"}, {Unit: "ms"}} }

// sample runs fn n times (after warm unmeasured calls) and adds the
// repetition's p50 and p99.
func (p *pair) sample(n, warm int, fn func() (time.Duration, error)) error {
	for range warm {
		if _, err := fn(); err != nil {
			return err
		}
	}
	var xs []float64
	for range n {
		d, err := fn()
		if err != nil {
			return err
		}
		xs = append(xs, ms(d))
	}
	p[0].Samples = append(p[0].Samples, percentile(xs, 50))
	p[1].Samples = append(p[1].Samples, percentile(xs, 99))
	return nil
}

func last(v value) float64 { return v.Samples[len(v.Samples)-1] }

// ---------------------------------------------------------------- 2. throughput

// tpResult is one throughput repetition.
type tpResult struct {
	rate, cmds float64
	stats      cmdStats
	use        usage              // what Redis spent on the whole batch
	elapsed    time.Duration      // first trigger → none building
	cpu        map[string]float64 // CPU ms per run by process
}

func (b *bench) throughput(ctx context.Context) error {
	o := b.opt
	for _, workers := range []int{1, 2} {
		par := workers * o.Concurrency
		label := fmt.Sprintf("%d worker process", workers)
		if workers > 1 {
			label += "es"
		}
		label += fmt.Sprintf(" × %d", o.Concurrency)
		sRate, sCmds := value{Unit: "runs/s"}, value{Unit: "cmds"}
		cRate, cCmds := value{Unit: "chains/s"}, value{Unit: "cmds"}
		fRate := value{Unit: "runs/s"}
		fl := newFloor(b.repo, b.sha, filepath.Join(b.work, fmt.Sprintf("floor-tp-%d", workers)))
		var lastTP tpResult
		var chainStats cmdStats
		for range o.Reps { // interleaved, as in the latency benchmark
			r, err := b.sandoThroughput(ctx, workers, o.Runs, false, nil, 0)
			if err != nil {
				return err
			}
			lastTP = r
			sRate.Samples = append(sRate.Samples, r.rate)
			sCmds.Samples = append(sCmds.Samples, r.cmds)

			if err := b.redis.Flush(ctx); err != nil {
				return err
			}
			ch, err := startChains(b.redis.Addr, workers, o.Concurrency, o.PollInterval)
			if err != nil {
				return err
			}
			time.Sleep(200 * time.Millisecond)
			before, err := b.redis.Stats(ctx)
			if err != nil {
				ch.Stop()
				return err
			}
			d, err := ch.Many(ctx, o.Runs)
			if err != nil {
				ch.Stop()
				return err
			}
			after, _ := b.redis.Stats(ctx)
			ch.Stop()
			chainStats = b.redis.Delta(before, after)
			cRate.Samples = append(cRate.Samples, float64(o.Runs)/d.Seconds())
			cCmds.Samples = append(cCmds.Samples, float64(chainStats.Total())/float64(o.Runs))

			d, err = fl.Many(ctx, o.Runs, par)
			if err != nil {
				return err
			}
			fRate.Samples = append(fRate.Samples, float64(o.Runs)/d.Seconds())
			b.logf("%s: sando %.1f runs/s (%.1f cmds/run), floor %.1f runs/s, bare chains %.0f/s (%.1f cmds/chain)", label,
				r.rate, r.cmds, last(fRate), last(cRate), last(cCmds))
		}
		_ = os.RemoveAll(fl.layout.Root)

		b.report.add(line{Bench: bThroughput, Measure: fmt.Sprintf("%d no-op runs at once, runs/s, %s", o.Runs, label), Sando: sRate, Bases: []base{
			{fmt.Sprintf("floor: same git + commands, %d in parallel", par), fRate},
			{fmt.Sprintf("bare asynq chains of 4, %d server(s) × %d", workers, o.Concurrency), cRate},
		}})
		b.report.add(line{Bench: bThroughput, Measure: "Redis commands per run, " + label, Sando: sCmds, Bases: []base{
			{"bare asynq chain of 4, per chain", cCmds},
			{"bare chain + 3 per phase (the goal)", value{Unit: "cmds", Samples: []float64{cCmds.Median() + 12}}},
		}})
		b.report.note("Throughput, %s: Redis commands per run by command: %s. Per bare chain: %s.", label,
			lastTP.stats.Top(12, float64(o.Runs)), chainStats.Top(8, float64(o.Runs)))
		b.report.note("Throughput, %s: CPU per run, last repetition: %s (children: the git and sh the workers ran, "+
			"which is all the floor does).", label, fmtCPU(lastTP.cpu))
		okRate := sRate.Median() >= 0.8*fRate.Median()
		b.report.goal(bThroughput, "≥ 0.8× the floor, "+label, okRate, "%.1f vs %.1f runs/s = %.2f×",
			sRate.Median(), fRate.Median(), sRate.Median()/fRate.Median())
		b.track(sRate.Median()/(0.8*fRate.Median()), "throughput", "run throughput vs 0.8× floor, "+label)
		budget := cCmds.Median() + 12
		b.report.goal(bThroughput, "Redis commands per run ≤ bare chain + 3 per phase, "+label, sCmds.Median() <= budget,
			"%.1f vs %.1f + 12 = %.1f", sCmds.Median(), cCmds.Median(), budget)
	}
	return b.roundTrips(ctx)
}

// roundTrips is an untimed accounting pass under MONITOR: how many of the
// commands per run clients sent (round trips) and how many Lua scripts
// ran, for Sando (one worker) and the bare chain.
func (b *bench) roundTrips(ctx context.Context) error {
	n := min(b.opt.Runs, 50)
	sando, chain, err := b.monitorPass(ctx, n)
	if err != nil {
		return err
	}
	per := func(c cmdStats) value {
		return value{Unit: "cmds", Samples: []float64{float64(c.Total()) / float64(n)}}
	}
	b.report.add(line{Bench: bThroughput, Measure: fmt.Sprintf("of which clients sent (round trips), MONITOR, %d runs, 1 worker", n),
		Sando: per(sando.Client), Bases: []base{{"bare asynq chain of 4", per(chain.Client)}}})
	b.report.add(line{Bench: bThroughput, Measure: "of which Lua scripts ran", Sando: per(sando.Lua), Bases: []base{{"bare asynq chain of 4", per(chain.Lua)}}})
	b.report.note("Round trips per run (MONITOR, %d runs): Sando %s; bare chain %s.", n,
		sando.Client.Top(14, float64(n)), chain.Client.Top(8, float64(n)))
	b.report.note("Commands Lua scripts ran per run: Sando %s; bare chain %s.", sando.Lua.Top(14, float64(n)), chain.Lua.Top(8, float64(n)))
	return nil
}

// monitorPass runs n runs at once on one worker, then n bare chains at
// once, each under MONITOR (which costs Redis time, so nothing is timed).
func (b *bench) monitorPass(ctx context.Context, n int) (sando, chain monitorCounts, err error) {
	o := b.opt
	var merr error
	if _, err := b.sandoThroughput(ctx, 1, n, false, func(*stack) func() {
		stop, err := b.redis.Monitor(ctx)
		if err != nil {
			merr = err
			return func() {}
		}
		return func() { sando = stop() }
	}, 0); err != nil {
		return sando, chain, err
	}
	if merr != nil {
		return sando, chain, merr
	}
	ch, err := startChains(b.redis.Addr, 1, o.Concurrency, o.PollInterval)
	if err != nil {
		return sando, chain, err
	}
	defer ch.Stop()
	time.Sleep(100 * time.Millisecond)
	stop, err := b.redis.Monitor(ctx)
	if err != nil {
		return sando, chain, err
	}
	_, err = ch.Many(ctx, n)
	chain = stop()
	return sando, chain, err
}

func fmtCPU(m map[string]float64) string {
	var parts []string
	for _, k := range []string{"api", "workers", "redis", "children"} {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.1f ms", k, v))
		}
	}
	return strings.Join(parts, ", ")
}

// sandoThroughput triggers o.Runs runs (supersede off) against a fresh
// stack and times them until none is building, which it checks every
// poll (0: 20 ms).
func (b *bench) sandoThroughput(ctx context.Context, workers, runs int, profile bool, hook func(*stack) func(), poll time.Duration) (tpResult, error) {
	o := b.opt
	if err := b.redis.Flush(ctx); err != nil {
		return tpResult{}, err
	}
	so := stackOpts{Pipeline: pipelineSpec{Name: "tp", Repo: b.repo}, Workers: workers, Concurrency: o.Concurrency,
		NoSupersede: true, Profile: profile}
	s, err := b.startStack(so)
	if err != nil {
		return tpResult{}, err
	}
	defer s.Stop()
	a := newAPI(s.API.Addr, b.sha)
	store := runstore.New(b.redis.ctl, "tp")
	time.Sleep(200 * time.Millisecond) // let the workers' first polls and janitor offers settle
	var stop func()
	if hook != nil {
		stop = hook(s) // may be nil
	}
	cpu0 := b.cpuOf(s)
	before, err := b.redis.Stats(ctx)
	if err != nil {
		return tpResult{}, err
	}
	t0 := time.Now()
	err = forEach(ctx, runs, 8, func(int) error {
		_, err := a.Rebuild(ctx)
		return err
	})
	if err != nil {
		return tpResult{}, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		n, err := store.CountBuilding(ctx)
		if err != nil {
			return tpResult{}, err
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return tpResult{}, fmt.Errorf("%d runs still building after 10 minutes", n)
		}
		time.Sleep(cmp.Or(poll, 20*time.Millisecond))
	}
	elapsed := time.Since(t0)
	after, err := b.redis.Stats(ctx)
	if err != nil {
		return tpResult{}, err
	}
	delta := b.redis.Delta(before, after)
	cpu1 := b.cpuOf(s)
	if stop != nil {
		stop()
	}
	if err := b.allPassed(ctx, store, runs); err != nil {
		return tpResult{}, err
	}
	r := tpResult{
		rate: float64(runs) / elapsed.Seconds(), cmds: float64(delta.Total()) / float64(runs),
		stats: delta, use: b.redis.Usage(before, after), elapsed: elapsed, cpu: map[string]float64{},
	}
	for k, v := range cpu1 {
		r.cpu[k] = (v - cpu0[k]) / float64(runs)
	}
	return r, nil
}

// allPassed checks runs 1..n all passed (a throughput figure of aborted
// or failed runs would be a lie).
func (b *bench) allPassed(ctx context.Context, store *runstore.Store, n int) error {
	cmds := make([]*redis.StringCmd, n)
	_, err := b.redis.ctl.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			cmds[i] = p.HGet(ctx, store.Keys().Run(int64(i+1)), "result")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check results: %w", err)
	}
	bad := map[string]int{}
	for _, c := range cmds {
		if c.Val() != "passed" {
			bad[c.Val()]++
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("not every run passed: %v (is SANDO_SUPERSEDE=0 honoured by the API?)", bad)
	}
	return nil
}

// cpuOf is the CPU time (ms) used so far by the stack's processes, Redis,
// and the children the workers ran (git, sh), from /proc.
func (b *bench) cpuOf(s *stack) map[string]float64 {
	out := map[string]float64{}
	if s.API != nil {
		out["api"], _ = cpuMS(s.API.PID(), false)
	}
	for _, w := range s.Workers {
		self, _ := cpuMS(w.PID(), false)
		kids, _ := cpuMS(w.PID(), true)
		out["workers"] += self
		out["children"] += kids
	}
	out["redis"], _ = cpuMS(b.redis.PID(), false)
	return out
}

// cpuMS reads utime+stime (or, with children, cutime+cstime: reaped
// children) of pid from /proc/PID/stat, in ms.
func cpuMS(pid int, children bool) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:]) // f[0] is field 3 (state)
	idx := 11                    // utime is field 14
	if children {
		idx = 13
	}
	u, _ := strconv.ParseFloat(f[idx], 64)
	st, _ := strconv.ParseFloat(f[idx+1], 64)
	return (u + st) * 10, nil // USER_HZ is 100 on Linux
}

// ---------------------------------------------------------------- 3. poll cost

// pollGate keeps run 2 of the poll pipeline gating (building) while run 1
// passes.
const pollGate = `if [ "$SANDO_RUN_ID" = 2 ]; then exec sleep 900; fi`

type pollSetup struct {
	s        *stack
	a        *api
	finished []byte // run 1's view, as the server sent it (the static baseline's body)
	key      string
}

func (b *bench) pollStack(ctx context.Context, profile bool) (*pollSetup, error) {
	s, err := b.startStack(stackOpts{Pipeline: pipelineSpec{Name: "poll", Repo: b.repo, Gate: pollGate}, Workers: 1,
		Concurrency: b.opt.Concurrency, Profile: profile})
	if err != nil {
		return nil, err
	}
	p := &pollSetup{s: s, a: newAPI(s.API.Addr, b.sha)}
	var v *client.Run
	id, err := p.a.Rebuild(ctx)
	if err == nil {
		v, err = p.a.WaitUntil(ctx, id, time.Minute, terminal)
		if err == nil {
			p.finished = v.Raw
		}
		if err == nil && v.Result != "passed" {
			err = fmt.Errorf("run 1 %s: %s", v.Result, v.FailureSummary)
		}
	}
	if err == nil {
		id, err = p.a.Rebuild(ctx)
	}
	if err == nil {
		v, err = p.a.WaitUntil(ctx, id, time.Minute, func(v *client.Run) bool {
			// a running gate shows as status null
			return v.Phase == "gating" && len(v.Gates) == 1 && v.Gates[0].Status == "" || terminal(v)
		})
	}
	if err == nil && terminal(v) {
		err = fmt.Errorf("run 2 ended (%s: %s); it should still be gating", v.Result, v.FailureSummary)
	}
	if err == nil && id != 2 {
		err = fmt.Errorf("the building run is %d, want 2", id)
	}
	if err != nil {
		s.Stop()
		return nil, err
	}
	p.key = runstore.NewKeys("poll").Run(2)
	return p, nil
}

// Stop cancels the building run (so its gate's sleep dies now) and stops.
func (p *pollSetup) Stop(ctx context.Context) {
	_, _ = p.a.c.Cancel(ctx, 2) // best effort: the stack stops next either way
	p.s.Stop()
}

func (b *bench) poll(ctx context.Context) error {
	o := b.opt
	p, err := b.pollStack(ctx, false)
	if err != nil {
		return err
	}
	defer p.Stop(ctx)
	staticFile := filepath.Join(b.work, "static.json")
	if err := os.WriteFile(staticFile, p.finished, 0o644); err != nil {
		return err
	}
	g, err := b.startRole("gin", []string{"BENCH_REDIS_ADDR=" + b.redis.Addr, "BENCH_PIPELINE=poll", "BENCH_STATIC_FILE=" + staticFile}, "gin.log")
	if err != nil {
		return err
	}
	defer g.Stop()

	type target struct {
		name, addr, path string
		pid              int
	}
	targets := []target{
		{"sando building", p.s.API.Addr, "/runs/2", p.s.API.PID()},
		{"sando finished", p.s.API.Addr, "/runs/1", p.s.API.PID()},
		{"naive", g.Addr, "/runs/2", g.PID()},
		{"static", g.Addr, "/static", g.PID()},
	}
	rps := map[string]*value{}
	p99 := map[string]*value{}
	cpu := map[string]*value{} // server CPU per request, µs: robust where req/s is noisy
	sizes := map[string]int{}
	for _, t := range targets {
		rps[t.name], p99[t.name], cpu[t.name] = &value{Unit: "req/s"}, &value{Unit: "ms"}, &value{Unit: "µs"}
	}
	rb := &value{Unit: "req/s"}
	for range o.PollReps {
		for _, t := range targets {
			c0, _ := cpuMS(t.pid, false)
			r, err := httpLoad(ctx, t.addr, t.path, o.Conns, o.Warmup, o.LoadDur, 200)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			c1, _ := cpuMS(t.pid, false)
			rps[t.name].Samples = append(rps[t.name].Samples, r.RPS)
			p99[t.name].Samples = append(p99[t.name].Samples, ms(r.P99))
			cpu[t.name].Samples = append(cpu[t.name].Samples, (c1-c0)*1000/float64(max(1, r.Total)))
			sizes[t.name] = r.Bytes
			b.logf("%-15s %8.0f req/s  p99 %5.2f ms  server CPU %.1f µs/req", t.name, r.RPS, ms(r.P99), last(*cpu[t.name]))
		}
		x, err := b.redisBenchmark(ctx, o.Conns, o.RBRequests, "HGETALL", p.key)
		if err != nil {
			return err
		}
		rb.Samples = append(rb.Samples, x)
		b.logf("redis-benchmark HGETALL %8.0f req/s", x)
	}
	conns := fmt.Sprintf("%d connections", o.Conns)
	b.report.add(line{Bench: bPoll, Measure: "GET /runs/{id} of a building run, req/s, " + conns, Sando: *rps["sando building"], Bases: []base{
		{"naive Gin handler: one HGETALL, rendered", *rps["naive"]},
		{"redis-benchmark HGETALL, same hash, " + strconv.Itoa(o.Conns) + " clients", *rb},
	}})
	b.report.add(line{Bench: bPoll, Measure: "same, p99", Sando: *p99["sando building"], Bases: []base{{"naive Gin handler", *p99["naive"]}}})
	b.report.add(line{Bench: bPoll, Measure: "GET /runs/{id} of a finished run, req/s, " + conns, Sando: *rps["sando finished"], Bases: []base{
		{fmt.Sprintf("static Gin JSON route, %d-byte body", sizes["static"]), *rps["static"]},
		{"naive Gin handler", *rps["naive"]},
	}})
	b.report.add(line{Bench: bPoll, Measure: "same, p99", Sando: *p99["sando finished"], Bases: []base{{"static Gin JSON route", *p99["static"]}}})
	b.report.add(line{Bench: bPoll, Measure: "server CPU per request, building run", Sando: *cpu["sando building"],
		Bases: []base{{"naive Gin handler", *cpu["naive"]}}})
	b.report.add(line{Bench: bPoll, Measure: "server CPU per request, finished run", Sando: *cpu["sando finished"],
		Bases: []base{{"static Gin JSON route", *cpu["static"]}}})
	b.report.note("Poll bodies: building view %d bytes, finished view %d bytes (the static route serves the finished view's bytes).",
		sizes["sando building"], sizes["sando finished"])
	bld, naive := rps["sando building"].Median(), rps["naive"].Median()
	b.report.goal(bPoll, "building run ≥ 1.0× the naive handler", bld >= naive, "%.0f vs %.0f req/s = %.2f×", bld, naive, bld/naive)
	b.track(bld/naive, "poll-building", "GET of a building run vs the naive handler")
	fin, static := rps["sando finished"].Median(), rps["static"].Median()
	b.report.goal(bPoll, "finished run ≥ 0.9× the static route", fin >= 0.9*static, "%.0f vs %.0f req/s = %.2f×", fin, static, fin/static)
	b.track(fin/(0.9*static), "poll-finished", "GET of a finished run vs 0.9× the static route")
	return nil
}

// redisBenchmark runs redis-benchmark with one command and returns req/s.
func (b *bench) redisBenchmark(ctx context.Context, clients, n int, args ...string) (float64, error) {
	cmd := exec.CommandContext(ctx, "redis-benchmark", append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.redis.Port()),
		"-c", strconv.Itoa(clients), "-n", strconv.Itoa(n), "--csv"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) > 1 {
			return strconv.ParseFloat(strings.Trim(f[1], `"`), 64)
		}
	}
	return 0, fmt.Errorf("redis-benchmark: unexpected output %q", out)
}

// ---------------------------------------------------------------- 4. long-poll

func (b *bench) longPoll(ctx context.Context) error {
	o := b.opt
	s, err := b.startStack(stackOpts{Pipeline: pipelineSpec{Name: "lp", Repo: b.repo}, Concurrency: o.Concurrency})
	if err != nil {
		return err
	}
	defer s.Stop()
	a := newAPI(s.API.Addr, b.sha)
	id, err := a.Rebuild(ctx) // no worker: it stays queued until the bench moves it
	if err != nil {
		return err
	}
	store := runstore.New(b.redis.ctl, "lp")
	time.Sleep(500 * time.Millisecond)
	rss0 := s.API.RSS()
	w, err := dialWaiters(ctx, s.API.Addr, o.Waiters)
	if err != nil {
		return err
	}
	defer w.Close()
	path := "/runs/" + strconv.FormatInt(id, 10) + "?wait=60s"
	rssW, idle, all, p50 := &value{Unit: "MiB"}, &value{Unit: "cmds/s"}, &value{Unit: "ms"}, &value{Unit: "ms"}
	heldV := &value{Unit: ""}
	var perWaiter []float64
	phases := []sandorun.Phase{sandorun.PhaseFetching, sandorun.PhaseCompiling, sandorun.PhaseStaging, sandorun.PhaseGating}
	for rep := range min(o.Reps, len(phases)) {
		v, err := a.c.Get(ctx, id)
		if err != nil {
			return err
		}
		etag := v.ETag
		wait := w.Round(s.API.Addr, path, etag)
		// Held, or answered already (an error: the run has not changed).
		held := 0.0
		for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if held, err = a.Metric(ctx, "sando_longpoll_waiters"); err == nil && int(held)+int(w.answered.Load()) >= o.Waiters {
				break
			}
		}
		heldV.Samples = append(heldV.Samples, held)
		time.Sleep(300 * time.Millisecond)
		rss := s.API.RSS()
		rssW.Samples = append(rssW.Samples, float64(rss)/1024)
		perWaiter = append(perWaiter, float64(rss-rss0)/max(1, held))
		window := 5 * time.Second
		if o.Short {
			window = 500 * time.Millisecond
		}
		before, _ := b.redis.Stats(ctx)
		time.Sleep(window)
		after, _ := b.redis.Stats(ctx)
		idle.Samples = append(idle.Samples, float64(b.redis.Delta(before, after).Total())/window.Seconds())

		t0 := time.Now()
		if o, _, err := store.SetPhase(ctx, id, phases[rep], "", runstore.Where{}, ""); err != nil || o != runstore.Applied {
			return fmt.Errorf("move run to %s: %v %v", phases[rep], o, err) //nolint:errorlint // err may be nil here (the answer was wrong), so it is only printed
		}
		if err := wait(60 * time.Second); err != nil {
			return err
		}
		var lat []float64
		early, bad := map[int]int{}, map[int]int{}
		for i, at := range w.got {
			switch {
			case at.Before(t0) || at.IsZero():
				early[w.codes[i]]++ // answered before the run changed: not held
			case w.codes[i] != 200:
				bad[w.codes[i]]++
			default:
				lat = append(lat, ms(at.Sub(t0)))
			}
		}
		if len(early)+len(bad) > 0 {
			b.report.note("Long-poll, round %d of %d waiters: answered before the phase change (not held) %v, "+
				"after it but not 200 %v (status: count; 0 = connection error); see the API log.", rep+1, o.Waiters, early, bad)
			b.logf("long-poll round %d: early answers %v, non-200 after the change %v", rep+1, early, bad)
		}
		if len(lat) == 0 {
			return fmt.Errorf("no waiter was answered 200 after the phase change (early %v, bad %v)", early, bad)
		}
		all.Samples = append(all.Samples, percentile(lat, 100))
		p50.Samples = append(p50.Samples, percentile(lat, 50))
		b.logf("%d waiters: RSS %d MiB, idle %.1f cmds/s, all answered %.0f ms after the phase change",
			o.Waiters, rss/1024, idle.Samples[len(idle.Samples)-1], all.Samples[len(all.Samples)-1])
	}
	n := strconv.Itoa(o.Waiters)
	b.report.add(line{Bench: bLongPoll, Measure: "API resident memory, idle → with " + n + " waiters", Sando: *rssW,
		Bases: []base{{"same API before the waiters", value{Unit: "MiB", Samples: []float64{float64(rss0) / 1024}}}}})
	b.report.add(line{Bench: bLongPoll, Measure: "long-polls held at once, of " + n + " sent together", Sando: *heldV})
	b.report.add(line{Bench: bLongPoll, Measure: "Redis commands/s while " + n + " wait (API alone)", Sando: *idle})
	b.report.add(line{Bench: bLongPoll, Measure: "phase change → all " + n + " answered", Sando: *all,
		Bases: []base{{"→ half of them answered (p50)", *p50}}})
	b.report.note("Long-poll: %.1f KiB of API resident memory per held waiter (median); the answers are counted from the phase change "+
		"(the bench's own Redis write, the script a worker runs) to each waiter's 200.", median(perWaiter))
	return nil
}

// ---------------------------------------------------------------- 5. footprint

func (b *bench) footprint(ctx context.Context) error {
	o := b.opt
	s, err := b.startStack(stackOpts{Pipeline: pipelineSpec{Name: "fp", Repo: b.repo}, Workers: 1, Concurrency: o.Concurrency})
	if err != nil {
		return err
	}
	defer s.Stop()
	settle := 2 * time.Second
	window := 5 * time.Second
	if o.Short {
		settle, window = 200*time.Millisecond, 300*time.Millisecond
	}
	time.Sleep(settle)
	apiCold, wCold := s.API.RSS(), s.Workers[0].RSS()

	a := newAPI(s.API.Addr, b.sha)
	runs := max(3, min(20, o.LatencyRuns))
	for range runs {
		id, err := a.Rebuild(ctx)
		if err != nil {
			return err
		}
		if v, err := a.WaitUntil(ctx, id, time.Minute, terminal); err != nil || v.Result != "passed" {
			return fmt.Errorf("run %d: %v %v", id, v, err) //nolint:errorlint // err may be nil here (the answer was wrong), so it is only printed
		}
	}
	time.Sleep(settle)
	apiWarm, wWarm := s.API.RSS(), s.Workers[0].RSS()

	// Redis memory of one finished run: its hash and its four retained
	// asynq tasks (asynq keeps a finished task for tasks.Retention).
	var per []float64
	keys := runstore.NewKeys("fp")
	for id := int64(1); id <= int64(runs); id++ {
		sum := int64(0)
		for _, k := range []string{
			keys.Run(id),
			"asynq:{fetch}:t:fp:" + strconv.FormatInt(id, 10) + ":fetch",
			"asynq:{compile}:t:fp:" + strconv.FormatInt(id, 10) + ":compile",
			"asynq:{stage}:t:fp:" + strconv.FormatInt(id, 10) + ":stage",
			"asynq:{gate}:t:fp:" + strconv.FormatInt(id, 10) + ":gate-0",
		} {
			n, err := b.redis.ctl.MemoryUsage(ctx, k).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("MEMORY USAGE %s: %w", k, err)
			}
			sum += n
		}
		per = append(per, float64(sum))
	}

	rate := func() (float64, error) {
		before, err := b.redis.Stats(ctx)
		if err != nil {
			return 0, err
		}
		time.Sleep(window)
		after, err := b.redis.Stats(ctx)
		if err != nil {
			return 0, err
		}
		return float64(b.redis.Delta(before, after).Total()) / window.Seconds(), nil
	}
	idle1 := value{Unit: "cmds/s"}
	for range o.Reps {
		x, err := rate()
		if err != nil {
			return err
		}
		idle1.Samples = append(idle1.Samples, x)
	}
	for _, w := range s.Workers {
		w.Stop()
	}
	s.Workers = nil
	time.Sleep(settle)
	idle0, err := rate()
	if err != nil {
		return err
	}
	perWorker := value{Unit: "cmds/s"}
	for _, x := range idle1.Samples {
		perWorker.Samples = append(perWorker.Samples, x-idle0)
	}

	// Baselines: bare asynq idling on the same queues and intervals (a
	// process of its own), and the bare Gin process.
	bareIdle := value{Unit: "cmds/s"}
	aq, err := b.startRole("asynq-idle", []string{"BENCH_REDIS_ADDR=" + b.redis.Addr,
		"BENCH_CONCURRENCY=" + strconv.Itoa(o.Concurrency), "BENCH_POLL_INTERVAL=" + o.PollInterval.String()}, "asynq-idle.log")
	if err != nil {
		return err
	}
	time.Sleep(settle)
	for range o.Reps {
		x, err := rate()
		if err != nil {
			aq.Stop()
			return err
		}
		bareIdle.Samples = append(bareIdle.Samples, x-idle0)
	}
	aqRSS := aq.RSS()
	aq.Stop()
	one := value{Unit: "cmds/s"}
	ch, err := startChains(b.redis.Addr, 1, o.Concurrency, o.PollInterval)
	if err != nil {
		return err
	}
	time.Sleep(settle)
	x, err := rate()
	ch.Stop()
	if err != nil {
		return err
	}
	one.Samples = append(one.Samples, x-idle0)

	staticFile := filepath.Join(b.work, "static-fp.json")
	_ = os.WriteFile(staticFile, []byte(`{}`), 0o644)
	g, err := b.startRole("gin", []string{"BENCH_REDIS_ADDR=" + b.redis.Addr, "BENCH_PIPELINE=fp", "BENCH_STATIC_FILE=" + staticFile}, "gin-fp.log")
	if err != nil {
		return err
	}
	time.Sleep(settle)
	ginRSS := g.RSS()
	g.Stop()

	mib := func(kib int64) value { return value{Unit: "MiB", Samples: []float64{float64(kib) / 1024}} }
	b.report.add(line{Bench: bFootprint, Measure: "resident memory, idle API (fresh; after " + strconv.Itoa(runs) + " runs)", Sando: mib(apiCold),
		Bases: []base{{"same API after the runs", mib(apiWarm)}, {"bare Gin server (the bench binary in a role: larger)", mib(ginRSS)}}})
	b.report.add(line{Bench: bFootprint, Measure: "resident memory, idle worker (fresh; after the runs)", Sando: mib(wCold),
		Bases: []base{{"same worker after the runs", mib(wWarm)}, {"bare asynq servers on Sando's queues (the bench binary in a role: larger)", mib(aqRSS)}}})
	b.report.add(line{Bench: bFootprint, Measure: "Redis memory per finished run (MEMORY USAGE: run hash + 4 retained tasks)",
		Sando: value{Unit: "B", Samples: []float64{median(per)}}})
	b.report.add(line{Bench: bFootprint, Measure: "idle Redis commands/s per worker process", Sando: perWorker, Bases: []base{
		{"bare asynq, Sando's queues and intervals", bareIdle},
		{"bare asynq server, 1 queue, same interval", one},
	}})
	b.report.note("Footprint: an idle API alone sends %.1f Redis commands/s.", idle0)
	return nil
}

// ---------------------------------------------------------------- 6. backlog

// backlog prices Sando's queue layout (steps.Queues: the disk's queue for
// every step after the fetch, served before the fetch queue, in strict
// priority) against one FIFO queue, with bare asynq: strict priority lets
// the first runs finish while the rest wait, at the price of a Dequeue
// script per queue missed; one queue costs fewer commands but fetches
// every run before it compiles any.
const backlogLinks = 4 // fetch, compile, stage, gate
func (b *bench) backlog(ctx context.Context) error {
	o := b.opt
	n := o.BacklogChains
	type figures struct{ first, mid, last, cmds value }
	newFigures := func() *figures {
		return &figures{value{Unit: "ms"}, value{Unit: "ms"}, value{Unit: "ms"}, value{Unit: "cmds"}}
	}
	strict, fifo := newFigures(), newFigures()
	var strictStats, fifoStats cmdStats
	for rep := range o.Reps {
		// Each layout runs on queues named for it and this repetition, on
		// a flushed Redis, so neither sees the other's tasks; which goes
		// first alternates, so a neighbour's load hits both alike.
		layouts := []string{"strict", "fifo"}
		if rep%2 == 1 {
			layouts[0], layouts[1] = layouts[1], layouts[0]
		}
		for _, name := range layouts {
			prefix := fmt.Sprintf("bench-backlog-%d-%s-", rep+1, name)
			l, into, stats := oneQueue(prefix+"all"), fifo, &fifoStats
			if name == "strict" {
				var err error
				if l, err = sandoLayout(prefix); err != nil {
					return err
				}
				into, stats = strict, &strictStats
			}
			var ends []time.Duration
			before, after, err := b.chainBatch(ctx, chainConfig{Layout: l, Servers: 1, Concurrency: o.Concurrency,
				Interval: o.PollInterval, Length: backlogLinks, Work: o.BacklogWork}, func(ch *chains) (err error) {
				ends, err = ch.Each(ctx, n)
				return err
			})
			if err != nil {
				return err
			}
			*stats = b.redis.Delta(before, after)
			var xs []float64
			for _, d := range ends {
				xs = append(xs, ms(d))
			}
			into.first.Samples = append(into.first.Samples, slices.Min(xs))
			into.mid.Samples = append(into.mid.Samples, median(xs))
			into.last.Samples = append(into.last.Samples, slices.Max(xs))
			into.cmds.Samples = append(into.cmds.Samples, float64(stats.Total())/float64(n))
			b.logf("rep %d %s: first %.0f ms, median %.0f ms, last %.0f ms, %.1f cmds/chain", rep+1, name,
				last(into.first), last(into.mid), last(into.last), last(into.cmds))
		}
	}
	fifoName := "one FIFO queue for every link"
	b.report.add(line{Bench: bBacklog, Measure: fmt.Sprintf("bare asynq, Sando's layout (disk queue before fetch queue, strict): %d chains of 4 → first done", n),
		Sando: strict.first, Bases: []base{{fifoName, fifo.first}}})
	b.report.add(line{Bench: bBacklog, Measure: "same, median chain done", Sando: strict.mid, Bases: []base{{fifoName, fifo.mid}}})
	b.report.add(line{Bench: bBacklog, Measure: "same, last chain done (makespan)", Sando: strict.last, Bases: []base{{fifoName, fifo.last}}})
	b.report.add(line{Bench: bBacklog, Measure: "same, Redis commands per chain", Sando: strict.cmds, Bases: []base{{fifoName, fifo.cmds}}})
	b.report.note("Queue layout under a backlog: %d chains of 4 links enqueued at once on one bare asynq server (Concurrency %d, "+
		"TaskCheckInterval %s), each link sleeping %s (a phase's work) before enqueuing the next, so the work alone takes "+
		"%d × 4 × %s ÷ %d = %s; Sando's layout is steps.Queues (the first link on the fetch queue, the later ones on "+
		"the disk's queue, served first, strict priority), FIFO is one queue for all links; times from the first enqueue. Commands per chain, last repetition: "+
		"Sando's layout %s; FIFO %s.",
		n, o.Concurrency, o.PollInterval, o.BacklogWork, n, o.BacklogWork, o.Concurrency,
		(time.Duration(n*backlogLinks) * o.BacklogWork / time.Duration(max(1, o.Concurrency))).Round(time.Millisecond),
		strictStats.Top(6, float64(n)), fifoStats.Top(6, float64(n)))
	return nil
}

// chainBatch runs bare chain servers of cfg on a flushed Redis and
// snapshots Redis's counters around batch (not around the servers'
// start-up commands).
func (b *bench) chainBatch(ctx context.Context, cfg chainConfig, batch func(*chains) error) (before, after snapshot, err error) {
	if err := b.redis.Flush(ctx); err != nil {
		return before, after, err
	}
	ch, err := startChainsWith(b.redis.Addr, cfg)
	if err != nil {
		return before, after, err
	}
	defer ch.Stop()
	time.Sleep(200 * time.Millisecond) // the server's start-up commands are not the chains'
	if before, err = b.redis.Stats(ctx); err != nil {
		return before, after, err
	}
	if err := batch(ch); err != nil {
		return before, after, err
	}
	after, err = b.redis.Stats(ctx)
	return before, after, err
}
