package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"sando.dev/sando/client"
	"sando.dev/sando/runstore"
)

// The fleet benchmarks (issue "A fleet that scales"): runs spread over
// worker processes with data dirs of their own, gates with needs: [] side
// by side, and what an idle worker costs Redis at each poll interval.
const (
	bScaling = "7. A fleet that scales"
	bGates   = "8. Parallel gates"
	bIdle    = "9. Idle cost by poll interval"
)

// fleetOptions sizes the fleet benchmarks; -short shrinks them.
type fleetOptions struct {
	ScalePipelines   int           // pipelines, one run of each triggered at once
	ScaleGates       int           // gates per pipeline, in file order (no needs)
	ScaleWork        time.Duration // each gate's sleep
	ScaleWorkers     []int         // worker processes, each on its own data dir
	ScaleConcurrency int           // SANDO_CONCURRENCY of each of them

	GateCount int           // gates of the one run
	GateWork  time.Duration // each gate's sleep

	IdleIntervals []time.Duration // SANDO_POLL_INTERVAL values
	IdleWorkers   []int           // idle worker processes measured together
	IdleWindow    time.Duration   // one INFO delta window
	Settle        time.Duration   // after a worker starts, before a window
	HandoffRuns   int             // no-op runs (one at a time) per hand-off figure
}

func defaultFleet() fleetOptions {
	return fleetOptions{
		ScalePipelines: 8, ScaleGates: 4, ScaleWork: time.Second, ScaleWorkers: []int{1, 2, 4}, ScaleConcurrency: 2,
		GateCount: 4, GateWork: 2 * time.Second,
		IdleIntervals: []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
			250 * time.Millisecond, time.Second},
		IdleWorkers: []int{1, 2, 4}, IdleWindow: 2 * time.Second, Settle: time.Second, HandoffRuns: 5,
	}
}

func (f *fleetOptions) shorten() {
	f.ScalePipelines, f.ScaleGates, f.ScaleWork, f.ScaleWorkers = 2, 2, 200*time.Millisecond, []int{1, 2}
	f.GateWork = 300 * time.Millisecond
	f.IdleIntervals, f.IdleWorkers = []time.Duration{10 * time.Millisecond, 100 * time.Millisecond}, []int{1, 2}
	f.IdleWindow, f.Settle, f.HandoffRuns = 300*time.Millisecond, 200*time.Millisecond, 2
}

func sleepCmd(d time.Duration) string {
	return "sleep " + strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// gatesOf is n gates running cmd, named g1..gn; with parallel each has
// needs: [], else none has needs (file order).
func gatesOf(n int, cmd string, parallel bool) []gateSpec {
	var gs []gateSpec
	for i := range n {
		g := gateSpec{Kind: fmt.Sprintf("g%d", i+1), Run: cmd}
		if parallel {
			g.Needs = []string{}
		}
		gs = append(gs, g)
	}
	return gs
}

// runPassed triggers one run of pipeline and waits (long-polling) until
// it is terminal; it returns the run id and the time the answer came.
func runPassed(ctx context.Context, a *api, pipeline string, within time.Duration) (int64, *client.Run, time.Time, error) {
	id, err := a.RebuildOf(ctx, pipeline)
	if err != nil {
		return 0, nil, time.Time{}, err
	}
	v, err := a.WaitUntil(ctx, id, within, terminal)
	at := time.Now()
	if err != nil {
		return id, nil, at, fmt.Errorf("run %d of %s: %w", id, pipeline, err)
	}
	if v.Result != "passed" {
		return id, v, at, fmt.Errorf("run %d of %s %s: %s", id, pipeline, v.Result, v.FailureSummary)
	}
	return id, v, at, nil
}

// handoff is the p50 (ms) of n no-op runs of pipeline, one at a time,
// POST → passed, after one warm run (which fills the git cache).
func handoff(ctx context.Context, a *api, pipeline string, n int, within time.Duration) (float64, error) {
	var xs []float64
	for i := range n + 1 {
		t0 := time.Now()
		if _, _, at, err := runPassed(ctx, a, pipeline, within); err != nil {
			return 0, err
		} else if i > 0 {
			xs = append(xs, ms(at.Sub(t0)))
		}
	}
	return percentile(xs, 50), nil
}

var noopPipeline = func(repo string) pipelineSpec { return pipelineSpec{Name: "noop", Repo: repo} }

// ---------------------------------------------------------------- 7. scaling

func (b *bench) scaling(ctx context.Context) error {
	o, f := b.opt, b.opt.Fleet
	var pipes []pipelineSpec
	for i := range f.ScalePipelines {
		pipes = append(pipes, pipelineSpec{Name: fmt.Sprintf("p%d", i+1), Repo: b.repo,
			Gates: gatesOf(f.ScaleGates, sleepCmd(f.ScaleWork), false)})
	}
	all := append(slices.Clone(pipes), noopPipeline(b.repo))
	work := time.Duration(f.ScalePipelines*f.ScaleGates) * f.ScaleWork
	perRun := time.Duration(f.ScaleGates) * f.ScaleWork
	for _, workers := range f.ScaleWorkers {
		slots := workers * f.ScaleConcurrency
		// Runs are sequential inside (gates in file order), so a run
		// holds one slot at a time: the ideal is the work over the slots,
		// but never less than one run's gates.
		ideal := max(work/time.Duration(slots), perRun)
		if f.ScalePipelines%slots != 0 && f.ScalePipelines > slots {
			ideal = time.Duration((f.ScalePipelines+slots-1)/slots) * perRun
		}
		mk, oh := value{Unit: "ms"}, value{Unit: "ms"}
		var spread, where []string
		for rep := range o.Reps {
			if err := b.redis.Flush(ctx); err != nil {
				return err
			}
			s, err := b.startStack(stackOpts{Pipelines: all, Workers: workers, Concurrency: f.ScaleConcurrency, OwnDataDirs: true})
			if err != nil {
				return err
			}
			a := newAPI(s.API.Addr, b.sha)
			time.Sleep(f.Settle)
			h, err := handoff(ctx, a, "noop", f.HandoffRuns, time.Minute)
			if err != nil {
				s.Stop()
				return err
			}
			oh.Samples = append(oh.Samples, h)
			ids := make([]int64, len(pipes))
			views := make([]*client.Run, len(pipes))
			ends := make([]time.Time, len(pipes))
			errs := make([]error, len(pipes))
			var wg sync.WaitGroup
			t0 := time.Now()
			for i, p := range pipes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ids[i], views[i], ends[i], errs[i] = runPassed(ctx, a, p.Name, 10*time.Minute)
				}()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				s.Stop()
				return fmt.Errorf("%d workers: %w (logs in %s)", workers, err, s.Dir)
			}
			var last time.Time
			for _, e := range ends {
				if e.After(last) {
					last = e
				}
			}
			mk.Samples = append(mk.Samples, ms(last.Sub(t0)))
			// Where the time beyond the gates' work went, from the views:
			// POST → first gate started (fetch, compile, stage and the
			// wait for a slot), the gaps between one gate's end and the
			// next one's start, and last gate finished → answer seen.
			var toFirst, gaps, tails []float64
			for i, v := range views {
				g := v.Gates
				if len(g) == 0 || g[0].StartedAt.IsZero() || g[len(g)-1].FinishedAt.IsZero() {
					continue
				}
				toFirst = append(toFirst, ms(g[0].StartedAt.Sub(t0)))
				for j := 1; j < len(g); j++ {
					if !g[j].StartedAt.IsZero() && !g[j-1].FinishedAt.IsZero() {
						gaps = append(gaps, ms(g[j].StartedAt.Sub(g[j-1].FinishedAt)))
					}
				}
				tails = append(tails, ms(ends[i].Sub(g[len(g)-1].FinishedAt)))
			}
			if len(toFirst) > 0 && len(gaps) > 0 {
				where = append(where, fmt.Sprintf("POST → first gate started %.0f ms median (%.0f–%.0f), gate end → next gate start %.0f ms median (max %.0f), "+
					"last gate end → passed seen %.0f ms median (max %.0f)", median(toFirst), slices.Min(toFirst), slices.Max(toFirst),
					median(gaps), slices.Max(gaps), median(tails), slices.Max(tails)))
			}
			// Where each run went: the data dir of its last step.
			perDisk := map[string]int{}
			for i, p := range pipes {
				d, _ := b.redis.ctl.HGet(ctx, runstore.NewKeys(p.Name).Run(ids[i]), "disk").Result()
				perDisk[d]++
			}
			var counts []int
			for _, n := range perDisk {
				counts = append(counts, n)
			}
			slices.Sort(counts)
			slices.Reverse(counts)
			spread = append(spread, strings.Trim(fmt.Sprint(counts), "[]"))
			s.Stop()
			b.logf("%d workers rep %d: makespan %.2f s (ideal %s), no-op hand-off %.0f ms, runs per data dir %v", workers, rep+1,
				last.Sub(t0).Seconds(), ideal, h, counts)
		}
		idealV := value{Unit: "ms", Samples: []float64{ms(ideal)}}
		withOH := value{Unit: "ms", Samples: []float64{ms(ideal) + oh.Median()*float64(max(1, f.ScalePipelines/slots))}}
		label := fmt.Sprintf("%d worker process", workers)
		if workers > 1 {
			label += "es"
		}
		label += fmt.Sprintf(" × %d (own data dirs)", f.ScaleConcurrency)
		b.report.add(line{Bench: bScaling, Measure: fmt.Sprintf("%d runs × %d gates of `%s` at once → last passed (makespan), %s",
			f.ScalePipelines, f.ScaleGates, sleepCmd(f.ScaleWork), label), Sando: mk, Bases: []base{
			{fmt.Sprintf("ideal: %s of gates ÷ %d slots (≥ one run's %s)", work, slots, perRun), idealV},
			{"ideal + a no-op run's hand-off per run a slot runs", withOH},
		}})
		b.report.add(line{Bench: bScaling, Measure: "no-op run POST → passed, p50 (same stack, before the batch), " + label, Sando: oh})
		r := ms(ideal) / mk.Median()
		b.report.note("Scaling, %s: ideal ÷ makespan %.2f; runs per data dir in each repetition: %s. Per repetition: %s.", label, r,
			strings.Join(spread, "; "), strings.Join(where, "; "))
		if workers == 4 || workers == slices.Max(f.ScaleWorkers) {
			b.report.goal(bScaling, fmt.Sprintf("ideal ÷ makespan ≥ 0.85 with %d worker processes", workers), r >= 0.85,
				"%s ÷ %.2f s = %.2f", ideal, mk.Median()/1000, r)
		}
	}
	return nil
}

// ---------------------------------------------------------------- 8. gates

func (b *bench) gates(ctx context.Context) error {
	o, f := b.opt, b.opt.Fleet
	cmd := sleepCmd(f.GateWork)
	par := pipelineSpec{Name: "par", Repo: b.repo, Gates: gatesOf(f.GateCount, cmd, true)}
	seq := pipelineSpec{Name: "seq", Repo: b.repo, Gates: gatesOf(f.GateCount, cmd, false)}
	pv, sv, oh, skew := value{Unit: "ms"}, value{Unit: "ms"}, value{Unit: "ms"}, value{Unit: "ms"}
	for rep := range o.Reps {
		if err := b.redis.Flush(ctx); err != nil {
			return err
		}
		s, err := b.startStack(stackOpts{Pipelines: []pipelineSpec{par, seq, noopPipeline(b.repo)}, Workers: 1,
			Concurrency: f.GateCount})
		if err != nil {
			return err
		}
		a := newAPI(s.API.Addr, b.sha)
		time.Sleep(f.Settle)
		h, err := handoff(ctx, a, "noop", f.HandoffRuns, time.Minute)
		if err == nil {
			oh.Samples = append(oh.Samples, h)
		}
		var v *client.Run
		for _, x := range []struct {
			name string
			into *value
		}{{"par", &pv}, {"seq", &sv}} {
			if err != nil {
				break
			}
			t0 := time.Now()
			var at time.Time
			_, v, at, err = runPassed(ctx, a, x.name, 2*time.Minute)
			if err != nil {
				break
			}
			x.into.Samples = append(x.into.Samples, ms(at.Sub(t0)))
			if x.name == "par" {
				var starts []float64
				for _, g := range v.Gates {
					if !g.StartedAt.IsZero() {
						starts = append(starts, float64(g.StartedAt.UnixNano())/1e6)
					}
				}
				if len(starts) == len(v.Gates) {
					skew.Samples = append(skew.Samples, slices.Max(starts)-slices.Min(starts))
				}
			}
		}
		s.Stop()
		if err != nil {
			return fmt.Errorf("%w (logs in %s)", err, s.Dir)
		}
		b.logf("rep %d: %d needs: [] gates %.2f s, same in file order %.2f s, no-op hand-off %.0f ms", rep+1,
			f.GateCount, last(pv)/1000, last(sv)/1000, h)
	}
	one := fmt.Sprintf("%d gates of `%s`", f.GateCount, cmd)
	b.report.add(line{Bench: bGates, Measure: fmt.Sprintf("one run, %s, all `needs: []`, POST → passed, 1 worker × %d", one, f.GateCount),
		Sando: pv, Bases: []base{
			{"same gates in file order (no needs)", sv},
			{"goal: one gate's work + 0.5 s + a no-op run's hand-off", value{Unit: "ms", Samples: []float64{ms(f.GateWork) + 500 + oh.Median()}}},
		}})
	b.report.add(line{Bench: bGates, Measure: "no-op run POST → passed, p50, same stack", Sando: oh})
	if len(skew.Samples) > 0 {
		b.report.add(line{Bench: bGates, Measure: "first → last of the parallel gates' started_at", Sando: skew})
	}
	limit := ms(f.GateWork) + 500 + oh.Median()
	b.report.goal(bGates, fmt.Sprintf("%d `needs: []` gates of %s ≤ %s + 0.5 s + a no-op hand-off", f.GateCount, f.GateWork, f.GateWork),
		pv.Median() <= limit, "%.2f s vs %.2f s", pv.Median()/1000, limit/1000)
	return nil
}

// ---------------------------------------------------------------- 9. idle

// redisCPU is Redis's used_cpu_sys + used_cpu_user, in seconds.
func (b *bench) redisCPU(ctx context.Context) float64 {
	info := b.redis.ctl.Info(ctx, "cpu").Val()
	sys, _ := strconv.ParseFloat(infoField(info, "used_cpu_sys"), 64)
	usr, _ := strconv.ParseFloat(infoField(info, "used_cpu_user"), 64)
	return sys + usr
}

// window is one idle measurement: commands/s others sent (INFO
// commandstats, Lua's included), their EVALSHA round trips/s, and the
// Redis CPU they cost (cores).
func (b *bench) window(ctx context.Context, d time.Duration) (cmds, evalsha, cpu float64, stats cmdStats, err error) {
	before, err := b.redis.Stats(ctx)
	if err != nil {
		return
	}
	c0, t0 := b.redisCPU(ctx), time.Now()
	time.Sleep(d)
	after, err := b.redis.Stats(ctx)
	if err != nil {
		return
	}
	c1, el := b.redisCPU(ctx), time.Since(t0).Seconds()
	stats = b.redis.Delta(before, after)
	return float64(stats.Total()) / el, float64(stats["evalsha"]) / el, (c1 - c0) / el, stats, nil
}

func (b *bench) idle(ctx context.Context) error {
	o, f := b.opt, b.opt.Fleet
	type row struct {
		handoff            value
		cmds, evals, cpu   map[int]*value // per idle worker, by workers running
		perCore            value          // idle workers per Redis core, at the most workers
		top                string
		apiCmds, baseCores float64
	}
	var rows []row
	for _, iv := range f.IdleIntervals {
		if err := b.redis.Flush(ctx); err != nil {
			return err
		}
		s, err := b.startStack(stackOpts{Pipelines: []pipelineSpec{noopPipeline(b.repo)}, Concurrency: o.Concurrency,
			OwnDataDirs: true, PollInterval: iv})
		if err != nil {
			return err
		}
		r := row{handoff: value{Unit: "ms"}, cmds: map[int]*value{}, evals: map[int]*value{}, cpu: map[int]*value{},
			perCore: value{Unit: ""}}
		// The API alone, then Redis's own background (serverCron):
		// subtracted from every window.
		time.Sleep(f.Settle)
		r.apiCmds, _, r.baseCores, _, err = b.window(ctx, f.IdleWindow)
		if err != nil {
			s.Stop()
			return err
		}
		a := newAPI(s.API.Addr, b.sha)
		for _, n := range f.IdleWorkers {
			for len(s.Workers) < n {
				if err = s.AddWorker(); err != nil {
					s.Stop()
					return err
				}
			}
			if n == f.IdleWorkers[0] {
				h := 0.0
				for range o.Reps {
					if h, err = handoff(ctx, a, "noop", f.HandoffRuns, time.Minute); err != nil {
						s.Stop()
						return err
					}
					r.handoff.Samples = append(r.handoff.Samples, h)
				}
			}
			time.Sleep(f.Settle)
			r.cmds[n], r.evals[n], r.cpu[n] = &value{Unit: "cmds/s"}, &value{Unit: "/s"}, &value{Unit: "%"}
			for range o.Reps {
				c, e, cpu, st, err := b.window(ctx, f.IdleWindow)
				if err != nil {
					s.Stop()
					return err
				}
				k := float64(n)
				r.cmds[n].Samples = append(r.cmds[n].Samples, (c-r.apiCmds)/k)
				r.evals[n].Samples = append(r.evals[n].Samples, e/k)
				r.cpu[n].Samples = append(r.cpu[n].Samples, 100*max(0, cpu-r.baseCores)/k)
				if n == f.IdleWorkers[0] {
					r.top = st.Top(8, f.IdleWindow.Seconds()*k)
				}
			}
		}
		s.Stop()
		nmax := slices.Max(f.IdleWorkers)
		for _, x := range r.cpu[nmax].Samples {
			if x > 0 {
				r.perCore.Samples = append(r.perCore.Samples, 100/x)
			}
		}
		b.logf("poll %s: hand-off p50 %.0f ms; per idle worker %.0f cmds/s (%.0f EVALSHA/s), %.2f%% of a Redis core with %d; %.0f idle workers per Redis core",
			iv, r.handoff.Median(), r.cmds[nmax].Median(), r.evals[nmax].Median(), r.cpu[nmax].Median(), nmax, r.perCore.Median())
		rows = append(rows, r)
	}
	for i, iv := range f.IdleIntervals {
		r := rows[i]
		n0, nmax := f.IdleWorkers[0], slices.Max(f.IdleWorkers)
		p := "SANDO_POLL_INTERVAL=" + iv.String() + ": "
		b.report.add(line{Bench: bIdle, Measure: p + "no-op run POST → passed, p50, 1 worker", Sando: r.handoff})
		var bases []base
		for _, n := range f.IdleWorkers[1:] {
			bases = append(bases, base{fmt.Sprintf("per worker, %d idle workers", n), *r.cmds[n]})
		}
		b.report.add(line{Bench: bIdle, Measure: fmt.Sprintf("%sRedis commands/s per idle worker, %d idle worker", p, n0), Sando: *r.cmds[n0], Bases: bases})
		b.report.add(line{Bench: bIdle, Measure: p + "of which EVALSHA round trips/s per worker", Sando: *r.evals[nmax]})
		b.report.add(line{Bench: bIdle, Measure: fmt.Sprintf("%sRedis CPU per idle worker, %% of a core (%d workers)", p, nmax), Sando: *r.cpu[nmax]})
		b.report.add(line{Bench: bIdle, Measure: p + "→ idle workers one Redis core carries", Sando: r.perCore})
		b.report.note("Idle, poll %s: commands per second per idle worker by command (%d worker): %s; the API alone sent %.1f/s; "+
			"Redis's own background CPU (subtracted) %.2f%% of a core.", iv, n0, r.top, r.apiCmds, 100*r.baseCores)
	}
	return nil
}
