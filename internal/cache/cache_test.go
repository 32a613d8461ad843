package cache

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testPool is a pool whose runs are building until settled.
type testPool struct {
	Pool
	mu      sync.Mutex
	settled map[int64]bool
	asked   int // Live calls: each a Redis round trip in a worker
}

func newPool(t *testing.T) *testPool {
	tp := &testPool{settled: map[int64]bool{}}
	tp.Pool = Pool{Root: filepath.Join(t.TempDir(), "caches"), Live: func(_ context.Context, _ string, id int64) (bool, error) {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		tp.asked++
		return !tp.settled[id], nil
	}}
	return tp
}

func (tp *testPool) settle(id int64) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.settled[id] = true
}

// take is Take of run id at generation gen, which must succeed.
func (tp *testPool) take(t *testing.T, id, gen int64) Slot {
	t.Helper()
	s, err := tp.Take(context.Background(), "app", id, gen)
	require.NoError(t, err)
	return s
}

func put(t *testing.T, s Slot, name string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(s.Cache(), name), []byte("x"), 0o644))
}

// age makes the slot's state look written long ago.
func age(t *testing.T, s Slot) {
	t.Helper()
	old := time.Now().Add(-2 * time.Hour)
	require.NoError(t, os.Chtimes(s.stateFile(), old, old))
}

// leftBehind is the marker of a command whose worker died under it two
// minutes ago: nobody touches it any more.
func leftBehind(t *testing.T, s Slot, step string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(s.markers(), 0o755))
	mark := filepath.Join(s.markers(), step)
	require.NoError(t, os.WriteFile(mark, nil, 0o644))
	old := time.Now().Add(-2 * time.Minute)
	require.NoError(t, os.Chtimes(mark, old, old))
}

// Runs taking slots at once, each through its own flock (as worker
// processes sharing a data dir would), get one slot each; a run that asks
// again (a redelivered fetch) gets its own back; a released slot is the
// next run's, with its cache.
func TestTakeDistinctSlotsThenReuse(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	ctx := context.Background()
	const runs = 6
	got := make([]Slot, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() {
			s, err := p.Take(ctx, "app", int64(i+1), 0)
			require.NoError(t, err)
			got[i] = s
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, s := range got {
		require.False(t, seen[s.Dir], "slot %s given twice", s.Dir)
		seen[s.Dir] = true
		require.DirExists(t, s.Cache())
		require.Equal(t, "app", s.Pipeline())
	}
	again, err := p.Take(ctx, "app", 3, 0)
	require.NoError(t, err)
	require.Equal(t, got[2], again)

	put(t, got[2], "warm")
	require.NoError(t, p.Release("app", got[2], 3))
	p.settle(3)
	next, err := p.Take(ctx, "app", 7, 0)
	require.NoError(t, err)
	require.Equal(t, got[2], next, "the free, clean slot is reused")
	require.FileExists(t, filepath.Join(next.Cache(), "warm"))

	// A slot whose holder settled without releasing it (its worker went
	// away between commands) is free, and clean.
	p.settle(1)
	put(t, got[0], "warm")
	s, err := p.Take(ctx, "app", 8, 0)
	require.NoError(t, err)
	require.Equal(t, got[0], s)
	require.FileExists(t, filepath.Join(s.Cache(), "warm"))

	// Every slot held: a new one, never a wait.
	s, err = p.Take(ctx, "app", 9, 0)
	require.NoError(t, err)
	require.False(t, seen[s.Dir])
}

// A command whose worker died under it (its marker left, no longer
// touched) poisons nothing: the slot is wiped, cache and worktree, before
// another run takes it. A command still ending after its run settled (a
// gate being stopped) keeps the slot held meanwhile, and a phase that
// begins after its run's slot went to another run runs nothing.
func TestCrashedSlotIsWiped(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	ctx := context.Background()
	s, err := p.Take(ctx, "app", 1, 0)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(s.Worktree(), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(s.Worktree(), "half.o"), nil, 0o644))
	put(t, s, "half-written")
	end, err := p.Begin("app", s, 1, "gate-unit") // still being stopped
	require.NoError(t, err)
	leftBehind(t, s, "compile") // the worker died under it
	p.settle(1)
	require.NoError(t, p.Release("app", s, 1), "a release while a command runs keeps it held")

	other, err := p.Take(ctx, "app", 2, 0)
	require.NoError(t, err)
	require.NotEqual(t, s, other, "a command is still ending: not taken")
	end()
	_, err = p.Begin("app", other, 1, "gate-smoke")
	require.ErrorIs(t, err, ErrNotHeld)

	p.settle(2)
	require.NoError(t, p.Release("app", other, 2))
	// Run 2's slot is clean and preferred; a third run finds the crashed
	// one after it.
	_, err = p.Take(ctx, "app", 3, 0)
	require.NoError(t, err)
	wiped, err := p.Take(ctx, "app", 4, 0)
	require.NoError(t, err)
	require.Equal(t, s, wiped)
	require.NoFileExists(t, filepath.Join(wiped.Cache(), "half-written"))
	require.NoDirExists(t, wiped.Worktree())
	require.NoDirExists(t, wiped.markers())
}

// A step that starts again over its own marker (its first attempt's
// worker died) runs on, but the slot is wiped before the next run.
func TestRetriedStepPoisonsSlot(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	ctx := context.Background()
	s, err := p.Take(ctx, "app", 1, 0)
	require.NoError(t, err)
	leftBehind(t, s, "compile")                 // first attempt: its worker died
	end, err := p.Begin("app", s, 1, "compile") // the retry, to its end
	require.NoError(t, err)
	put(t, s, "maybe-bad")
	end()
	require.NoError(t, p.Release("app", s, 1))
	p.settle(1)
	next, err := p.Take(ctx, "app", 2, 0)
	require.NoError(t, err)
	require.Equal(t, s, next)
	require.NoFileExists(t, filepath.Join(next.Cache(), "maybe-bad"))
}

// A clear (a newer generation) wipes a slot when a run takes it; Prune
// removes free slots unused past the cutoff or of an old generation, and
// never a held one.
func TestGenerationAndPrune(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	ctx := context.Background()
	s, err := p.Take(ctx, "app", 1, 0)
	require.NoError(t, err)
	put(t, s, "warm")
	require.NoError(t, p.Release("app", s, 1))
	s, err = p.Take(ctx, "app", 2, 1)
	require.NoError(t, err)
	require.NoFileExists(t, filepath.Join(s.Cache(), "warm"), "cleared")
	require.NoError(t, p.Release("app", s, 2))

	held, err := p.Take(ctx, "web", 3, 0)
	require.NoError(t, err)
	free, err := p.Take(ctx, "web", 4, 0)
	require.NoError(t, err)
	require.NoError(t, p.Release("web", free, 4))
	gens := func(pipeline string) (int64, bool) { return map[string]int64{"app": 1, "web": 0}[pipeline], true }

	n, err := p.Prune(ctx, time.Now().Add(-time.Hour), gens)
	require.NoError(t, err)
	require.Zero(t, n, "recently used, current generation")
	age(t, held)
	age(t, free)
	n, err = p.Prune(ctx, time.Now().Add(-time.Hour), gens)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.DirExists(t, held.Dir, "held by a building run")
	require.NoDirExists(t, free.Dir)

	n, err = p.Prune(ctx, time.Time{}, func(string) (int64, bool) { return 5, true })
	require.NoError(t, err)
	require.Equal(t, 1, n, "app's slot, of an older generation")
	require.DirExists(t, held.Dir)
}

func TestBadPipelineName(t *testing.T) {
	t.Parallel()
	_, err := newPool(t).Take(context.Background(), "../x", 1, 0)
	require.ErrorContains(t, err, `"../x" is not a pipeline name`)
}

// A take asks whether held slots' runs still build only when no free slot
// is clean: in the steady state (each run releases its slot as it
// settles) a run's slot costs no Redis round trip.
func TestTakeAsksOnlyWithoutACleanFreeSlot(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	a := p.take(t, 1, 0)
	b := p.take(t, 2, 0)
	require.NoError(t, p.Release("app", b, 2))
	p.settle(2)
	p.asked = 0
	c := p.take(t, 3, 0)
	require.Equal(t, b, c, "the free, clean slot")
	require.Zero(t, p.asked, "run 1's slot was not asked about")

	// After a clear (generation 1) no slot is clean: run 1's, held, is
	// asked about; settled, it is free, and the lowest numbered.
	require.NoError(t, p.Release("app", c, 3))
	p.settle(1)
	d := p.take(t, 4, 1)
	require.Equal(t, 1, p.asked)
	require.Equal(t, a, d, "the settled run's slot, though it was never released")
}
