package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/internal/testproc"
	"sando.dev/sando/internal/testrepo"
)

// ---------------------------------------------------------------- redis

// redisServer is a redis-server child on a free loopback port, started
// the way the test suite starts one (internal/redistest).
type redisServer struct {
	*redistest.Server

	// ctl is the bench's own client; own counts the commands it sent, so
	// they can be taken out of INFO commandstats deltas.
	ctl *redis.Client
	own *cmdCounter
}

func startRedis(dir string) (*redisServer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// The long-poll benchmark holds 10,000 connections through the API.
	srv, err := redistest.Launch(dir, "--maxclients", "20000")
	if err != nil {
		return nil, err
	}
	s := &redisServer{Server: srv, own: &cmdCounter{n: map[string]int64{}}}
	s.ctl = redis.NewClient(&redis.Options{Addr: s.Addr, PoolSize: 4})
	s.ctl.AddHook(s.own)
	return s, nil
}

func (s *redisServer) Stop() {
	if s == nil || s.Server == nil {
		return
	}
	_ = s.ctl.Close()
	s.Server.Stop()
}

func (s *redisServer) Client() *redis.Client { return redis.NewClient(&redis.Options{Addr: s.Addr}) }

// Flush empties Redis between benchmarks (queues are shared by name).
func (s *redisServer) Flush(ctx context.Context) error { return s.ctl.FlushAll(ctx).Err() }

func (s *redisServer) Version(ctx context.Context) string {
	return infoField(s.ctl.Info(ctx, "server").Val(), "redis_version")
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// cmdStats is INFO commandstats: calls per command, including the commands
// Lua scripts run (Redis counts those too).
type cmdStats map[string]int64

// snapshot is INFO commandstats, cpu and stats at one moment, with what
// the bench itself had sent by then, so deltas can leave the bench's own
// calls out.
type snapshot struct {
	calls, own cmdStats
	// cpu is used_cpu_sys + used_cpu_user, in s (with no I/O threads,
	// all of it the main thread's, which runs every command and script).
	cpu float64
	// reads and writes are total_reads_processed and
	// total_writes_processed: a client's request that arrives in one
	// piece (a command, or a pipeline of them) is one read, so reads
	// count round trips; writes count replies and pub/sub deliveries.
	reads, writes int64
}

// Stats snapshots INFO commandstats, cpu and stats (one INFO).
func (s *redisServer) Stats(ctx context.Context) (snapshot, error) {
	own := s.own.snapshot()
	info, err := s.ctl.Info(ctx, "commandstats", "cpu", "stats").Result()
	if err != nil {
		return snapshot{}, err
	}
	snap := snapshot{own: own}
	num := func(name string) float64 { v, _ := strconv.ParseFloat(infoField(info, name), 64); return v }
	snap.cpu = num("used_cpu_sys") + num("used_cpu_user")
	snap.reads, snap.writes = int64(num("total_reads_processed")), int64(num("total_writes_processed"))
	out := cmdStats{}
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_")
		if !ok {
			continue
		}
		name, fields, _ := strings.Cut(rest, ":")
		for _, f := range strings.Split(fields, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				out[name], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	snap.calls = out
	return snap, nil
}

// usage is what Redis spent between two snapshots on others' behalf.
type usage struct {
	CPU           float64 // seconds (the bench's own few commands included)
	Reads, Writes int64   // less one each per command the bench sent
}

func (s *redisServer) Usage(before, after snapshot) usage {
	own := after.own.Total() - before.own.Total()
	return usage{
		CPU:   after.cpu - before.cpu,
		Reads: after.reads - before.reads - own, Writes: after.writes - before.writes - own,
	}
}

// Delta is what others sent between two snapshots: INFO is dropped
// (only the bench calls it) and the bench's own commands are subtracted.
func (s *redisServer) Delta(before, after snapshot) cmdStats {
	d := cmdStats{}
	for k, v := range after.calls {
		if k == "info" {
			continue
		}
		if n := v - before.calls[k] - (after.own[k] - before.own[k]); n > 0 {
			d[k] = n
		}
	}
	return d
}

func (d cmdStats) Total() int64 {
	var n int64
	for _, v := range d {
		n += v
	}
	return n
}

// Top lists the commands with the most calls, "name n" each.
func (d cmdStats) Top(k int, per float64) string {
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for name, v := range d {
		all = append(all, kv{name, v})
	}
	sortSlice(all, func(a, b kv) bool { return a.v > b.v || (a.v == b.v && a.k < b.k) })
	var parts []string
	for i, e := range all {
		if i == k {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.1f", strings.ToUpper(e.k), float64(e.v)/per))
	}
	return strings.Join(parts, ", ")
}

// cmdCounter is a go-redis hook counting the commands a client sends.
type cmdCounter struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *cmdCounter) add(name string) {
	c.mu.Lock()
	c.n[strings.ReplaceAll(strings.ToLower(name), " ", "|")]++
	c.mu.Unlock()
}

func (c *cmdCounter) snapshot() cmdStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(cmdStats, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

func (c *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add(cmd.Name())
		return next(ctx, cmd)
	}
}

func (c *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.add(cmd.Name())
		}
		return next(ctx, cmds)
	}
}

// ---------------------------------------------------------------- machine

type machine struct {
	Cores   int
	CPU     string
	Kernel  string
	Go      string
	Redis   string
	Git     string
	Date    time.Time
	MemoryG float64
}

func describeMachine(ctx context.Context, r *redisServer) machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Redis: r.Version(ctx), Date: time.Now()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.CommandContext(context.Background(), "git", "--version").Output(); err == nil {
		m.Git = strings.TrimPrefix(strings.TrimSpace(string(out)), "git version ")
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %f kB", &kb); err == nil {
			m.MemoryG = kb / (1 << 20)
		}
	}
	return m
}

// rssKiB is VmRSS of a process, from /proc/PID/status.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

// ---------------------------------------------------------------- binaries

// moduleRoot finds the directory of sando's go.mod from the working
// directory up (go run ./bench runs at the root, go test in bench/).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module sando.dev/sando\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod of module sando.dev/sando not found above the working directory")
		}
		dir = parent
	}
}

// ---------------------------------------------------------------- the pipeline repo

// makeRepo is a local git repository with one commit, the pipeline's repo.
func makeRepo(dir string) (string, error) {
	_, sha, err := testrepo.New(dir, map[string]string{
		"VERSION": "1.0.0\n", "README": "a project Sando rebuilds in the benchmarks\n",
	})
	return sha, err
}

// pipelineSpec is what the benchmark pipelines vary.
type pipelineSpec struct {
	Name string
	Repo string
	Gate string // the one gate's command, when Gates is empty
	// Gates, when set, replace the one gate: in file order, each with its
	// needs (nil: no needs key, so it needs the gate before it).
	Gates []gateSpec
	Build string // the build command; "" is "true"
	Reuse bool   // reuse: tree
}

type gateSpec struct {
	Kind, Run string
	Needs     []string // nil: no needs key; empty: needs: []
}

func (p pipelineSpec) yaml() string {
	gates := p.Gates
	if len(gates) == 0 {
		gate := p.Gate
		if gate == "" {
			gate = "true"
		}
		gates = []gateSpec{{Kind: "unit", Run: gate}}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "name: %s\nrepo: %s\nbranch: main\nbuild: %s\nstage: \"true\"\n", p.Name, p.Repo, strconv.Quote(cmp.Or(p.Build, "true")))
	if p.Reuse {
		sb.WriteString("reuse: tree\n")
	}
	sb.WriteString("gates:\n")
	for _, g := range gates {
		fmt.Fprintf(&sb, "  - kind: %s\n    run: %s\n", g.Kind, strconv.Quote(g.Run))
		if g.Needs != nil {
			fmt.Fprintf(&sb, "    needs: [%s]\n", strings.Join(g.Needs, ", "))
		}
	}
	return sb.String()
}

// ---------------------------------------------------------------- processes

// proc is one Sando process (or a baseline server) the bench started
// (testproc's), with what the bench reads of it.
type proc struct{ *testproc.Proc }

func (p *proc) RSS() int64 {
	n, _ := rssKiB(p.PID())
	return n
}

// Stop sends SIGTERM and waits; SIGKILL after 15 s. Nil-safe (a stack
// without an API).
func (p *proc) Stop() {
	if p != nil {
		p.Proc.Stop(15 * time.Second)
	}
}

// startProc runs bin with env added to the bench's environment, its
// stdout and stderr (JSON logs) copied to logPath, and waits until ready
// accepts a log line.
func startProc(name, bin string, env []string, logPath string, ready testproc.Ready) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(context.Background(), bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logf
	p, err := testproc.Start(cmd, testproc.Options{Name: name, Log: logf, Ready: ready})
	if err != nil {
		logf.Close()
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%w; log:\n%s", err, tail(string(b), 2000))
	}
	go func() { <-p.Done(); logf.Close() }()
	return &proc{p}, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// stackOpts is one Sando deployment: an API and some worker processes.
type stackOpts struct {
	Pipeline pipelineSpec
	// Pipelines, when set, are written one file each into a directory,
	// which is SANDO_CONFIG (Pipeline is then unused).
	Pipelines   []pipelineSpec
	Workers     int
	Concurrency int
	// OwnDataDirs gives each worker a data dir of its own (data-0, ...),
	// as workers on separate hosts have: each is a disk:<id> queue.
	OwnDataDirs bool
	// PollInterval overrides the bench's SANDO_POLL_INTERVAL.
	PollInterval time.Duration
	NoAPI        bool
	// NoSupersede sets SANDO_SUPERSEDE=0 on the API (throughput).
	NoSupersede bool
	// Profile runs the API and workers as this binary in the sando-*
	// roles: Sando's code, plus net/http/pprof on PprofAddr.
	Profile bool
}

type stack struct {
	API     *proc
	Workers []*proc
	Dir     string
	DataDir string
	// Pprof is where each process serves net/http/pprof (with Profile):
	// "api", "worker-0", ...
	Pprof map[string]string

	opt   stackOpts
	bench *bench
	env   []string // every process's environment
}

// role returns the binary and extra environment of one process: the real
// binary, or with profiling this program in a sando-* role.
func (b *bench) role(s *stack, o stackOpts, name, bin, role string) (string, []string, error) {
	if !o.Profile {
		return bin, nil, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	port, err := redistest.FreePort()
	if err != nil {
		return "", nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.Pprof[name] = addr
	return self, []string{roleEnv + "=" + role, "BENCH_PPROF_ADDR=" + addr}, nil
}

func (b *bench) startStack(o stackOpts) (*stack, error) {
	name := o.Pipeline.Name
	if len(o.Pipelines) > 0 {
		name = o.Pipelines[0].Name
	}
	dir, err := os.MkdirTemp(b.work, "stack-"+name+"-")
	if err != nil {
		return nil, err
	}
	s := &stack{Dir: dir, DataDir: filepath.Join(dir, "data"), Pprof: map[string]string{}, opt: o, bench: b}
	cfg := filepath.Join(dir, "sando.yaml")
	if len(o.Pipelines) > 0 {
		cfg = filepath.Join(dir, "pipelines")
		if err := os.MkdirAll(cfg, 0o755); err != nil {
			return nil, err
		}
		for _, p := range o.Pipelines {
			if err := os.WriteFile(filepath.Join(cfg, p.Name+".yaml"), []byte(p.yaml()), 0o644); err != nil {
				return nil, err
			}
		}
	} else if err := os.WriteFile(cfg, []byte(o.Pipeline.yaml()), 0o644); err != nil {
		return nil, err
	}
	poll := cmp.Or(o.PollInterval, b.opt.PollInterval)
	env := []string{
		"REDIS_URL=" + b.redis.URL(), "SANDO_CONFIG=" + cfg, "SANDO_DATA_DIR=" + s.DataDir,
		"SANDO_POLL_INTERVAL=" + poll.String(),
		"SANDO_CONCURRENCY=" + strconv.Itoa(max(1, o.Concurrency)),
		"SANDO_LOG_LEVEL=info", "SANDO_TOKEN=", "SANDO_READ_TOKEN=", "SANDO_WORKER_ADDR=",
	}
	if !o.NoAPI {
		apiEnv := append([]string{"SANDO_ADDR=127.0.0.1:0"}, env...)
		if o.NoSupersede {
			apiEnv = append(apiEnv, "SANDO_SUPERSEDE=0")
		}
		bin, extra, err := b.role(s, o, "api", b.apiBin, "sando-api")
		if err != nil {
			return nil, err
		}
		apiEnv = append(apiEnv, extra...)
		s.API, err = startProc("sando-api", bin, apiEnv, filepath.Join(dir, "api.log"), testproc.Msg("api listening"))
		if err != nil {
			return nil, err
		}
	}
	s.env = env
	for range o.Workers {
		if err := s.AddWorker(); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// AddWorker starts one more worker process on the stack (on a data dir of
// its own with OwnDataDirs).
func (s *stack) AddWorker() error {
	i := len(s.Workers)
	bin, extra, err := s.bench.role(s, s.opt, fmt.Sprintf("worker-%d", i), s.bench.workerBin, "sando-worker")
	if err != nil {
		return err
	}
	env := append(slices.Clone(s.env), extra...)
	if s.opt.OwnDataDirs {
		env = append(env, "SANDO_DATA_DIR="+filepath.Join(s.Dir, fmt.Sprintf("data-%d", i)))
	}
	w, err := startProc(fmt.Sprintf("sando-worker-%d", i), bin, env,
		filepath.Join(s.Dir, fmt.Sprintf("worker-%d.log", i)), testproc.Msg("worker started"))
	if err != nil {
		return err
	}
	s.Workers = append(s.Workers, w)
	return nil
}

func (s *stack) Stop() {
	if s == nil {
		return
	}
	var wg sync.WaitGroup
	for _, w := range s.Workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.Stop() }()
	}
	wg.Wait()
	s.API.Stop()
}

// ---------------------------------------------------------------- MONITOR

// monitorCounts splits the commands Redis ran into those clients sent
// (round trips) and those Lua scripts ran, from MONITOR. MONITOR costs
// Redis time, so it only runs in untimed accounting passes.
type monitorCounts struct {
	Client, Lua cmdStats
	// Dequeues counts asynq's dequeue attempts by queue: the RPOPLPUSH
	// its dequeue script runs on each queue it tries, task or none.
	Dequeues cmdStats
}

// Monitor starts counting; stop ends it and returns the counts minus
// what the bench itself sent meanwhile.
func (s *redisServer) Monitor(ctx context.Context) (stop func() monitorCounts, err error) {
	c, err := new(net.Dialer).DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(c, 1<<20)
	if _, err := c.Write([]byte("MONITOR\r\n")); err != nil {
		c.Close()
		return nil, err
	}
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		c.Close()
		return nil, fmt.Errorf("MONITOR: %q %v", line, err) //nolint:errorlint // err is nil when the reply was wrong, so it is only printed
	}
	own0 := s.own.snapshot()
	out := monitorCounts{Client: cmdStats{}, Lua: cmdStats{}, Dequeues: cmdStats{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			// +1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "…" …
			_, rest, ok := strings.Cut(line, " [")
			if !ok {
				continue
			}
			src, rest, ok := strings.Cut(rest, "] \"")
			if !ok {
				continue
			}
			name, rest, _ := strings.Cut(rest, "\"")
			name = strings.ToLower(name)
			if strings.HasSuffix(src, " lua") {
				out.Lua[name]++
				// "RPOPLPUSH" "asynq:{<queue>}:pending" "asynq:{<queue>}:active"
				if _, q, ok := strings.Cut(rest, "{"); ok && name == "rpoplpush" {
					q, _, _ = strings.Cut(q, "}")
					out.Dequeues[q]++
				}
			} else {
				out.Client[name]++
			}
		}
	}()
	return func() monitorCounts {
		own := s.own.snapshot()
		time.Sleep(50 * time.Millisecond) // let the tail arrive
		c.Close()
		<-done
		for k, v := range own {
			out.Client[k] -= v - own0[k]
			if out.Client[k] <= 0 {
				delete(out.Client, k)
			}
		}
		return out
	}, nil
}
