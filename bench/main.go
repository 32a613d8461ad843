// Command bench measures Sando side by side with bare asynq, bare Gin and
// the work itself, on a redis-server it starts on a free port,
// and writes BENCHMARKS.md.
//
//	go run ./bench                    # everything; what `make bench` runs
//	go run ./bench -short             # every benchmark once, tiny numbers
//	go run ./bench -only poll,latency # some of them
//
// Sando is measured as it ships: the real sando-api and sando-worker
// binaries (built here with `go build`), as processes, on the bench's
// redis-server. Baselines run on the same Redis in the same run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"sando.dev/sando/internal/testproc"
)

// options of one bench run. -short shrinks every number so the whole run
// takes seconds (the smoke test runs it).
type options struct {
	Short        bool
	Out          string        // BENCHMARKS.md to write; "" writes none
	Reps         int           // repetitions per figure; each figure is their median
	LatencyRuns  int           // runs per repetition, one at a time
	DefaultRuns  int           // bare chains at asynq's default interval per repetition
	Runs         int           // runs (and chains) per throughput repetition
	Waiters      int           // long-poll waiters
	Conns        int           // keep-alive connections for the poll benchmark
	PollReps     int           // repetitions of the poll benchmark (short windows, interleaved)
	LoadDur      time.Duration // measured window of one HTTP load repetition
	Warmup       time.Duration
	RBRequests   int // redis-benchmark -n
	Concurrency  int // SANDO_CONCURRENCY of each worker (and of the baselines)
	PollInterval time.Duration
	Only         string // comma list of benchmarks: latency,throughput,poll,longpoll,footprint,backlog,scaling,gates,idle,economy,warm,reuse,pages
	Profile      bool   // pprof the worst ratio and add its top functions
	ProfileOnly  string // profile this scenario (latency, throughput, poll-building, poll-finished) and nothing else
	Work         string // scratch directory; default a temp dir, removed after
	APIBin       string // prebuilt binaries (default: go build)
	WorkerBin    string
	Log          io.Writer // progress lines

	Fleet fleetOptions // scaling, gates, idle
	Warm  warmOptions  // warm, reuse

	EconomyRuns int // runs (and chains) per repetition of the Redis economy benchmark

	BacklogChains int           // chains enqueued at once in the backlog benchmark
	BacklogWork   time.Duration // each link's work there: a sleep, standing for a phase's work
}

func defaultOptions() options {
	return options{
		Reps: 3, LatencyRuns: 30, DefaultRuns: 3, Runs: 2000, Waiters: 10000, Conns: 64, PollReps: 5,
		LoadDur: 2 * time.Second, Warmup: 500 * time.Millisecond, RBRequests: 100000,
		BacklogChains: 40, BacklogWork: 20 * time.Millisecond, EconomyRuns: 200,
		Concurrency: runtime.NumCPU(), PollInterval: 10 * time.Millisecond, Profile: true,
		Out: "BENCHMARKS.md", Fleet: defaultFleet(), Warm: defaultWarm(),
	}
}

// shorten is -short: every benchmark once, on tiny numbers.
func (o *options) shorten() {
	o.Short = true
	o.Reps, o.LatencyRuns, o.DefaultRuns, o.Runs, o.Waiters, o.PollReps = 1, 3, 1, 4, 200, 1
	o.Conns, o.LoadDur, o.Warmup, o.RBRequests = 8, 300*time.Millisecond, 100*time.Millisecond, 2000
	o.BacklogChains, o.BacklogWork = 4, 5*time.Millisecond
	o.EconomyRuns = 4
	o.Profile = false
	o.Fleet.shorten()
	o.Warm.shorten()
}

func (o options) wants(name string) bool {
	return o.Only == "" || slices.Contains(strings.Split(o.Only, ","), name)
}

func main() {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	o := defaultOptions()
	flag.BoolVar(&o.Short, "short", false, "run every benchmark once on tiny numbers (a smoke test)")
	flag.StringVar(&o.Out, "out", o.Out, "write the report here (Markdown); empty: don't")
	flag.IntVar(&o.Reps, "reps", o.Reps, "repetitions per figure (the figure is their median)")
	flag.IntVar(&o.Runs, "runs", o.Runs, "runs per throughput repetition")
	flag.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "SANDO_CONCURRENCY of each worker, and the baselines' parallelism per worker")
	flag.IntVar(&o.Waiters, "waiters", o.Waiters, "concurrent long-poll waiters")
	flag.StringVar(&o.Only, "only", "", "comma list: latency,throughput,poll,longpoll,footprint,backlog,scaling,gates,idle,economy,warm,reuse,pages")
	flag.BoolVar(&o.Profile, "profile", o.Profile, "pprof the worst ratio and report its top functions")
	flag.StringVar(&o.ProfileOnly, "profile-only", "", "only profile this scenario: latency, throughput, poll-building or poll-finished")
	flag.StringVar(&o.Work, "work", "", "scratch directory (kept); default: a temp dir, removed")
	flag.StringVar(&o.APIBin, "api-bin", "", "use this sando-api binary instead of building ./cmd/api")
	flag.StringVar(&o.WorkerBin, "worker-bin", "", "use this sando-worker binary instead of building ./cmd/worker")
	flag.Parse()
	if o.Short {
		out := o.Out
		o.shorten()
		if !isFlagSet("out") {
			out = "" // a smoke run does not overwrite the real report
		}
		o.Out = out
	}
	o.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func isFlagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// bench is one run: its Redis, binaries, scratch space and results.
type bench struct {
	opt       options
	work      string
	root      string
	redis     *redisServer
	apiBin    string
	workerBin string
	repo      string
	sha       string
	machine   machine
	report    *report
	started   time.Time
	worst     *gap
}

func (b *bench) logf(format string, args ...any) {
	if b.opt.Log != nil {
		fmt.Fprintf(b.opt.Log, "%6.1fs  "+format+"\n", append([]any{time.Since(b.started).Seconds()}, args...)...)
	}
}

// run is the whole program: set up, every benchmark, the report.
func run(ctx context.Context, o options, stdout io.Writer) (err error) {
	b := &bench{opt: o, started: time.Now(), report: &report{}}
	b.root, err = moduleRoot()
	if err != nil {
		return err
	}
	if o.Work != "" {
		b.work, err = filepath.Abs(o.Work)
		if err == nil {
			err = os.MkdirAll(b.work, 0o755)
		}
	} else {
		b.work, err = os.MkdirTemp("", "sando-bench-")
		defer func() {
			if err == nil {
				os.RemoveAll(b.work)
			} else {
				err = fmt.Errorf("%w (logs kept in %s)", err, b.work)
			}
		}()
	}
	if err != nil {
		return err
	}
	b.logf("scratch %s", b.work)
	if o.APIBin != "" && o.WorkerBin != "" {
		b.apiBin, b.workerBin = o.APIBin, o.WorkerBin
	} else {
		b.logf("building sando-api and sando-worker")
		bins, err := testproc.Build(ctx, filepath.Join(b.work, "bin"), "cmd/api", "cmd/worker")
		if err != nil {
			return err
		}
		b.apiBin, b.workerBin = bins[0], bins[1]
	}
	if b.redis, err = startRedis(filepath.Join(b.work, "redis")); err != nil {
		return err
	}
	defer b.redis.Stop()
	b.machine = describeMachine(ctx, b.redis)
	b.logf("redis-server %s on %s; %d cores (%s)", b.machine.Redis, b.redis.Addr, b.machine.Cores, b.machine.CPU)
	if b.sha, err = makeRepo(filepath.Join(b.work, "repo")); err != nil {
		return err
	}
	b.repo = filepath.Join(b.work, "repo")

	type step struct {
		name string
		fn   func(context.Context) error
	}
	for _, s := range []step{
		{"latency", b.latency},
		{"throughput", b.throughput},
		{"poll", b.poll},
		{"longpoll", b.longPoll},
		{"footprint", b.footprint},
		{"backlog", b.backlog},
		{"scaling", b.scaling},
		{"gates", b.gates},
		{"idle", b.idle},
		{"economy", b.economy},
		{"warm", b.warm},
		{"reuse", b.reuse},
		{"pages", b.pages},
	} {
		if !o.wants(s.name) || o.ProfileOnly != "" {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.redis.Flush(ctx); err != nil {
			return err
		}
		b.logf("== %s", s.name)
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if o.ProfileOnly != "" {
		b.worst = &gap{score: 0, scenario: o.ProfileOnly, what: o.ProfileOnly + " (asked for)"}
		o.Profile = true
	}
	if o.Profile {
		if err := b.profileWorst(ctx); err != nil {
			b.logf("profile: %v", err)
			b.report.ProfileErr = err.Error()
		}
	}
	b.report.Elapsed = time.Since(b.started)
	text := b.report.text(b)
	fmt.Fprint(stdout, text)
	if o.Out != "" {
		path := o.Out
		if !filepath.IsAbs(path) {
			path = filepath.Join(b.root, path)
		}
		if err := os.WriteFile(path, []byte(b.report.markdown(b)), 0o644); err != nil {
			return err
		}
		b.logf("wrote %s", path)
	}
	return nil
}
