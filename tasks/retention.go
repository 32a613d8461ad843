package tasks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"sando.dev/sando/internal/steps"
	"sando.dev/sando/runstore"
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
	return r.eachPipeline(ctx, func(name string, store *runstore.Store) error {
		ids, err := store.Prune(ctx, r.now().Add(-r.Retention.Age), r.Retention.Runs, pruneBatch)
		if err != nil {
			return err
		}
		var errs []error
		for _, id := range ids {
			errs = append(errs, r.deleteLogs(ctx, store, id))
			_ = os.RemoveAll(r.Layout.LogDir(id))
			_ = os.RemoveAll(r.Layout.StageDir(id))
			_ = os.RemoveAll(r.Layout.Worktree(id))
		}
		if len(ids) > 0 {
			r.Logger.Info("pruned finished runs past retention", "pipeline", name, "runs", len(ids), "oldest", ids[0], "newest", ids[len(ids)-1])
		}
		return errors.Join(errs...)
	})
}

// Tidy removes what this worker's data dir keeps of runs that are over:
// the worktree of a finished run (its worker died before dropping it), and
// the worktree, logs and staged artifacts of a run retention has pruned.
// Every worker tidies its own data dir (the fleet's prune task runs on one
// worker, whose disk may not be the one that built a run). Run ids whose
// run Redis cannot answer for are left for the next time.
func (r *Runner) Tidy(ctx context.Context) error {
	ids := map[int64]bool{}
	for _, dir := range []string{r.Layout.Worktree(0), r.Layout.LogDir(0), r.Layout.StageDir(0)} {
		entries, err := os.ReadDir(filepath.Dir(dir))
		if err != nil {
			continue // nothing made there yet
		}
		for _, e := range entries {
			if id, err := strconv.ParseInt(e.Name(), 10, 64); err == nil && id > 0 {
				ids[id] = true
			}
		}
	}
	// Until an API of this version has adopted the pipelines (Fleet.Adopt:
	// the fleet's counter exists), runs of an older version are not in the
	// fleet's index yet: not finding one there proves nothing.
	adopted, err := r.Fleet.Adopted(ctx)
	if err != nil {
		return err
	}
	removed := 0
	for id := range ids {
		name, err := r.Fleet.PipelineOf(ctx, id)
		if errors.Is(err, runstore.ErrNotFound) && adopted {
			_ = os.RemoveAll(r.Layout.LogDir(id))
			_ = os.RemoveAll(r.Layout.StageDir(id))
			_ = os.RemoveAll(r.Layout.Worktree(id))
			removed++
			continue
		}
		if err != nil {
			if errors.Is(err, runstore.ErrNotFound) {
				continue
			}
			return err
		}
		res, err := runstore.New(r.Redis, name).Result(ctx, id)
		if errors.Is(err, runstore.ErrNotFound) || err == nil && res.Terminal() {
			if _, serr := os.Lstat(r.Layout.Worktree(id)); serr == nil { // a link, maybe to a pruned slot
				r.Cleanup(id)
				removed++
			}
		}
	}
	if removed > 0 {
		r.Logger.Info("tidied the data dir of finished and pruned runs", "runs", removed, "data_dir", r.Layout.Root)
	}
	return r.tidyCaches(ctx)
}

// tidyCaches removes the cache slots on this data dir that no run holds
// and that were last used longer ago than retention, or whose pipeline's
// cache was cleared since (cache:clear) and no run has taken since.
func (r *Runner) tidyCaches(ctx context.Context) error {
	var cutoff time.Time // retention off: no slot is too old
	if r.Retention.Age > 0 {
		cutoff = r.now().Add(-r.Retention.Age)
	}
	n, err := r.pool().Prune(ctx, cutoff, func(pipeline string) (int64, bool) {
		gen, err := runstore.New(r.Redis, pipeline).CacheGeneration(ctx)
		return gen, err == nil
	})
	if n > 0 {
		r.Logger.Info("pruned cache slots unused past retention or cleared", "slots", n, "data_dir", r.Layout.Root)
	}
	return err
}
