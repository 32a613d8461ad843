package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/gitfetch"
	"sando.dev/sando/internal/httpapi"
	sproc "sando.dev/sando/internal/proc"
	"sando.dev/sando/internal/projversion"
	"sando.dev/sando/internal/runview"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/testproc"
	"sando.dev/sando/internal/worker"
	"sando.dev/sando/runstore"
	"sando.dev/sando/tasks"
)

// ---------------------------------------------------------------- bare asynq chain

// chains is the naive asynq chain: a task type whose handler enqueues the
// next link until the chain has length tasks. It runs in the bench process
// on its own queue(s) of the same Redis.
type chains struct {
	srvs   []*asynq.Server
	client *asynq.Client
	layout chainLayout
	length int
	work   time.Duration

	mu   sync.Mutex
	done map[string]chan struct{}
	seq  atomic.Int64
}

// chainLayout is where a chain's links wait and how servers pick among
// those queues.
type chainLayout struct {
	queues map[string]int        // served queues and their priorities
	strict bool                  // asynq's StrictPriority
	of     func(link int) string // the queue of link n (0 is the first)
}

// oneQueue puts every link on queue q: FIFO across chains.
func oneQueue(q string) chainLayout {
	return chainLayout{queues: map[string]int{q: 1}, of: func(int) string { return q }}
}

// sandoLayout is Sando's layout, read from steps.Queues so it follows it:
// the first link on the fetch queue, every later one on the disk's queue,
// under prefix, with the same priorities, served in strict priority.
func sandoLayout(prefix string) (chainLayout, error) {
	const disk = "bench"
	first, later := steps.First().QueueOn(disk), steps.Step{Kind: steps.Compile}.QueueOn(disk)
	queues := steps.Queues(disk)
	if _, ok := queues[first]; !ok {
		return chainLayout{}, fmt.Errorf("steps.Queues has no %q queue (%v): update sandoLayout", first, queues)
	}
	if _, ok := queues[later]; !ok {
		return chainLayout{}, fmt.Errorf("steps.Queues has no %q queue (%v): update sandoLayout", later, queues)
	}
	l := chainLayout{queues: map[string]int{}, strict: true}
	for q, prio := range queues {
		l.queues[prefix+q] = prio
	}
	l.of = func(n int) string {
		if n == 0 {
			return prefix + first
		}
		return prefix + later
	}
	return l, nil
}

// chainConfig is one set of bare asynq servers running chains.
type chainConfig struct {
	Layout      chainLayout
	Servers     int
	Concurrency int           // of each server
	Interval    time.Duration // TaskCheckInterval; 0: asynq's default, 1 s
	Length      int           // links per chain
	Work        time.Duration // each link sleeps this long before enqueuing the next, standing for a phase's work
}

type nopLogger struct{}

func (nopLogger) Debug(...any) {}
func (nopLogger) Info(...any)  {}
func (nopLogger) Warn(...any)  {}
func (nopLogger) Error(...any) {}
func (nopLogger) Fatal(...any) {}

// startChains runs servers asynq servers of conc each on chainQueue,
// polling every interval (0: asynq's default, 1 s), for chains of 4
// links; links do no work.
func startChains(addr string, servers, conc int, interval time.Duration) (*chains, error) {
	return startChainsWith(addr, chainConfig{Layout: oneQueue(chainQueue), Servers: servers, Concurrency: conc, Interval: interval, Length: 4})
}

// startChainsWith runs cfg.Servers asynq servers on cfg.Layout's queues.
func startChainsWith(addr string, cfg chainConfig) (*chains, error) {
	c := &chains{layout: cfg.Layout, length: cfg.Length, work: cfg.Work, done: map[string]chan struct{}{}}
	c.client = asynq.NewClient(asynq.RedisClientOpt{Addr: addr})
	mux := asynq.NewServeMux()
	mux.HandleFunc("bench:link", c.handle)
	for range cfg.Servers {
		srv := asynq.NewServer(asynq.RedisClientOpt{Addr: addr}, asynq.Config{
			Concurrency:       cfg.Concurrency,
			Queues:            cfg.Layout.queues,
			StrictPriority:    cfg.Layout.strict,
			TaskCheckInterval: cfg.Interval,
			Logger:            nopLogger{},
			LogLevel:          asynq.FatalLevel,
		})
		if err := srv.Start(mux); err != nil {
			c.Stop()
			return nil, err
		}
		c.srvs = append(c.srvs, srv)
	}
	return c, nil
}

func (c *chains) Stop() {
	for _, s := range c.srvs {
		s.Shutdown()
	}
	_ = c.client.Close()
}

func (c *chains) handle(ctx context.Context, t *asynq.Task) error {
	id, step, _ := strings.Cut(string(t.Payload()), ":")
	n, _ := strconv.Atoi(step)
	if c.work > 0 {
		select {
		case <-time.After(c.work):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if n+1 < c.length {
		_, err := c.client.EnqueueContext(ctx, asynq.NewTask("bench:link", []byte(id+":"+strconv.Itoa(n+1))), asynq.Queue(c.layout.of(n+1)))
		return err
	}
	c.mu.Lock()
	ch := c.done[id]
	delete(c.done, id)
	c.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	return nil
}

// start enqueues the first link of a new chain; the channel closes when
// the last link ran.
func (c *chains) start(ctx context.Context) (<-chan struct{}, error) {
	id := strconv.FormatInt(c.seq.Add(1), 10)
	ch := make(chan struct{})
	c.mu.Lock()
	c.done[id] = ch
	c.mu.Unlock()
	_, err := c.client.EnqueueContext(ctx, asynq.NewTask("bench:link", []byte(id+":0")), asynq.Queue(c.layout.of(0)))
	return ch, err
}

// One runs a chain on an otherwise idle system: enqueue to last link done.
func (c *chains) One(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	ch, err := c.start(ctx)
	if err != nil {
		return 0, err
	}
	select {
	case <-ch:
		return time.Since(t0), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(60 * time.Second):
		return 0, errors.New("bare chain did not finish within 60s")
	}
}

// Many starts n chains at once and returns when all have finished.
func (c *chains) Many(ctx context.Context, n int) (time.Duration, error) {
	t0 := time.Now()
	dones, err := c.launch(ctx, n)
	if err != nil {
		return 0, err
	}
	timeout := time.After(10 * time.Minute)
	for _, ch := range dones {
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-timeout:
			return 0, errors.New("bare chains did not finish within 10m")
		}
	}
	return time.Since(t0), nil
}

// Each starts n chains at once and returns when each finished, counted
// from the first enqueue, in the order they were started.
func (c *chains) Each(ctx context.Context, n int) ([]time.Duration, error) {
	t0 := time.Now()
	dones, err := c.launch(ctx, n)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	ends := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i, ch := range dones {
		// one waiter per chain: each end is stamped when it happens,
		// not when a loop over the others gets to it
		wg.Go(func() {
			select {
			case <-ch:
				ends[i] = time.Since(t0)
			case <-ctx.Done():
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bare chains did not all finish: %w", err)
	}
	return ends, nil
}

// launch enqueues the first links of n chains (8 enqueuers, as the API's
// clients would) and returns their done channels.
func (c *chains) launch(ctx context.Context, n int) ([]<-chan struct{}, error) {
	dones := make([]<-chan struct{}, n)
	err := forEach(ctx, n, 8, func(i int) error {
		ch, err := c.start(ctx)
		dones[i] = ch
		return err
	})
	if err != nil {
		return nil, err
	}
	return dones, nil
}

// ---------------------------------------------------------------- the floor

// floor does what Sando's phases do for the benchmark pipeline, with the
// same packages, directly: fetch and check out the commit (gitfetch), read
// the version, run build, stage and gate (`sh -c true` through proc, output
// in log files), then drop the worktree. No Redis, no queue.
type floor struct {
	repo   string
	sha    string // the commit every run builds, by full sha
	layout datadir.Layout
	env    []string
	seq    atomic.Int64
}

func newFloor(repo, sha, dir string) *floor {
	return &floor{repo: repo, sha: sha, layout: datadir.Layout{Root: dir}, env: tasks.BaseEnv(nil)}
}

func (f *floor) One(ctx context.Context) error {
	id := f.seq.Add(1)
	dir := f.layout.Worktree(id)
	logf, err := f.layout.Create(id, "fetch")
	if err != nil {
		return err
	}
	sha, err := gitfetch.Fetch(ctx, gitfetch.Options{Repo: f.repo, Dir: dir, Log: logf, Env: f.env, Timeout: 2 * time.Minute,
		Cache: f.layout.GitCache()},
		gitfetch.Want{SHA: f.sha})
	logf.Close()
	if err != nil {
		return err
	}
	ver, err := projversion.Read(dir, "", sha)
	if err != nil {
		return err
	}
	env := append(append([]string(nil), f.env...),
		"SANDO_RUN_ID="+strconv.FormatInt(id, 10), "SANDO_SHA="+sha, "SANDO_VERSION="+ver,
		"SANDO_WORKTREE="+dir, "SANDO_STAGE_DIR="+f.layout.StageDir(id))
	for _, step := range []string{"compile", "stage", "gate-unit"} {
		if step == "stage" {
			if err := os.MkdirAll(f.layout.StageDir(id), 0o755); err != nil {
				return err
			}
		}
		logf, err := f.layout.Create(id, step)
		if err != nil {
			return err
		}
		res, err := sproc.Run(ctx, sproc.Spec{Args: []string{"sh", "-c", "true"}, Dir: dir, Output: logf, Timeout: time.Minute, Env: env})
		logf.Close()
		if err != nil {
			return err
		}
		if !res.OK() {
			return fmt.Errorf("%s: %s", step, res.Describe(time.Minute))
		}
	}
	return os.RemoveAll(dir)
}

// Many does n runs' work with par goroutines.
func (f *floor) Many(ctx context.Context, n, par int) (time.Duration, error) {
	t0 := time.Now()
	if err := forEach(ctx, n, par, func(int) error { return f.One(ctx) }); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// ---------------------------------------------------------------- roles

// roleEnv makes the bench binary (or its test binary) play a part in a
// separate process: a baseline server, or Sando itself with pprof.
const roleEnv = "SANDO_BENCH_ROLE"

func runRole(role string) int {
	var err error
	if addr := os.Getenv("BENCH_PPROF_ADDR"); addr != "" && !strings.HasPrefix(role, "sando-") {
		go func() { _ = http.ListenAndServe(addr, http.DefaultServeMux) }()
	}
	switch role {
	case "load":
		err = loadRole()
	case "gin":
		err = ginBaseline()
	case "asynq-idle":
		err = asynqIdle()
	case "sando-api", "sando-worker":
		err = sandoWithPprof(role)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, `{"msg":"role failed","err":%q}`+"\n", err.Error())
		return 1
	}
	return 0
}

// loadRole is the HTTP load generator on its own, for experiments:
// BENCH_TARGET=host:port BENCH_PATH=/runs/1 [BENCH_CONNS=64 BENCH_DUR=3s].
func loadRole() error {
	conns, _ := strconv.Atoi(os.Getenv("BENCH_CONNS"))
	dur, _ := time.ParseDuration(os.Getenv("BENCH_DUR"))
	if conns == 0 {
		conns = 64
	}
	if dur == 0 {
		dur = 3 * time.Second
	}
	r, err := httpLoad(context.Background(), os.Getenv("BENCH_TARGET"), os.Getenv("BENCH_PATH"), conns, 500*time.Millisecond, dur, 200)
	if err != nil {
		return err
	}
	fmt.Printf("%.0f req/s  p50 %.2f ms  p99 %.2f ms  body %d B  total %d\n", r.RPS, ms(r.P50), ms(r.P99), r.Bytes, r.Total)
	return nil
}

func announce(msg, addr string) {
	fmt.Fprintf(os.Stderr, `{"msg":%q,"addr":%q}`+"\n", msg, addr)
}

// ginBaseline serves the Gin baselines of the poll benchmark:
//
//	GET /runs/:id  the naive handler: one HGETALL, rendered (same view)
//	GET /static    a fixed JSON body of the finished run's size
func ginBaseline() error {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("BENCH_REDIS_ADDR"), PoolSize: 64})
	store := runstore.New(rdb, os.Getenv("BENCH_PIPELINE"))
	static, err := os.ReadFile(os.Getenv("BENCH_STATIC_FILE"))
	if err != nil {
		return err
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/runs/:id", func(c *gin.Context) {
		id, err := strconv.ParseInt(c.Param("id"), 10, 64)
		if err != nil {
			c.Status(http.StatusBadRequest)
			return
		}
		run, err := store.Get(c, id)
		if err != nil {
			c.Status(http.StatusNotFound)
			return
		}
		c.JSON(http.StatusOK, runview.Of(run))
	})
	r.GET("/static", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", static) })
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	announce("baseline listening", ln.Addr().String())
	return serveUntilTerm(httpapi.NewHTTPServer(r), ln)
}

// asynqIdle is bare asynq idling on Sando's queues as a worker serves
// them (worker.Start): the phase queues at the poll interval, the system
// queue on its own server. It prices what asynq alone costs at rest.
func asynqIdle() error {
	conc, _ := strconv.Atoi(os.Getenv("BENCH_CONCURRENCY"))
	interval, _ := time.ParseDuration(os.Getenv("BENCH_POLL_INTERVAL"))
	mux := asynq.NewServeMux()
	mux.HandleFunc("bench:noop", func(context.Context, *asynq.Task) error { return nil })
	var srvs []*asynq.Server
	for _, c := range []asynq.Config{
		{Concurrency: conc, Queues: steps.Queues("bench"), StrictPriority: true, TaskCheckInterval: interval},
		{Concurrency: worker.SystemConcurrency, Queues: map[string]int{steps.SystemQueue: 1}, TaskCheckInterval: worker.SystemPollInterval},
	} {
		c.Logger, c.LogLevel = nopLogger{}, asynq.FatalLevel
		srv := asynq.NewServer(asynq.RedisClientOpt{Addr: os.Getenv("BENCH_REDIS_ADDR")}, c)
		if err := srv.Start(mux); err != nil {
			return err
		}
		srvs = append(srvs, srv)
	}
	announce("asynq started", "")
	waitTerm()
	for _, srv := range srvs {
		srv.Shutdown()
	}
	return nil
}

func waitTerm() {
	ch := make(chan os.Signal, 1)
	notifyTerm(ch)
	<-ch
}

func serveUntilTerm(srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	ch := make(chan os.Signal, 1)
	notifyTerm(ch)
	select {
	case err := <-errc:
		return err
	case <-ch:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	}
}

// startRole runs this very binary in a role.
func (b *bench) startRole(role string, env []string, logName string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startProc(role, self, append([]string{roleEnv + "=" + role}, env...), filepath.Join(b.work, logName),
		testproc.Msg("baseline listening", "asynq started", "api listening", "worker started"))
}
