// Package worker runs Sando's phases: an asynq server on the phase queues,
// tuned so an idle worker picks up the next phase within tens of
// milliseconds, and a small one on the system queue (webhooks, janitor,
// prune), with graceful shutdown and asynq's logs routed to slog.
package worker

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"sando.dev/sando/internal/proc"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/tasks"
)

// Config of one worker process (or of the in-process worker of the
// embedded default).
type Config struct {
	Redis       asynq.RedisConnOpt
	Concurrency int // phases run at once; default: number of CPUs
	// PollInterval is asynq's TaskCheckInterval: how long an idle worker
	// sleeps between looks at empty queues. asynq's 1 s default costs about
	// a second per phase hand-off; 10 ms costs a few hundred cheap Redis
	// calls a second per idle worker.
	PollInterval time.Duration
	// ShutdownTimeout is how long running phases get to finish on SIGTERM
	// before their process groups are killed and the tasks handed back.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// The system queue's server: two tasks at once (a webhook waits on its
// receiver for up to a minute), and a poll slow enough to cost little at
// rest; webhooks and sweeps need no hand-off in milliseconds.
const (
	SystemConcurrency  = 2
	SystemPollInterval = 100 * time.Millisecond
)

// Worker is a started pair of asynq servers: phases, and system tasks.
type Worker struct {
	srv, sys    *asynq.Server
	runner      *tasks.Runner
	stopJanitor context.CancelFunc
	log         *slog.Logger
}

// Start begins processing the phase queues with runner.
func Start(cfg Config, runner *tasks.Runner) (*Worker, error) {
	logger := cmp.Or(cfg.Logger, slog.Default())
	// This process's environment holds REDIS_URL, the tokens and the
	// webhook secret: builds running as its uid must not read them from
	// /proc/<pid>/environ (or its memory). Root's builds read them anyway:
	// for a root worker only SANDO_BUILD_USER keeps them out.
	if err := proc.Harden(); err != nil {
		logger.Error("worker left dumpable: builds running as its user can read its environment", "err", err)
	}
	if runner.BuildUser == nil && os.Geteuid() == 0 {
		logger.Warn("builds run as root and can read this worker's secrets; set SANDO_BUILD_USER to run them as another user")
	}
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = runtime.NumCPU()
	}
	server := func(conc int, queues map[string]int, poll time.Duration) *asynq.Server {
		return asynq.NewServer(cfg.Redis, asynq.Config{
			Concurrency:              conc,
			Queues:                   queues,
			StrictPriority:           true,
			TaskCheckInterval:        poll,
			DelayedTaskCheckInterval: time.Second, // retries come back within a second of due
			RetryDelayFunc:           tasks.RetryDelay,
			ErrorHandler:             asynq.ErrorHandlerFunc(runner.HandleError),
			ShutdownTimeout:          cmp.Or(cfg.ShutdownTimeout, 10*time.Second),
			Logger:                   asynqLogger{logger.With("source", "asynq")},
			LogLevel:                 asynq.InfoLevel,
		})
	}
	queues := steps.Queues(runner.Disk)
	if legacy := legacyQueues(cfg.Redis, logger); len(legacy) > 0 {
		for q := range queues {
			queues[q]++
		}
		for _, q := range legacy {
			queues[q] = 1 // after every other (asynq ignores priorities below 1)
		}
	}
	srv := server(conc, queues, cmp.Or(cfg.PollInterval, 10*time.Millisecond))
	sys := server(SystemConcurrency, map[string]int{steps.SystemQueue: 1}, SystemPollInterval)
	mux := asynq.NewServeMux()
	runner.Register(mux)
	// A worker SIGKILLed on this data dir may have left its builds'
	// background jobs running (PDEATHSIG reaches only their leader): end
	// them first. Children of this worker carry the data dir as their scope.
	proc.SetScope(runner.Layout.Root)
	if n, err := proc.KillOrphans(logger, runner.Layout.Root); n > 0 || err != nil {
		logger.Warn("killed orphans of dead workers", "count", n, "err", err)
	}
	if err := srv.Start(mux); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	if err := sys.Start(mux); err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("start worker's system queue: %w", err)
	}
	buildUser := "(the worker's)"
	if runner.BuildUser != nil {
		buildUser = runner.BuildUser.Name
	}
	logger.Info("worker started", "name", runner.Name, "disk", runner.Disk, "concurrency", conc, "queues", queues,
		"system_queue", steps.SystemQueue, "build_user", buildUser)
	ctx, stop := context.WithCancel(context.Background())
	go janitor(ctx, runner, logger)
	go beat(ctx, runner, logger)
	go tidy(ctx, runner, logger)
	return &Worker{srv: srv, sys: sys, runner: runner, stopJanitor: stop, log: logger}, nil
}

// janitor offers the fleet's janitor sweep and prune twice per window;
// their task ids make each run once per window whichever worker's offer
// lands first.
func janitor(ctx context.Context, runner *tasks.Runner, log *slog.Logger) {
	every(ctx, tasks.JanitorInterval/2, func() {
		now := time.Now()
		if err := tasks.EnqueueJanitor(ctx, runner.Queue, now); err != nil && ctx.Err() == nil {
			log.Warn("janitor not enqueued", "err", err)
		}
		if err := tasks.EnqueuePrune(ctx, runner.Queue, now); err != nil && ctx.Err() == nil {
			log.Warn("prune not enqueued", "err", err)
		}
	})
}

// tidy cleans this worker's data dir at start and every prune interval.
func tidy(ctx context.Context, runner *tasks.Runner, log *slog.Logger) {
	every(ctx, tasks.PruneInterval, func() {
		if err := runner.Tidy(ctx); err != nil && ctx.Err() == nil {
			log.Warn("data dir not tidied; retried later", "err", err)
		}
	})
}

// beat records that this worker's data dir is alive, every
// tasks.BeatInterval, for the janitor's lost-worker check.
func beat(ctx context.Context, runner *tasks.Runner, log *slog.Logger) {
	every(ctx, tasks.BeatInterval, func() {
		if err := runner.Fleet.Beat(ctx, runner.Disk, time.Now()); err != nil && ctx.Err() == nil {
			log.Debug("heartbeat not recorded", "err", err) // Redis away: every worker is silent alike
		}
	})
}

// every runs fn now and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// legacyQueues are the queues of an older version's layout that still
// hold tasks, so a worker started after an upgrade finishes them too.
// Redis away at start: none; those tasks wait for the next start.
func legacyQueues(redis asynq.RedisConnOpt, log *slog.Logger) []string {
	insp := asynq.NewInspector(redis)
	defer insp.Close()
	var out []string
	for _, q := range steps.LegacyQueues {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			continue // asynq does not know it: nothing was ever queued there
		}
		if info.Pending+info.Active+info.Scheduled+info.Retry > 0 {
			log.Warn("serving a queue of an older version until it is empty; restart the worker once it is", "queue", q, "tasks", info.Size)
			out = append(out, q)
		}
	}
	return out
}

// Shutdown stops taking phases, waits up to the shutdown timeout for the
// running ones, then hands unfinished tasks back to the queue and cancels
// their contexts, which kills their process groups.
func (w *Worker) Shutdown() {
	w.stopJanitor()
	var wg sync.WaitGroup // both at once: the timeout is spent once
	wg.Go(w.srv.Shutdown)
	wg.Go(w.sys.Shutdown)
	wg.Wait()
	// asynq has handed unfinished tasks back and cancelled their contexts;
	// wait for the handlers to have killed their process groups.
	if !w.runner.Drain(10 * time.Second) {
		w.log.Warn("phase handlers still running 10s after shutdown")
	}
}

// asynqLogger routes asynq's printf-style logs into slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.log(slog.LevelDebug, args) }
func (a asynqLogger) Info(args ...any)  { a.log(slog.LevelInfo, args) }
func (a asynqLogger) Warn(args ...any)  { a.log(slog.LevelWarn, args) }
func (a asynqLogger) Error(args ...any) { a.log(slog.LevelError, args) }
func (a asynqLogger) Fatal(args ...any) { a.log(slog.LevelError, args) }

func (a asynqLogger) log(level slog.Level, args []any) {
	a.l.Log(context.Background(), level, fmt.Sprint(args...))
}
