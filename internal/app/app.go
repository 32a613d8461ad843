// Package app assembles Sando's processes from their parts: what both
// share, and the worker (the API is package app/api, so a worker binary
// links no HTTP API, Asynqmon or miniredis). cmd/ parses settings and
// signals and calls in here.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hibiken/asynq"

	"sando.dev/sando/internal/config"
	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/logging"
	"sando.dev/sando/internal/metrics"
	"sando.dev/sando/internal/proc"
	"sando.dev/sando/internal/redisconn"
	"sando.dev/sando/internal/worker"
	"sando.dev/sando/runstore"
	"sando.dev/sando/tasks"
)

// Parts is what both processes share. Neither holds a pipeline: the API
// reads its pipeline files itself, and a worker builds whatever pipeline a
// run names, from the definition the run carries.
type Parts struct {
	Conn    redisconn.Conn
	Layout  datadir.Layout
	Queue   *asynq.Client
	Metrics *metrics.Metrics
}

// Close closes the Redis clients.
func (p *Parts) Close() {
	if p.Queue != nil {
		_ = p.Queue.Close()
	}
	if p.Conn.Client != nil {
		_ = p.Conn.Client.Close()
	}
}

// ConfigError is a problem with the operator's settings or pipeline file:
// the command prints it as is and exits 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Assemble connects to redisURL and lays out the data dir.
func Assemble(cfg config.Config, redisURL string) (*Parts, error) {
	// config refuses a password without REDIS_URL: the embedded Redis has none.
	conn, err := redisconn.ParseWithPassword(redisURL, cfg.RedisPassword)
	if err != nil {
		return nil, &ConfigError{err}
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("SANDO_DATA_DIR=%q: %w", cfg.DataDir, err)}
	}
	return &Parts{
		Conn:    conn,
		Layout:  datadir.Layout{Root: dataDir},
		Queue:   asynq.NewClient(conn.Asynq),
		Metrics: metrics.New(),
	}, nil
}

// StartWorker starts a worker on p: a process's own, or the embedded
// default's in-process one.
func (p *Parts) StartWorker(cfg config.Config, log *slog.Logger) (*worker.Worker, error) {
	disk, err := p.Layout.Identity()
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("SANDO_DATA_DIR=%q: %w", p.Layout.Root, err)}
	}
	host, _ := os.Hostname()
	var buildUser *proc.User
	if cfg.BuildUser != "" {
		u, err := tasks.BuildUser(context.Background(), cfg.BuildUser, p.Layout)
		if err != nil {
			return nil, &ConfigError{err}
		}
		buildUser = u
	}
	runner := &tasks.Runner{
		Redis: p.Conn.Client, Fleet: runstore.NewFleet(p.Conn.Client), Layout: p.Layout, Queue: p.Queue,
		Disk: disk, Name: host + ":" + p.Layout.Root,
		Logger: log, BaseEnv: tasks.BaseEnv(nil), BuildUser: buildUser, WebhookSecret: cfg.WebhookSecret,
		Metrics:   p.Metrics,
		Retention: tasks.Retention{Age: cfg.Retention, Runs: cfg.RetentionRuns},
	}
	return worker.Start(worker.Config{
		Redis: p.Conn.Asynq, Concurrency: cfg.Concurrency, PollInterval: cfg.PollInterval,
		ShutdownTimeout: cfg.ShutdownTimeout, Logger: log,
	}, runner)
}

// Worker runs phases until ctx ends, then shuts down gracefully.
func Worker(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if cfg.Embedded() {
		return &ConfigError{errors.New("REDIS_URL: required for a separate worker (the embedded default runs its worker inside the API)")}
	}
	p, err := Assemble(cfg, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer p.Close()
	w, err := p.StartWorker(cfg, log)
	if err != nil {
		return err
	}
	if cfg.WorkerAddr != "" {
		stop, err := serveOps(cfg.WorkerAddr, p, log)
		if err != nil {
			w.Shutdown()
			return err
		}
		defer stop()
	}
	<-ctx.Done()
	log.Info("shutting down: finishing or handing back running phases", "timeout", cfg.ShutdownTimeout)
	w.Shutdown()
	return nil
}

// Main is the whole of a command's main: settings from the environment and
// flags, a logger, a context that ends on SIGINT or SIGTERM, then run.
// Settings problems print one plain line and exit 2; a failure while
// running exits 1.
func Main(program string, run func(context.Context, config.Config, *slog.Logger) error) {
	cfg, err := config.Load(program, os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: config: %v\n", program, err)
		os.Exit(2)
	}
	log := logging.New(cfg.LogLevel, os.Stderr)
	redisconn.SetLogger(log) // go-redis's own messages as JSON lines too
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = run(ctx, cfg, log)
	var ce *ConfigError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(os.Stderr, "%s: config: %v\n", program, ce.Err)
		stop()
		os.Exit(2)
	case err != nil:
		log.Error(program+" stopped", "err", err)
		stop()
		os.Exit(1)
	}
}

// serveOps serves a worker's /metrics and /healthz on addr.
func serveOps(addr string, p *Parts, log *slog.Logger) (func(), error) {
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("SANDO_WORKER_ADDR=%q: %w", addr, err)}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", p.Metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	// The API's limits (httpapi.NewHTTPServer), without linking the API.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	go func() { _ = srv.Serve(ln) }()
	log.Info("worker ops listening", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
