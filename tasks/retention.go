package tasks

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/hibiken/asynq"

	"sando/runstore"
	"sando/steps"
)

// TypePrune deletes finished runs past retention, with their logs and
// staged artifacts, so Redis memory and the data dir stay bounded.
const TypePrune = "sando:prune"

// PruneInterval is how often the fleet prunes; each sweep deletes at most
// pruneBatch runs, so a backlog drains over a few sweeps without one long
// Lua script blocking Redis.
const (
	PruneInterval = 10 * time.Minute
	pruneBatch    = 500
)

// Retention is how long finished runs are kept: for Age, or the newest
// Runs of them, whichever keeps more.
type Retention struct {
	Age  time.Duration
	Runs int
}

// EnqueuePrune queues this window's prune, once for the fleet (see
// enqueuePeriodic).
func EnqueuePrune(ctx context.Context, q steps.Enqueuer, now time.Time) error {
	return enqueuePeriodic(ctx, q, TypePrune, "prune", PruneInterval, now)
}

func (r *Runner) prune(ctx context.Context, _ *asynq.Task) error {
	if r.Retention.Age <= 0 {
		return nil // retention off
	}
	names, err := r.Fleet.Pipelines(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		store := runstore.New(r.Redis, name)
		ids, err := store.Prune(ctx, r.now().Add(-r.Retention.Age), r.Retention.Runs, pruneBatch)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, id := range ids {
			errs = append(errs, r.deleteLogs(ctx, store, id))
			_ = os.RemoveAll(r.Layout.LogDir(id))
			_ = os.RemoveAll(r.Layout.StageDir(id))
			_ = os.RemoveAll(r.Layout.Worktree(id))
		}
		if len(ids) > 0 {
			r.Logger.Info("pruned finished runs past retention", "pipeline", name, "runs", len(ids), "oldest", ids[0], "newest", ids[len(ids)-1])
		}
	}
	return errors.Join(errs...)
}
