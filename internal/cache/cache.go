// Package cache keeps the warm slots of each pipeline on one data dir: a
// slot is a cache directory (SANDO_CACHE_DIR) and a worktree that is
// checked out in place run after run, so unchanged files keep their
// mtimes and make's or cargo's freshness checks find their outputs.
//
// Layout, under <data dir>/caches:
//
//	<pipeline>.lock             flock taken while a slot is chosen or released
//	<pipeline>/<n>/state        who holds the slot (JSON, replaced by rename)
//	<pipeline>/<n>/cache/       SANDO_CACHE_DIR
//	<pipeline>/<n>/worktree/    the checkout
//	<pipeline>/<n>/running/     one marker per phase command running in it
//
// A run holds one slot from its fetch until it is settled; two runs never
// hold one slot, and a run never waits for one: when every slot is held,
// a new one is made. The choice is made under an flock of the pipeline's
// lock file, so worker processes sharing a data dir never share a slot;
// holding is recorded in the slot's state, which outlives the process
// (a run's phases may run in several worker processes).
//
// A half-written cache never reaches another run. A phase command's
// marker is removed when the worker sees the command end (on its own, or
// after the worker's SIGTERM on cancel or timeout, which make and cargo
// handle). A marker left behind means the worker died under the command
// (kill -9, OOM, power): the slot is then wiped, cache and worktree,
// before the next run takes it. So is a slot whose generation is older
// than the pipeline's (an operator's cache:clear), and one whose state is
// unreadable.
package cache

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Pool is the slots of every pipeline under one data dir.
type Pool struct {
	// Root is <data dir>/caches.
	Root string
	// Live reports whether run id of pipeline still holds its slot (is
	// still building). A slot whose holder is no longer live is free.
	Live func(ctx context.Context, pipeline string, id int64) (bool, error)
}

// Slot is one pipeline's slot.
type Slot struct{ Dir string }

// Cache is the slot's SANDO_CACHE_DIR.
func (s Slot) Cache() string { return filepath.Join(s.Dir, "cache") }

// Worktree is the slot's checkout.
func (s Slot) Worktree() string { return filepath.Join(s.Dir, "worktree") }

// Pipeline is the name of the pipeline the slot belongs to.
func (s Slot) Pipeline() string { return filepath.Base(filepath.Dir(s.Dir)) }

func (s Slot) stateFile() string { return filepath.Join(s.Dir, "state") }
func (s Slot) markers() string   { return filepath.Join(s.Dir, "running") }

// OfWorktree is the slot whose worktree is dir, if dir is one.
func OfWorktree(dir string) (Slot, bool) {
	if filepath.Base(dir) != "worktree" {
		return Slot{}, false
	}
	s := Slot{Dir: filepath.Dir(dir)}
	_, err := os.Stat(s.stateFile())
	return s, err == nil
}

// state is what a slot's state file holds.
type state struct {
	Run        int64 `json:"run"`        // the run that holds it, or held it last
	Held       bool  `json:"held"`       // Run holds it now
	Generation int64 `json:"generation"` // the pipeline's cache generation when it was last wiped or made
	// Poisoned: a phase command of Run was found not to have ended (its
	// worker died under it) when that phase ran again: the slot is wiped
	// before the next run takes it.
	Poisoned bool `json:"poisoned"`
}

var pipelineName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

func (p Pool) dir(pipeline string) string { return filepath.Join(p.Root, pipeline) }

// Take gives run id of pipeline a slot: the one it already holds (a
// redelivered fetch), else a free one, else a new one. A free slot of the
// current generation that was left clean is preferred; any other is wiped
// first. generation is the pipeline's cache generation (ClearCache).
func (p Pool) Take(ctx context.Context, pipeline string, id, generation int64) (Slot, error) {
	if !pipelineName.MatchString(pipeline) {
		return Slot{}, fmt.Errorf("cache: %q is not a pipeline name", pipeline)
	}
	var (
		slot Slot
		wipe bool
	)
	err := p.locked(pipeline, func() error {
		slots, err := p.slots(pipeline)
		if err != nil {
			return err
		}
		type candidate struct {
			slot  Slot
			dirty bool
			n     int   // its place in slots: by number
			run   int64 // its holder, 0 for none
		}
		var (
			free, held []candidate
			clean      bool // a free slot is clean
		)
		for i, s := range slots {
			st, err := readState(s)
			if err == nil && st.Held && st.Run == id {
				slot = s
				return nil
			}
			c := candidate{s, err != nil || st.Poisoned || st.Generation != generation || hasMarkers(s), i, 0}
			if err == nil && st.Held {
				c.run = st.Run
				held = append(held, c)
				continue
			}
			free = append(free, c)
			clean = clean || !c.dirty
		}
		// A held slot whose run has settled is free too, but asking costs
		// a Redis round trip per slot: asked only when no free slot is
		// clean (a run's slot is released when it settles here, so in the
		// steady state one is).
		for _, c := range held {
			if clean {
				break
			}
			live, lerr := p.Live(ctx, pipeline, c.run)
			if lerr != nil {
				return lerr
			}
			if live || freshMarkers(c.slot) {
				// Building, or settled with a command still ending
				// (being stopped after a cancel, a supersede or a
				// sibling gate's failure; see Release).
				continue
			}
			free = append(free, c)
			clean = !c.dirty
		}
		// Clean slots first, then the lowest number.
		slices.SortFunc(free, func(a, b candidate) int {
			switch {
			case a.dirty == b.dirty:
				return cmp.Compare(a.n, b.n)
			case a.dirty:
				return 1
			}
			return -1
		})
		if len(free) > 0 {
			slot, wipe = free[0].slot, free[0].dirty
		} else {
			n := 0
			if len(slots) > 0 {
				n, _ = strconv.Atoi(filepath.Base(slots[len(slots)-1].Dir))
				n++
			}
			slot = Slot{Dir: filepath.Join(p.dir(pipeline), strconv.Itoa(n))}
			if err := os.MkdirAll(slot.Dir, 0o755); err != nil {
				return err
			}
		}
		return writeState(slot, state{Run: id, Held: true, Generation: generation})
	})
	if err != nil {
		return Slot{}, fmt.Errorf("cache: take a slot of %s: %w", pipeline, err)
	}
	// Wiped outside the lock: a big target/ takes a while to remove, and
	// the slot is already this run's.
	if wipe {
		for _, d := range []string{slot.Cache(), slot.Worktree(), slot.markers()} {
			if err := os.RemoveAll(d); err != nil {
				return Slot{}, fmt.Errorf("cache: wipe %s: %w", slot.Dir, err)
			}
		}
	}
	if err := os.MkdirAll(slot.Cache(), 0o755); err != nil {
		return Slot{}, fmt.Errorf("cache: %w", err)
	}
	return slot, nil
}

// Release gives run id's slot back once no command of the run runs in
// it. It is idempotent, and a no-op when the slot is held by another run
// (it was taken from id, whose holding had lapsed).
func (p Pool) Release(pipeline string, s Slot, id int64) error {
	return p.locked(pipeline, func() error {
		st, err := readState(s)
		if err != nil || !st.Held || st.Run != id {
			return nil
		}
		if hasMarkers(s) {
			// A command of the run is still ending (a gate stopped by its
			// sibling's failure): the slot stays held, and the phase that
			// ran it releases it once it has seen the command end.
			return nil
		}
		st.Held = false
		return writeState(s, st)
	})
}

// Begin marks that a phase command (step) of run id starts in the slot;
// the returned end removes the mark once the worker has seen the command
// end. Meanwhile the mark is touched every markerBeat, so a mark that
// stopped moving is one whose worker died. A mark still there from an
// earlier attempt of the same step means the worker died under that
// attempt: the slot is poisoned for the next run. Begin fails with
// ErrNotHeld when the slot is no longer id's (the run was settled and its
// slot taken before this phase began).
func (p Pool) Begin(pipeline string, s Slot, id int64, step string) (end func(), err error) {
	mark := filepath.Join(s.markers(), step)
	if _, err := os.Stat(mark); err == nil {
		if err := p.locked(pipeline, func() error {
			st, err := readState(s)
			if err != nil {
				return err
			}
			st.Poisoned = true
			return writeState(s, st)
		}); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	if err := os.MkdirAll(s.markers(), 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if err := os.WriteFile(mark, nil, 0o644); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	// Checked after the mark is made: a Take that chooses the slot from
	// now on sees the mark and leaves it alone.
	if st, err := readState(s); err != nil || !st.Held || st.Run != id {
		_ = os.Remove(mark)
		return nil, ErrNotHeld
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(markerBeat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				_ = os.Chtimes(mark, now, now)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			_ = os.Remove(mark)
		})
	}, nil
}

// ErrNotHeld is the answer for a slot held by another run than the one asking.
var ErrNotHeld = errors.New("cache: the slot is no longer this run's (the run was settled)")

// Prune removes every free slot, of any pipeline, last used before
// cutoff, and every free slot of a generation older than generation(its
// pipeline) says, when that is known (ok). It returns how many it
// removed.
func (p Pool) Prune(ctx context.Context, cutoff time.Time, generation func(pipeline string) (int64, bool)) (int, error) {
	entries, err := os.ReadDir(p.Root)
	if err != nil {
		return 0, nil // no caches yet
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !pipelineName.MatchString(e.Name()) {
			continue
		}
		pipeline := e.Name()
		gen, known := generation(pipeline)
		var doomed []Slot
		err := p.locked(pipeline, func() error {
			slots, err := p.slots(pipeline)
			if err != nil {
				return err
			}
			for _, s := range slots {
				info, serr := os.Stat(s.stateFile())
				st, rerr := readState(s)
				if rerr == nil && st.Held {
					live, lerr := p.Live(ctx, pipeline, st.Run)
					if lerr != nil {
						return lerr
					}
					if live || freshMarkers(s) {
						continue
					}
				}
				if serr != nil || info.ModTime().Before(cutoff) || known && rerr == nil && st.Generation != gen {
					// Renamed aside under the lock, so no Take picks it
					// while it is being removed.
					gone := s.Dir + ".pruned"
					if err := os.Rename(s.Dir, gone); err != nil {
						return err
					}
					doomed = append(doomed, Slot{Dir: gone})
				}
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
		for _, s := range doomed {
			if err := os.RemoveAll(s.Dir); err != nil {
				errs = append(errs, err)
				continue
			}
			removed++
		}
		leftover, _ := filepath.Glob(filepath.Join(p.dir(pipeline), "*.pruned"))
		for _, d := range leftover { // a prune that died midway
			_ = os.RemoveAll(d)
		}
	}
	return removed, errors.Join(errs...)
}

// slots lists a pipeline's slots, lowest number first.
func (p Pool) slots(pipeline string) ([]Slot, error) {
	entries, err := os.ReadDir(p.dir(pipeline))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var nums []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= 0 && e.IsDir() {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	out := make([]Slot, len(nums))
	for i, n := range nums {
		out[i] = Slot{Dir: filepath.Join(p.dir(pipeline), strconv.Itoa(n))}
	}
	return out, nil
}

// locked runs fn holding the pipeline's flock. The sections it guards are
// a few small file reads and writes (and a Redis look-up per slot whose
// holder did not release it), so it blocks rather than polls.
func (p Pool) locked(pipeline string, fn func() error) error {
	if err := os.MkdirAll(p.Root, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(p.Root, pipeline+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // closing releases the lock
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return err
	}
	return fn()
}

func readState(s Slot) (state, error) {
	var st state
	b, err := os.ReadFile(s.stateFile())
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// writeState replaces the state file whole (a crash leaves the old one or
// the new one), and its mtime is the slot's last use, which Prune reads.
func writeState(s Slot, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := s.stateFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.stateFile())
}

// markerBeat is how often a running command's marker is touched, and
// markerStale how old a marker's last touch must be for its worker to be
// taken for dead (a live worker's beat can lag under load, never by this
// much).
const (
	markerBeat  = 5 * time.Second
	markerStale = time.Minute
)

// freshMarkers reports whether a command is still running (or being
// stopped) in the slot: some marker was touched within markerStale.
func freshMarkers(s Slot) bool {
	entries, err := os.ReadDir(s.markers())
	if err != nil {
		return false
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) < markerStale {
			return true
		}
	}
	return false
}

func hasMarkers(s Slot) bool {
	entries, err := os.ReadDir(s.markers())
	return err == nil && len(entries) > 0
}
