// Package app assembles Sando's processes from their parts: the API (with,
// in the embedded default, miniredis and an in-process worker) and the
// worker. cmd/ parses settings and signals and calls in here.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"

	"sando/config"
	"sando/datadir"
	"sando/httpapi"
	"sando/logging"
	"sando/metrics"
	"sando/monitoring"
	"sando/proc"
	"sando/redisconn"
	"sando/runstore"
	"sando/runwatch"
	"sando/tasks"
	"sando/worker"
)

// EmbeddedNotice is the first log line of the zero-setup default.
const EmbeddedNotice = "REDIS_URL is not set: running on an embedded in-memory Redis (miniredis) with an in-process worker; " +
	"nothing persists across restarts. Set REDIS_URL for production."

// parts is what both processes share. Neither holds a pipeline: the API
// reads its pipeline files itself, and a worker builds whatever pipeline a
// run names, from the definition the run carries.
type parts struct {
	conn    redisconn.Conn
	layout  datadir.Layout
	queue   *asynq.Client
	metrics *metrics.Metrics
}

func (p *parts) close() {
	if p.queue != nil {
		_ = p.queue.Close()
	}
	if p.conn.Client != nil {
		_ = p.conn.Client.Close()
	}
}

// ConfigError is a problem with the operator's settings or pipeline file:
// the command prints it as is and exits 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func assemble(cfg config.Config, redisURL string) (*parts, error) {
	conn, err := redisconn.Parse(redisURL)
	if err != nil {
		return nil, &ConfigError{err}
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("SANDO_DATA_DIR=%q: %w", cfg.DataDir, err)}
	}
	return &parts{
		conn:    conn,
		layout:  datadir.Layout{Root: dataDir},
		queue:   asynq.NewClient(conn.Asynq),
		metrics: metrics.New(),
	}, nil
}

func (p *parts) startWorker(cfg config.Config, log *slog.Logger) (*worker.Worker, error) {
	disk, err := p.layout.Identity()
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("SANDO_DATA_DIR=%q: %w", p.layout.Root, err)}
	}
	host, _ := os.Hostname()
	var buildUser *proc.User
	if cfg.BuildUser != "" {
		u, err := tasks.BuildUser(context.Background(), cfg.BuildUser, p.layout)
		if err != nil {
			return nil, &ConfigError{err}
		}
		buildUser = u
	}
	runner := &tasks.Runner{
		Redis: p.conn.Client, Fleet: runstore.NewFleet(p.conn.Client), Layout: p.layout, Queue: p.queue,
		Disk: disk, Name: host + ":" + p.layout.Root,
		Logger: log, BaseEnv: tasks.BaseEnv(nil), BuildUser: buildUser, WebhookSecret: cfg.WebhookSecret,
		Metrics:   p.metrics,
		Retention: tasks.Retention{Age: cfg.Retention, Runs: cfg.RetentionRuns},
	}
	return worker.Start(worker.Config{
		Redis: p.conn.Asynq, Concurrency: cfg.Concurrency, PollInterval: cfg.PollInterval,
		ShutdownTimeout: cfg.ShutdownTimeout, Logger: log,
	}, runner)
}

// API serves the HTTP API until ctx ends, then drains in-flight requests.
// It serves every pipeline of SANDO_CONFIG (a file or a directory) and
// re-reads them on SIGHUP. ready, when set, is called with the bound
// address once it listens.
func API(ctx context.Context, cfg config.Config, log *slog.Logger, ready func(addr string)) error {
	reg, err := loadPipelines(cfg.PipelinePath)
	if err != nil {
		return err
	}
	redisURL := cfg.RedisURL
	if cfg.Embedded() {
		log.Warn(EmbeddedNotice)
		m := miniredis.NewMiniRedis()
		m.ClockTTL(true) // asynq's locks, retention and server state must expire
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("start embedded redis: %w", err)
		}
		defer m.Close()
		redisURL = "redis://" + m.Addr()
	}
	p, err := assemble(cfg, redisURL)
	if err != nil {
		return err
	}
	defer p.close()
	inspector := asynq.NewInspector(p.conn.Asynq)
	defer inspector.Close()
	fleet := runstore.NewFleet(p.conn.Client)
	pl := &pipelines{reg: reg, fleet: fleet, metrics: p.metrics, log: log}
	pl.adopt(ctx)
	pl.reloadOnHUP(ctx)

	if cfg.Embedded() {
		w, err := p.startWorker(cfg, log.With("component", "worker"))
		if err != nil {
			return err
		}
		defer w.Shutdown()
	}

	// One subscription per API process wakes every long-poll waiter.
	hubCtx, stopHub := context.WithCancel(context.Background())
	defer stopHub()
	drainCtx, drain := context.WithCancel(context.Background())
	defer drain()
	hub := runwatch.Start(hubCtx, p.conn.Client, runstore.FleetKeys{}.Events(), log)
	api := &httpapi.Server{
		Redis: p.conn.Client, Pipelines: reg.Current, Fleet: fleet, Queue: p.queue, Canceler: inspector,
		Layout: p.layout, Logger: log, Token: cfg.Token, ReadToken: cfg.ReadToken,
		Ping:     func(ctx context.Context) error { return p.conn.Client.Ping(ctx).Err() },
		Watch:    hub,
		Draining: drainCtx,
		Metrics:  p.metrics,

		NoSupersede: cfg.NoSupersede,
	}
	p.metrics.Register(metrics.NewQueueCollector(inspector, log))
	p.metrics.GaugeFunc("sando_longpoll_waiters", "Requests held in a long-poll on this API process.",
		func() float64 { return float64(hub.Waiting()) })
	p.metrics.GaugeFunc("sando_runs_building", "Runs of the configured pipelines still building.", func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := api.CountBuilding(ctx)
		if err != nil {
			return -1 // Redis away: say so rather than a plausible zero
		}
		return float64(n)
	})
	var mon io.Closer // Asynqmon at /monitoring/, with its own Redis clients
	var monErr error
	api.Extra = func(r *gin.Engine) {
		mon, monErr = monitoring.Mount(r, monitoring.Options{
			Redis: p.conn.Asynq, Token: cfg.Token, ReadOnly: cfg.MonitoringReadOnly, Logger: log,
		})
	}
	handler := api.Handler()
	if monErr != nil {
		return monErr
	}
	defer mon.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return &ConfigError{fmt.Errorf("SANDO_ADDR=%q: %w", cfg.Addr, err)}
	}
	srv := httpapi.NewHTTPServer(handler)
	log.Info("api listening", "addr", ln.Addr().String(), "pipelines", reg.Current().Names(), "data_dir", p.layout.Root)
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining requests")
	drain() // held long-polls answer now with the state they have
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// Worker runs phases until ctx ends, then shuts down gracefully.
func Worker(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if cfg.Embedded() {
		return &ConfigError{errors.New("REDIS_URL: required for a separate worker (the embedded default runs its worker inside the API)")}
	}
	p, err := assemble(cfg, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer p.close()
	w, err := p.startWorker(cfg, log)
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
func serveOps(addr string, p *parts, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("SANDO_WORKER_ADDR=%q: %w", addr, err)}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", p.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	srv := httpapi.NewHTTPServer(mux)
	go func() { _ = srv.Serve(ln) }()
	log.Info("worker ops listening", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
