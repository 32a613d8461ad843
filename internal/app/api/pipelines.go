package api

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"sando.dev/sando/internal/app"
	"sando.dev/sando/internal/metrics"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/runstore"
)

// pipelines is what the API keeps of its pipeline files: the set in
// force, re-read on SIGHUP, with each set's pipelines known to the fleet
// and to the metrics.
type pipelines struct {
	reg     *pipeline.Registry
	fleet   *runstore.Fleet
	metrics *metrics.Metrics
	log     *slog.Logger
}

// loadPipelines reads SANDO_CONFIG, a pipeline file or a directory of
// them. A bad file is a ConfigError naming the file and the field.
func loadPipelines(path string) (*pipeline.Registry, error) {
	reg, err := pipeline.NewRegistry(path)
	if err != nil {
		return nil, &app.ConfigError{Err: err}
	}
	return reg, nil
}

// adopt makes the set's pipelines known: to the fleet (so an upgrade keeps
// their runs and ids, see runstore.Fleet.Adopt) and to the metrics (their
// series exist at zero). Redis being away is no reason not to serve: the
// API finds a run the index lacks by asking each pipeline, and the next
// start or reload adopts again.
func (p *pipelines) adopt(ctx context.Context) {
	names := p.reg.Current().Names()
	p.metrics.Pipelines(names)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.fleet.Adopt(ctx, names); err != nil {
		p.log.Warn("pipelines not adopted by the fleet; tried again at the next reload or start",
			"pipelines", names, "err", err)
	}
}

// reload re-reads the files. A set that no longer loads is logged, and the
// definitions in force stay.
func (p *pipelines) reload(ctx context.Context) {
	if err := p.reg.Reload(); err != nil {
		p.log.Error("pipeline files not reloaded; the definitions in force stay",
			"path", p.reg.Path(), "err", err, "pipelines", p.reg.Current().Names())
		return
	}
	p.log.Info("pipeline files reloaded", "path", p.reg.Path(), "pipelines", p.reg.Current().Names())
	p.adopt(ctx)
}

// reloadOnHUP reloads on every SIGHUP until ctx ends. It is listening
// when it returns.
func (p *pipelines) reloadOnHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				p.reload(ctx)
			}
		}
	}()
}
