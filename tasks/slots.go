package tasks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"sando.dev/sando/internal/cache"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// A run builds in a cache slot of its pipeline (package cache): the fetch
// takes one and checks the commit out in the slot's worktree, in place;
// Layout.Worktree(run) is a symlink to it, which is how the run's later
// phases on this data dir find the slot; Cleanup releases it.

func (r *Runner) pool() cache.Pool {
	return cache.Pool{Root: r.Layout.Caches(), Live: r.building}
}

// building reports whether run id of pipeline is still building: a slot
// whose holder is not is free.
func (r *Runner) building(ctx context.Context, pipeline string, id int64) (bool, error) {
	res, err := runstore.New(r.Redis, pipeline).Result(ctx, id)
	if errors.Is(err, runstore.ErrNotFound) {
		return false, nil
	}
	return res == vocab.ResultBuilding, err
}

// takeSlot gives run cur of j's pipeline its slot of cache generation gen (as
// the fetch's phase write read it: a clear that lands after that write
// reaches the next run's slot) and links the run's worktree path to the
// slot's worktree.
func (r *Runner) takeSlot(ctx context.Context, j *job, cur *vocab.Run, gen int64) (cache.Slot, error) {
	slot, err := r.pool().Take(ctx, j.p.Name, cur.ID, gen)
	if err != nil {
		return cache.Slot{}, err
	}
	link := r.Layout.Worktree(cur.ID)
	if target, err := os.Readlink(link); err == nil && target == slot.Worktree() {
		return slot, nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return cache.Slot{}, err
	}
	// Made aside and renamed over whatever is there (an older version's
	// worktree directory is removed first: rename cannot replace one).
	tmp := link + ".link"
	_ = os.Remove(tmp)
	if err := os.Symlink(slot.Worktree(), tmp); err != nil {
		return cache.Slot{}, err
	}
	if st, err := os.Lstat(link); err == nil && st.IsDir() {
		_ = os.RemoveAll(link)
	}
	if err := os.Rename(tmp, link); err != nil {
		return cache.Slot{}, err
	}
	return slot, nil
}

// slotOf is the slot run id builds in on this data dir, found through its
// worktree link; false when its worktree is not in a slot (made by an
// older version of Sando) or missing.
func (r *Runner) slotOf(id int64) (cache.Slot, bool) {
	target, err := os.Readlink(r.Layout.Worktree(id))
	if err != nil {
		return cache.Slot{}, false
	}
	return cache.OfWorktree(target)
}

// cacheDir is run cur's SANDO_CACHE_DIR: its slot's cache, or for a run
// whose worktree is in no slot (started by an older version), a slot
// taken now for the cache alone.
func (r *Runner) cacheDir(ctx context.Context, j *job, cur *vocab.Run) (cache.Slot, error) {
	if slot, ok := r.slotOf(cur.ID); ok {
		return slot, nil
	}
	gen, err := j.store.CacheGeneration(ctx)
	if err != nil {
		return cache.Slot{}, err
	}
	slot, err := r.pool().Take(ctx, j.p.Name, cur.ID, gen)
	if err != nil {
		return cache.Slot{}, fmt.Errorf("cache: %w", err)
	}
	return slot, nil
}

// releaseSlot gives run id's slot back, if it has one here.
func (r *Runner) releaseSlot(id int64) {
	slot, ok := r.slotOf(id)
	if !ok {
		return
	}
	if err := r.pool().Release(slot.Pipeline(), slot, id); err != nil {
		r.Logger.Warn("cache slot not released", "run_id", id, "slot", slot.Dir, "err", err)
	}
}
