package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hibiken/asynq"

	"sando.dev/sando/internal/lifecycle"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// job is one run as a task meets it: its pipeline's store and lifecycle,
// and the pipeline as the run is built with it (the definition the run
// carries, never a file on this worker).
type job struct {
	store *runstore.Store
	life  *lifecycle.Lifecycle
	p     *pipeline.Pipeline
}

// pipelineOf is the name of the pipeline run id belongs to: the payload's,
// or, for a task of an older version that names none, the fleet index's.
func (r *Runner) pipelineOf(ctx context.Context, pl steps.Payload) (string, error) {
	if pl.Pipeline != "" {
		return pl.Pipeline, nil
	}
	return r.Fleet.PipelineOf(ctx, pl.RunID)
}

// summaryNoDefinition fails a run no worker can build: it was started by a
// version of Sando that did not store the pipeline with the run.
const summaryNoDefinition = "this run was started by an older version of Sando, which did not store " +
	"the pipeline's definition with the run; no worker can build it: rebuild it"

// open makes the job of cur, a run of pipeline name. A run whose
// definition is missing or unreadable cannot be built anywhere: it is
// failed with a summary saying so, and the error wraps asynq.SkipRetry.
func (r *Runner) open(ctx context.Context, name string, cur *vocab.Run) (*job, error) {
	p, err := r.definition(cur.Definition)
	if err != nil {
		bare := &job{store: runstore.New(r.Redis, name), p: &pipeline.Pipeline{Name: name}}
		bare.life = r.lifeOf(bare)
		summary := summaryNoDefinition
		if cur.Definition != "" {
			summary = "the run's pipeline definition is unreadable: " + err.Error()
		}
		if _, ferr := bare.life.Fail(ctx, cur.ID, summary); ferr != nil {
			return nil, ferr // retried: the next try fails it again
		}
		return nil, fmt.Errorf("run %d: %s: %w", cur.ID, summary, asynq.SkipRetry)
	}
	j := &job{store: runstore.New(r.Redis, name, runstore.WithWebhooks(len(p.Webhooks) > 0)), p: p}
	j.life = r.lifeOf(j)
	return j, nil
}

// openID is open for a run known by id only (webhooks, a task's last
// retry): it reads the run first.
func (r *Runner) openID(ctx context.Context, pl steps.Payload) (*job, *vocab.Run, error) {
	name, err := r.pipelineOf(ctx, pl)
	if err != nil {
		return nil, nil, err
	}
	cur, err := runstore.New(r.Redis, name).Get(ctx, pl.RunID)
	if err != nil {
		return nil, nil, err
	}
	j, err := r.open(ctx, name, cur)
	return j, cur, err
}

func (r *Runner) lifeOf(j *job) *lifecycle.Lifecycle {
	return &lifecycle.Lifecycle{
		Store: j.store, Pipeline: j.p, Queue: r.Queue, Metrics: r.Metrics, Logger: r.Logger,
		AfterSettle: r.Cleanup,
	}
}

var errNoDefinition = errors.New("no definition stored with the run")

// definitions caches decoded definitions by their text: a run's is read
// at every step, and most runs of a pipeline share one.
type definitions struct {
	mu   sync.Mutex
	byID map[string]*pipeline.Pipeline
}

// maxDefinitions bounds the cache; past it, it starts over.
const maxDefinitions = 256

func (r *Runner) definition(def string) (*pipeline.Pipeline, error) {
	if def == "" {
		return nil, errNoDefinition
	}
	r.defs.mu.Lock()
	defer r.defs.mu.Unlock()
	if p, ok := r.defs.byID[def]; ok {
		return p, nil
	}
	p, err := pipeline.Unmarshal([]byte(def))
	if err != nil {
		return nil, err
	}
	if r.defs.byID == nil || len(r.defs.byID) >= maxDefinitions {
		r.defs.byID = map[string]*pipeline.Pipeline{}
	}
	r.defs.byID[def] = p
	return p, nil
}

// logFor is the logger of one step of one run.
func (r *Runner) logFor(pl steps.Payload, k *steps.Kind) *slog.Logger {
	log := r.Logger.With("run_id", pl.RunID, "phase", k.Phase)
	if pl.Pipeline != "" {
		log = log.With("pipeline", pl.Pipeline)
	}
	if pl.Gate != "" {
		log = log.With("gate", pl.Gate)
	}
	return log
}
