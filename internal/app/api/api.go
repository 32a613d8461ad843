// Package api assembles Sando's API process: the HTTP API on its pipeline
// files, Asynqmon, and in the embedded default miniredis with an
// in-process worker.
package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"

	"sando.dev/sando/internal/app"
	"sando.dev/sando/internal/config"
	"sando.dev/sando/internal/httpapi"
	"sando.dev/sando/internal/metrics"
	"sando.dev/sando/internal/monitoring"
	"sando.dev/sando/internal/runwatch"
	"sando.dev/sando/runstore"
)

// EmbeddedNotice is the first log line of the zero-setup default.
const EmbeddedNotice = "REDIS_URL is not set: running on an embedded in-memory Redis (miniredis) with an in-process worker; " +
	"nothing persists across restarts. Set REDIS_URL for production."

// Run serves the HTTP API until ctx ends, then drains in-flight requests.
// It serves every pipeline of SANDO_CONFIG (a file or a directory) and
// re-reads them on SIGHUP. ready, when set, is called with the bound
// address once it listens.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, ready func(addr string)) error {
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
	p, err := app.Assemble(cfg, redisURL)
	if err != nil {
		return err
	}
	defer p.Close()
	inspector := asynq.NewInspector(p.Conn.Asynq)
	defer inspector.Close()
	fleet := runstore.NewFleet(p.Conn.Client)
	pl := &pipelines{reg: reg, fleet: fleet, metrics: p.Metrics, log: log}
	pl.adopt(ctx)
	pl.reloadOnHUP(ctx)

	if cfg.Embedded() {
		w, err := p.StartWorker(cfg, log.With("component", "worker"))
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
	hub := runwatch.Start(hubCtx, p.Conn.Client, runstore.FleetKeys{}.Events(), log)
	server := &httpapi.Server{
		Redis: p.Conn.Client, Pipelines: reg.Current, Fleet: fleet, Queue: p.Queue, Canceler: inspector,
		Layout: p.Layout, Logger: log, Token: cfg.Token, ReadToken: cfg.ReadToken,
		Ping:     func(ctx context.Context) error { return p.Conn.Client.Ping(ctx).Err() },
		Watch:    hub,
		Draining: drainCtx,
		Metrics:  p.Metrics,

		NoSupersede: cfg.NoSupersede,
	}
	p.Metrics.Register(metrics.NewQueueCollector(inspector, log))
	p.Metrics.GaugeFunc("sando_longpoll_waiters", "Requests held in a long-poll on this API process.",
		func() float64 { return float64(hub.Waiting()) })
	p.Metrics.GaugeFunc("sando_runs_building", "Runs of the configured pipelines still building.", func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := server.CountBuilding(ctx)
		if err != nil {
			return -1 // Redis away: say so rather than a plausible zero
		}
		return float64(n)
	})
	var mon io.Closer // Asynqmon at /monitoring/, with its own Redis clients
	var monErr error
	server.Extra = func(r *gin.Engine) {
		mon, monErr = monitoring.Mount(r, monitoring.Options{
			Redis: p.Conn.Asynq, Token: cfg.Token, ReadOnly: cfg.MonitoringReadOnly, Logger: log, Ping: server.Ping,
		})
	}
	handler := server.Handler()
	if monErr != nil {
		return monErr
	}
	defer mon.Close()
	// Not ctx itself: a stop during start-up still serves and drains, as
	// before, rather than failing as a bad SANDO_ADDR.
	ln, err := new(net.ListenConfig).Listen(context.WithoutCancel(ctx), "tcp", cfg.Addr)
	if err != nil {
		return &app.ConfigError{Err: fmt.Errorf("SANDO_ADDR=%q: %w", cfg.Addr, err)}
	}
	if cfg.Exposed() {
		log.Warn("the API listens beyond loopback with no SANDO_TOKEN: anyone who reaches it can start builds, "+
			"which run shell commands; set SANDO_TOKEN", "addr", ln.Addr().String())
	}
	srv := httpapi.NewHTTPServer(handler)
	log.Info("api listening", "addr", ln.Addr().String(), "pipelines", reg.Current().Names(), "data_dir", p.Layout.Root)
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
