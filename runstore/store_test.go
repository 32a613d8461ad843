package runstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/failure"
	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// testBundle is one test's store on one backend, with a settable clock.
type testBundle struct {
	store *runstore.Store
	rdb   redis.UniversalClient
	clock *fakeClock
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// eachBackend runs the same behaviour against a real redis-server and
// against miniredis (the embedded default): one conformance suite, two
// drivers.
func eachBackend(t *testing.T, fn func(t *testing.T, b *testBundle)) {
	t.Helper()
	backends := map[string]func(t *testing.T) redis.UniversalClient{
		"redis": func(t *testing.T) redis.UniversalClient {
			return redistest.Start(t).Client(t)
		},
		"miniredis": func(t *testing.T) redis.UniversalClient {
			m := redistest.Mini(t)
			c := redis.NewClient(&redis.Options{Addr: m.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			return c
		},
	}
	for name, connect := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rdb := connect(t)
			clock := &fakeClock{t: time.Date(2026, 6, 13, 0, 0, 0, 0, time.UTC)}
			fn(t, &testBundle{
				store: runstore.New(rdb, "app", runstore.WithClock(clock.Now)),
				rdb:   rdb,
				clock: clock,
			})
		})
	}
}

// deployment reads b.store's /state through the one read there is, Deployments.
func deployment(t *testing.T, b *testBundle) runstore.Deployment {
	t.Helper()
	ds, err := runstore.Deployments(context.Background(), b.rdb, []*runstore.Store{b.store}, []string{"host"})
	require.NoError(t, err)
	return ds[0]
}

func create(t *testing.T, s *runstore.Store, req runstore.CreateRequest) int64 {
	t.Helper()
	c, err := s.Create(context.Background(), req)
	require.NoError(t, err)
	return c.ID
}

func TestCreateGetRoundTrip(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{SHA: "9fceb02", Ref: ""})
		require.Equal(t, int64(1), id)
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, id, r.ID)
		require.Equal(t, "9fceb02", r.SHA)
		require.Equal(t, vocab.PhaseQueued, r.Phase)
		require.Equal(t, vocab.ResultBuilding, r.Result)
		require.Equal(t, b.clock.Now(), r.StartedAt)
		require.True(t, r.FinishedAt.IsZero())
		require.Empty(t, r.Version)
		require.Empty(t, r.FailureSummary)
		require.Empty(t, r.Gates)
		require.Equal(t, int64(2), create(t, b.store, runstore.CreateRequest{Ref: "main"}), "ids come from INCR")
	})
}

func TestUnknownID(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		_, err := b.store.Get(ctx, 42)
		require.ErrorIs(t, err, runstore.ErrNotFound)
		_, _, err = b.store.SetPhase(ctx, 42, vocab.PhaseFetching, "", runstore.Where{}, "")
		require.ErrorIs(t, err, runstore.ErrNotFound)
		_, err = b.store.Fail(ctx, 42, "x")
		require.ErrorIs(t, err, runstore.ErrNotFound)
		d := deployment(t, b)
		require.Nil(t, d.Latest, "no runs: no latest")
		require.Nil(t, d.LastPassed, "no runs: none passed")
	})
}

func TestPhaseAndVersionAdvanceThenPass(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{Ref: "main"})
		for _, p := range []vocab.Phase{vocab.PhaseFetching, vocab.PhaseCompiling, vocab.PhaseStaging, vocab.PhaseGating} {
			o, got, err := b.store.SetPhase(ctx, id, p, fmt.Sprintf("%d:%s", id, p), runstore.Where{}, "")
			require.NoError(t, err)
			require.Equal(t, runstore.Applied, o, p)
			r, err := b.store.Get(ctx, id)
			require.NoError(t, err)
			require.Equal(t, p, r.Phase)
			require.Equal(t, fmt.Sprintf("%d:%s", id, p), r.TaskID)
			require.Equal(t, r, got, "SetPhase returns the run as written")
		}
		sha := strings.Repeat("ab", 20)
		o, err := b.store.SetFetched(ctx, id, sha, "0.10.2")
		require.NoError(t, err)
		require.Equal(t, runstore.Applied, o)

		b.clock.Add(90 * time.Second)
		won, err := b.store.Pass(ctx, id)
		require.NoError(t, err)
		require.True(t, won)
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, vocab.ResultPassed, r.Result)
		require.Equal(t, vocab.PhaseDone, r.Phase)
		require.Equal(t, sha, r.SHA)
		require.Equal(t, "0.10.2", r.Version)
		require.Equal(t, 90*time.Second, r.Elapsed(b.clock.Now().Add(time.Hour)), "elapsed of a finished run stops at finish")
		last := deployment(t, b).LastPassed
		require.NotNil(t, last)
		require.Equal(t, id, last.ID)
	})
}

func TestPhaseNeverMovesBack(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{Ref: "main"})
		_, _, err := b.store.SetPhase(ctx, id, vocab.PhaseGating, "", runstore.Where{}, "")
		require.NoError(t, err)
		o, got, err := b.store.SetPhase(ctx, id, vocab.PhaseCompiling, "late", runstore.Where{}, "")
		require.NoError(t, err)
		require.Equal(t, runstore.Stale, o)
		require.Equal(t, vocab.PhaseGating, got.Phase, "a stale write returns the run unchanged")
		o, _, err = b.store.SetPhase(ctx, id, vocab.PhaseGating, "redelivered", runstore.Where{}, "")
		require.NoError(t, err)
		require.Equal(t, runstore.Applied, o, "re-entering the current phase is allowed")
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, vocab.PhaseGating, r.Phase)
		require.Equal(t, "redelivered", r.TaskID)
	})
}

func TestFirstTerminalWriteWins(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{Ref: "main"})
		won, err := b.store.Fail(ctx, id, "main.go:12:2: undefined: x")
		require.NoError(t, err)
		require.True(t, won)
		b.clock.Add(time.Minute)
		won, err = b.store.Pass(ctx, id)
		require.NoError(t, err)
		require.False(t, won)
		won, err = b.store.Abort(ctx, id, vocab.SummaryCanceled)
		require.NoError(t, err)
		require.False(t, won)
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, vocab.ResultFailed, r.Result)
		require.Equal(t, "main.go:12:2: undefined: x", r.FailureSummary)
		require.Equal(t, b.clock.Now().Add(-time.Minute), r.FinishedAt, "a losing write must not move finished_at")
		require.Nil(t, deployment(t, b).LastPassed, "a failed run is never the last passed")
	})
}

func TestWritesAfterTerminalAreNoOps(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{Ref: "main"})
		_, err := b.store.Abort(ctx, id, vocab.SummaryCanceled)
		require.NoError(t, err)
		before, err := b.store.Get(ctx, id)
		require.NoError(t, err)

		o, got, err := b.store.SetPhase(ctx, id, vocab.PhaseCompiling, "t", runstore.Where{}, "")
		require.NoError(t, err)
		require.Equal(t, runstore.Finished, o)
		require.Equal(t, before, got, "a finished run comes back as it is")
		o, err = b.store.SetFetched(ctx, id, strings.Repeat("c", 40), "9.9.9")
		require.NoError(t, err)
		require.Equal(t, runstore.Finished, o)
		o, _, err = b.store.SetGate(ctx, id, "host", "1", vocab.Gate{Kind: "unit", Status: vocab.GatePassed})
		require.NoError(t, err)
		require.Equal(t, runstore.Finished, o)

		after, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, before, after)
	})
}

func TestBoundedSummary(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{Ref: "main"})
		_, err := b.store.Fail(ctx, id, strings.Repeat("é", 5000))
		require.NoError(t, err)
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, failure.MaxLen, len([]rune(r.FailureSummary)))
	})
}

func TestElapsedUnparseableStartIsZero(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{Ref: "main"})
		b.clock.Add(312 * time.Second)
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, 312*time.Second, r.Elapsed(b.clock.Now()), "building: elapsed runs to now")
		require.Zero(t, r.Elapsed(b.clock.Now().Add(-time.Hour)), "never negative")

		require.NoError(t, b.rdb.HSet(ctx, b.store.Keys().Run(id), "started_at", "yesterday").Err())
		r, err = b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Zero(t, r.Elapsed(b.clock.Now()))
	})
}

func TestLatestAndList(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		for range 5 {
			create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
		}
		_, err := b.store.Fail(ctx, 5, "boom")
		require.NoError(t, err)
		latest := deployment(t, b).Latest
		require.NotNil(t, latest)
		require.Equal(t, int64(5), latest.ID)
		require.Equal(t, "boom", latest.FailureSummary, "latest is the newest run of any result")

		page, err := b.store.List(ctx, 0, 2)
		require.NoError(t, err)
		require.Equal(t, []int64{5, 4}, ids(page))
		page, err = b.store.List(ctx, 4, 2)
		require.NoError(t, err)
		require.Equal(t, []int64{3, 2}, ids(page))
		page, err = b.store.List(ctx, 2, 10)
		require.NoError(t, err)
		require.Equal(t, []int64{1}, ids(page))
	})
}

func ids(runs []*vocab.Run) []int64 {
	out := make([]int64, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

func TestSupersede(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		first := create(t, b.store, runstore.CreateRequest{Ref: "main"})
		_, _, err := b.store.SetPhase(ctx, first, vocab.PhaseCompiling, "1:compile", runstore.Where{}, "")
		require.NoError(t, err)
		second := create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
		done := create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
		_, err = b.store.Pass(ctx, done)
		require.NoError(t, err)

		c, err := b.store.Create(ctx, runstore.CreateRequest{Ref: "main"})
		require.NoError(t, err)
		require.ElementsMatch(t, []runstore.Superseded{{ID: first, TaskID: "1:compile"}, {ID: second}}, c.Superseded)
		for _, id := range []int64{first, second} {
			r, err := b.store.Get(ctx, id)
			require.NoError(t, err)
			require.Equal(t, vocab.ResultAborted, r.Result)
			require.Equal(t, vocab.PhaseDone, r.Phase)
			require.Equal(t, vocab.SummarySuperseded, r.FailureSummary)
		}
		r, err := b.store.Get(ctx, done)
		require.NoError(t, err)
		require.Equal(t, vocab.ResultPassed, r.Result, "a finished run is never superseded")
		r, err = b.store.Get(ctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.ResultBuilding, r.Result)
	})
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		req := runstore.CreateRequest{Ref: "main", IdempotencyKey: "k1", Fingerprint: "ref=main"}
		first, err := b.store.Create(ctx, req)
		require.NoError(t, err)
		again, err := b.store.Create(ctx, req)
		require.NoError(t, err)
		require.Equal(t, runstore.Created{ID: first.ID, Replayed: true}, again)
		r, err := b.store.Get(ctx, first.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.ResultBuilding, r.Result, "a retried trigger supersedes nothing")

		req.Fingerprint = "ref=other"
		_, err = b.store.Create(ctx, req)
		require.ErrorIs(t, err, runstore.ErrIdempotencyConflict)
		ttl, err := b.rdb.TTL(ctx, b.store.Keys().Idempotency("k1")).Result()
		require.NoError(t, err)
		require.InDelta(t, 24*time.Hour, ttl, float64(time.Minute))
	})
}

func TestGates(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{Ref: "main"})
		set := func(kind string, st vocab.GateStatus) []vocab.Gate {
			o, gates, err := b.store.SetGate(ctx, id, "host", "1.0", vocab.Gate{Kind: kind, Status: st, LogRef: fmt.Sprintf("%d/gate-%s.log", id, kind)})
			require.NoError(t, err)
			require.Equal(t, runstore.Applied, o)
			return gates
		}
		t0 := b.clock.Now()
		set("unit", vocab.GateRunning)
		b.clock.Add(time.Second)
		set("smoke", vocab.GateRunning)
		b.clock.Add(time.Second)
		after := set("unit", vocab.GatePassed) // latest status per kind: no second row
		require.Equal(t, []vocab.Gate{
			{Kind: "smoke", Status: vocab.GateRunning, LogRef: "1/gate-smoke.log", RunID: id, StartedAt: t0.Add(time.Second)},
			{Kind: "unit", Status: vocab.GatePassed, LogRef: "1/gate-unit.log", RunID: id, StartedAt: t0, FinishedAt: t0.Add(2 * time.Second)},
		}, after, "the write returns every gate of the run, for the join")
		b.clock.Add(time.Second)
		set("smoke", vocab.GateFailed)
		set("e2e", vocab.GateBlocked)
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, []vocab.Gate{
			{Kind: "e2e", Status: vocab.GateBlocked, LogRef: "1/gate-e2e.log", RunID: id},
			{Kind: "smoke", Status: vocab.GateFailed, LogRef: "1/gate-smoke.log", RunID: id, StartedAt: t0.Add(time.Second), FinishedAt: t0.Add(3 * time.Second)},
			{Kind: "unit", Status: vocab.GatePassed, LogRef: "1/gate-unit.log", RunID: id, StartedAt: t0, FinishedAt: t0.Add(2 * time.Second)},
		}, r.Gates, "a gate blocked before it started has no times")
		tier, err := b.store.TierGates(ctx, "host", "1.0")
		require.NoError(t, err)
		require.Len(t, tier, 3)
		require.Equal(t, id, tier[0].RunID)
	})
}

// Many goroutines settle the same run with different results at once:
// exactly one write wins and its result and summary are the ones stored.
func TestConcurrentSettleExactlyOneWins(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		for round := range 20 {
			id := create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
			var wins atomic.Int32
			var winner atomic.Value
			var wg sync.WaitGroup
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var won bool
					var err error
					summary := fmt.Sprintf("writer %d", i)
					switch i % 3 {
					case 0:
						won, err = b.store.Pass(ctx, id)
						summary = ""
					case 1:
						won, err = b.store.Fail(ctx, id, summary)
					case 2:
						won, err = b.store.Abort(ctx, id, summary)
					}
					if err != nil {
						t.Error(err)
						return
					}
					if won {
						wins.Add(1)
						winner.Store(summary)
					}
				}()
			}
			wg.Wait()
			require.Equal(t, int32(1), wins.Load(), "round %d", round)
			r, err := b.store.Get(ctx, id)
			require.NoError(t, err)
			require.Equal(t, winner.Load(), r.FailureSummary)
			require.True(t, r.Result.Terminal())
		}
	})
}

func TestHeartbeatAndExpire(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
		_, _, err := b.store.SetPhase(ctx, id, vocab.PhaseCompiling, "t", runstore.Where{}, "")
		require.NoError(t, err)
		before, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, b.clock.Now(), before.ProgressAt, "a phase start is progress")

		building, err := b.store.Building(ctx)
		require.NoError(t, err)
		require.Len(t, building, 1)
		require.Equal(t, vocab.PhaseCompiling, building[0].Phase)
		seen := building[0].ProgressAt

		// A heartbeat after the janitor looked saves the run.
		b.clock.Add(time.Minute)
		o, err := b.store.Heartbeat(ctx, id)
		require.NoError(t, err)
		require.Equal(t, runstore.Applied, o)
		after, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, b.clock.Now(), after.ProgressAt)
		same := *after
		same.ProgressAt = before.ProgressAt
		require.Equal(t, *before, same, "a heartbeat changes nothing but progress_at")
		expired, err := b.store.Expire(ctx, id, seen, "compiling: no progress")
		require.NoError(t, err)
		require.False(t, expired)

		expired, err = b.store.Expire(ctx, id, after.ProgressAt, "compiling: no progress for 31m (worker lost?)")
		require.NoError(t, err)
		require.True(t, expired)
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, vocab.ResultFailed, r.Result)
		require.Equal(t, "compiling: no progress for 31m (worker lost?)", r.FailureSummary)
		building, err = b.store.Building(ctx)
		require.NoError(t, err)
		require.Empty(t, building)
		o, err = b.store.Heartbeat(ctx, id)
		require.NoError(t, err)
		require.Equal(t, runstore.Finished, o)
	})
}

func TestPrune(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		// Runs 1..6, one finishing every hour; 5 passes, 6 still builds.
		for i := range 6 {
			id := create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
			b.clock.Add(time.Hour)
			switch {
			case i == 4:
				_, err := b.store.Pass(ctx, id)
				require.NoError(t, err)
			case i < 4:
				_, err := b.store.Fail(ctx, id, "x")
				require.NoError(t, err)
			}
		}
		// Finished before the cutoff: 1, 2, 3 (4 ended at the cutoff).
		cutoff := time.Date(2026, 6, 13, 4, 0, 0, 0, time.UTC)
		deleted, err := b.store.Prune(ctx, cutoff, 2, 100)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2, 3}, deleted)
		_, err = b.store.Get(ctx, 1)
		require.ErrorIs(t, err, runstore.ErrNotFound)
		page, err := b.store.List(ctx, 0, 10)
		require.NoError(t, err)
		require.Equal(t, []int64{6, 5, 4}, ids(page))

		// keep wins over age; the last passed run is never pruned; a
		// building run never is.
		deleted, err = b.store.Prune(ctx, b.clock.Now().Add(time.Hour), 0, 100)
		require.NoError(t, err)
		require.Equal(t, []int64{4}, deleted)
		page, err = b.store.List(ctx, 0, 10)
		require.NoError(t, err)
		require.Equal(t, []int64{6, 5}, ids(page))

		deleted, err = b.store.Prune(ctx, b.clock.Now().Add(time.Hour), 0, 100)
		require.NoError(t, err)
		require.Empty(t, deleted)
	})
}

// Run ids are unique across the deployment's pipelines, each run names its
// pipeline, and the fleet index finds it by id alone.
func TestFleetIDsAcrossPipelines(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		other := runstore.New(b.rdb, "web")
		fleet := runstore.NewFleet(b.rdb)
		a1 := create(t, b.store, runstore.CreateRequest{Definition: []byte(`{"name":"app"}`)})
		w1 := create(t, other, runstore.CreateRequest{})
		a2 := create(t, b.store, runstore.CreateRequest{})
		require.Equal(t, []int64{1, 2, 3}, []int64{a1, w1, a2})
		for id, want := range map[int64]string{a1: "app", w1: "web", a2: "app"} {
			got, err := fleet.PipelineOf(ctx, id)
			require.NoError(t, err)
			require.Equal(t, want, got, "run %d", id)
		}
		_, err := fleet.PipelineOf(ctx, 99)
		require.ErrorIs(t, err, runstore.ErrNotFound)
		names, err := fleet.Pipelines(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"app", "web"}, names)

		r, err := b.store.Get(ctx, a1)
		require.NoError(t, err)
		require.Equal(t, "app", r.Pipeline)
		require.JSONEq(t, `{"name":"app"}`, r.Definition, "the definition travels with the run")
		_, err = other.Get(ctx, a1)
		require.ErrorIs(t, err, runstore.ErrNotFound, "each pipeline's runs are its own")

		// Supersede stays inside the pipeline: web's run still builds.
		res, err := other.Result(ctx, w1)
		require.NoError(t, err)
		require.Equal(t, vocab.ResultBuilding, res)
	})
}

// An upgrade from per-pipeline counters keeps every run and its id: new
// ids continue above the old counter, and old runs are found by id.
func TestFleetAdoptsOldCounters(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		old := runstore.NewKeys("default")
		// What the previous version left: its own counter at 41, run 41.
		require.NoError(t, b.rdb.Set(ctx, old.Seq(), 41, 0).Err())
		require.NoError(t, b.rdb.HSet(ctx, old.Run(41), "result", "passed", "phase", "done",
			"started_at", "2026-06-12T00:00:00.000Z").Err())
		require.NoError(t, b.rdb.ZAdd(ctx, old.Runs(), redis.Z{Score: 41, Member: "41"}).Err())

		fleet := runstore.NewFleet(b.rdb)
		require.NoError(t, fleet.Adopt(ctx, []string{"default", "app"}))
		require.NoError(t, fleet.Adopt(ctx, []string{"default", "app"}), "idempotent")
		got, err := fleet.PipelineOf(ctx, 41)
		require.NoError(t, err)
		require.Equal(t, "default", got)
		r, err := runstore.New(b.rdb, got).Get(ctx, 41)
		require.NoError(t, err)
		require.Equal(t, "default", r.Pipeline, "an old run without a pipeline field names its store's")
		require.Equal(t, int64(42), create(t, b.store, runstore.CreateRequest{}), "ids continue above the old counter")
	})
}

// Once a run is terminal no gate is in flight: the terminal write reports
// gates still running (their tasks are being stopped) as blocked, ended at
// the run's end.
func TestTerminalWriteBlocksRunningGates(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{})
		t0 := b.clock.Now()
		for _, g := range []vocab.Gate{{Kind: "lint", Status: vocab.GateRunning}, {Kind: "unit", Status: vocab.GateRunning}} {
			_, _, err := b.store.SetGate(ctx, id, "host", "1", g)
			require.NoError(t, err)
		}
		b.clock.Add(time.Second)
		_, _, err := b.store.SetGate(ctx, id, "host", "1", vocab.Gate{Kind: "unit", Status: vocab.GateFailed})
		require.NoError(t, err)
		b.clock.Add(time.Second)
		won, err := b.store.Fail(ctx, id, "unit: TestAdd")
		require.NoError(t, err)
		require.True(t, won)
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, []vocab.Gate{
			{Kind: "lint", Status: vocab.GateBlocked, RunID: id, StartedAt: t0, FinishedAt: t0.Add(2 * time.Second)},
			{Kind: "unit", Status: vocab.GateFailed, RunID: id, StartedAt: t0, FinishedAt: t0.Add(time.Second)},
		}, r.Gates)
	})
}

// The run's phases: each phase entered, when, on which worker, with its
// step's log; each ends where the next begins, the last with the run.
func TestPhasesRecorded(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{})
		t0 := b.clock.Now()
		a, c := runstore.Where{Disk: "d1", Worker: "a:/data"}, runstore.Where{Disk: "d2", Worker: "c:/data"}
		_, _, err := b.store.SetPhase(ctx, id, vocab.PhaseFetching, "t", a, "1/fetch.log")
		require.NoError(t, err)
		b.clock.Add(time.Second)
		_, _, err = b.store.SetPhase(ctx, id, vocab.PhaseGating, "t", a, "")
		require.NoError(t, err)
		b.clock.Add(time.Second)
		_, got, err := b.store.SetPhase(ctx, id, vocab.PhaseGating, "t2", c, "") // a redelivered gate, elsewhere
		require.NoError(t, err)
		require.Equal(t, "d2", got.Disk)
		require.Equal(t, []vocab.PhaseRun{
			{Phase: vocab.PhaseFetching, StartedAt: t0, FinishedAt: t0.Add(time.Second), Worker: "a:/data", LogRef: "1/fetch.log"},
			{Phase: vocab.PhaseGating, StartedAt: t0.Add(time.Second), Worker: "c:/data"},
		}, got.Phases)
		b.clock.Add(time.Second)
		_, err = b.store.Pass(ctx, id)
		require.NoError(t, err)
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, t0.Add(3*time.Second), r.Phases[1].FinishedAt, "the last phase ends with the run")
	})
}

// A gate's report counts are kept with its status, in the run and in its
// tier's results; a gate without a report has none.
func TestGateTests(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{Ref: "main"})
		counts := &vocab.Tests{Passed: 41, Failed: 2, Skipped: 3}
		for _, g := range []vocab.Gate{
			{Kind: "unit", Status: vocab.GateRunning},
			{Kind: "unit", Status: vocab.GateFailed, Tests: counts},
			{Kind: "lint", Status: vocab.GatePassed},
		} {
			_, _, err := b.store.SetGate(ctx, id, "host", "1.0", g)
			require.NoError(t, err)
		}
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Len(t, r.Gates, 2)
		require.Nil(t, r.Gates[0].Tests, "lint has no report")
		require.Equal(t, counts, r.Gates[1].Tests)
		tier, err := b.store.TierGates(ctx, "host", "1.0")
		require.NoError(t, err)
		require.Equal(t, counts, tier[1].Tests)
	})
}

// What rides on a phase write: the fetch's findings on the step to
// compiling, unless a fetch recorded its own; a gate's "running" entry, in
// the run and in its version's tier gates, as SetGate writes it.
func TestEnterCarriesFetchedAndGate(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		first := &runstore.Fetched{SHA: "aaa", Version: "1.0"}
		id := create(t, b.store, runstore.CreateRequest{})
		e, err := b.store.Enter(ctx, id, vocab.PhaseFetching, runstore.Entry{TaskID: "f"})
		require.NoError(t, err)
		require.False(t, e.Again, "the first fetch")
		e, err = b.store.Enter(ctx, id, vocab.PhaseFetching, runstore.Entry{TaskID: "f"})
		require.NoError(t, err)
		require.True(t, e.Again, "a redelivered fetch")
		e, err = b.store.Enter(ctx, id, vocab.PhaseCompiling, runstore.Entry{TaskID: "c", Fetched: first})
		require.NoError(t, err)
		require.Equal(t, runstore.Applied, e.Outcome)
		require.Equal(t, "aaa", e.Run.SHA)
		require.Equal(t, "1.0", e.Run.Version)
		e, err = b.store.Enter(ctx, id, vocab.PhaseCompiling, runstore.Entry{TaskID: "c", Fetched: &runstore.Fetched{SHA: "bbb", Version: "2.0"}})
		require.NoError(t, err)
		require.Equal(t, "aaa", e.Run.SHA, "a redelivered compile does not record the fetch again")

		// A fetch that ran again recorded its own: the compile task an
		// earlier try queued changes nothing.
		id2 := create(t, b.store, runstore.CreateRequest{NoSupersede: true})
		_, err = b.store.Enter(ctx, id2, vocab.PhaseFetching, runstore.Entry{})
		require.NoError(t, err)
		_, err = b.store.SetFetched(ctx, id2, "bbb", "2.0")
		require.NoError(t, err)
		e, err = b.store.Enter(ctx, id2, vocab.PhaseCompiling, runstore.Entry{Fetched: first})
		require.NoError(t, err)
		require.Equal(t, runstore.Applied, e.Outcome)
		require.Equal(t, "bbb", e.Run.SHA)
		require.Equal(t, "2.0", e.Run.Version)

		t0 := b.clock.Now()
		gate := &runstore.GateStart{Kind: "unit", Tier: "host", LogRef: fmt.Sprintf("%d/gate-unit.log", id)}
		e, err = b.store.Enter(ctx, id, vocab.PhaseGating, runstore.Entry{Gate: gate})
		require.NoError(t, err)
		require.Equal(t, runstore.Applied, e.Outcome)
		want := vocab.Gate{Kind: "unit", Status: vocab.GateRunning, LogRef: gate.LogRef, RunID: id, StartedAt: t0}
		require.Equal(t, []vocab.Gate{want}, e.Run.Gates)
		tier, err := b.store.TierGates(ctx, "host", "1.0")
		require.NoError(t, err)
		require.Equal(t, []vocab.Gate{want}, tier)

		// A finished run is never written, gate or no gate.
		_, err = b.store.Pass(ctx, id)
		require.NoError(t, err)
		e, err = b.store.Enter(ctx, id, vocab.PhaseGating, runstore.Entry{Gate: &runstore.GateStart{Kind: "smoke", Tier: "host"}})
		require.NoError(t, err)
		require.Equal(t, runstore.Finished, e.Outcome)
		tier, err = b.store.TierGates(ctx, "host", "1.0")
		require.NoError(t, err)
		require.Len(t, tier, 1)
	})
}

// The fetch's phase write reads the cache generation its slot needs, so
// the fetch reads it in no round trip of its own: 0 before any clear,
// then each clear's.
func TestEnterReadsCacheGeneration(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{})
		e, err := b.store.Enter(ctx, id, vocab.PhaseFetching, runstore.Entry{})
		require.NoError(t, err)
		require.Equal(t, int64(0), e.CacheGeneration, "before any clear")
		for want := int64(1); want <= 2; want++ {
			gen, err := b.store.ClearCache(ctx)
			require.NoError(t, err)
			require.Equal(t, want, gen)
			e, err = b.store.Enter(ctx, id, vocab.PhaseFetching, runstore.Entry{})
			require.NoError(t, err)
			require.Equal(t, want, e.CacheGeneration)
			read, err := b.store.CacheGeneration(ctx)
			require.NoError(t, err)
			require.Equal(t, read, e.CacheGeneration, "the script reads the key Keys names")
		}
	})
}

// PassGate settles the run with the pass that makes its gates all passed,
// on both backends: the run is passed and the last passed; a gate that
// failed keeps the count short of all. A run passes with at least one gate.
func TestPassGateSettlesAtTheCount(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		id := create(t, b.store, runstore.CreateRequest{})
		_, _, settled, err := b.store.PassGate(ctx, id, "host", "1", vocab.Gate{Kind: "unit"}, 2)
		require.NoError(t, err)
		require.False(t, settled)
		_, gates, settled, err := b.store.PassGate(ctx, id, "host", "1", vocab.Gate{Kind: "smoke"}, 2)
		require.NoError(t, err)
		require.True(t, settled)
		require.Len(t, gates, 2)
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, vocab.ResultPassed, r.Result)
		require.Equal(t, id, deployment(t, b).LastPassed.ID)

		red := create(t, b.store, runstore.CreateRequest{})
		_, _, err = b.store.SetGate(ctx, red, "host", "2", vocab.Gate{Kind: "unit", Status: vocab.GateFailed})
		require.NoError(t, err)
		_, _, settled, err = b.store.PassGate(ctx, red, "host", "2", vocab.Gate{Kind: "smoke"}, 2)
		require.NoError(t, err)
		require.False(t, settled, "one of two gates failed")

		_, _, _, err = b.store.PassGate(ctx, red, "host", "2", vocab.Gate{Kind: "smoke"}, 0)
		require.Error(t, err)
	})
}

// Gates passing at once, with an abort racing them: exactly one write
// settles each run, and the run is passed exactly when a pass reports it
// settled it; either way the run leaves the building set.
func TestPassGateRacesSettleOnce(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		kinds := []string{"a", "b", "c", "d", "e"}
		for round := range 20 {
			id := create(t, b.store, runstore.CreateRequest{NoSupersede: true})
			var settled, aborted atomic.Int32
			var wg sync.WaitGroup
			for _, k := range kinds {
				wg.Go(func() {
					_, _, s, err := b.store.PassGate(ctx, id, "host", "1", vocab.Gate{Kind: k}, len(kinds))
					require.NoError(t, err)
					if s {
						settled.Add(1)
					}
				})
			}
			if round%2 == 1 {
				wg.Go(func() {
					won, err := b.store.Abort(ctx, id, "canceled")
					require.NoError(t, err)
					if won {
						aborted.Add(1)
					}
				})
			}
			wg.Wait()
			r, err := b.store.Get(ctx, id)
			require.NoError(t, err)
			require.Equal(t, int32(1), settled.Load()+aborted.Load(), "round %d: one terminal write wins", round)
			if settled.Load() == 1 {
				require.Equal(t, vocab.ResultPassed, r.Result)
			} else {
				require.Equal(t, vocab.ResultAborted, r.Result)
			}
			building, err := b.rdb.SIsMember(ctx, b.store.Keys().Building(), id).Result()
			require.NoError(t, err)
			require.False(t, building, "round %d: the settled run is out of the building set", round)
		}
	})
}
