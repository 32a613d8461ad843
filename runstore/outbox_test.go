package runstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// outbox is the outbox's members with their scores (unix ms).
func outbox(t *testing.T, b *testBundle, s *runstore.Store) map[string]float64 {
	t.Helper()
	zs, err := b.rdb.ZRangeWithScores(context.Background(), s.Keys().Outbox(), 0, -1).Result()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, z := range zs {
		out[z.Member.(string)] = z.Score
	}
	return out
}

// Every terminal write that wins (settle, janitor expiry, supersede) puts
// the run in the outbox in the same script; a write that loses does not.
func TestOutboxRecordsWonTerminalWrites(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		s := runstore.New(b.rdb, "hooks", runstore.WithClock(b.clock.Now), runstore.WithWebhooks(true))
		ms := func() float64 { return float64(b.clock.Now().UnixMilli()) }

		failed := create(t, s, runstore.CreateRequest{NoSupersede: true})
		at := ms()
		won, err := s.Fail(ctx, failed, "boom")
		require.NoError(t, err)
		require.True(t, won)
		require.Equal(t, map[string]float64{"1": at}, outbox(t, b, s))

		b.clock.Add(time.Minute)
		won, err = s.Pass(ctx, failed)
		require.NoError(t, err)
		require.False(t, won)
		require.Equal(t, map[string]float64{"1": at}, outbox(t, b, s), "a lost settle changes nothing")
		require.NoError(t, s.Delivered(ctx, failed))
		require.Empty(t, outbox(t, b, s), "Delivered removes the run")
		won, err = s.Abort(ctx, failed, vocab.SummaryCanceled)
		require.NoError(t, err)
		require.False(t, won)
		require.Empty(t, outbox(t, b, s), "a lost settle does not put a delivered run back")

		stalled := create(t, s, runstore.CreateRequest{NoSupersede: true})
		_, _, err = s.SetPhase(ctx, stalled, vocab.PhaseCompiling, "t", runstore.Where{}, "")
		require.NoError(t, err)
		r, err := s.Get(ctx, stalled)
		require.NoError(t, err)
		expired, err := s.Expire(ctx, stalled, r.ProgressAt.Add(-time.Second), "progressed since")
		require.NoError(t, err)
		require.False(t, expired)
		require.Empty(t, outbox(t, b, s), "an expiry a heartbeat beat writes nothing")
		b.clock.Add(time.Minute)
		expired, err = s.Expire(ctx, stalled, r.ProgressAt, "compiling: no progress")
		require.NoError(t, err)
		require.True(t, expired)
		require.Equal(t, map[string]float64{"2": ms()}, outbox(t, b, s))
		require.NoError(t, s.Delivered(ctx, stalled))
		expired, err = s.Expire(ctx, stalled, r.ProgressAt, "again")
		require.NoError(t, err)
		require.False(t, expired)
		require.Empty(t, outbox(t, b, s), "a lost expiry writes nothing")

		older := create(t, s, runstore.CreateRequest{NoSupersede: true})
		b.clock.Add(time.Minute)
		c, err := s.Create(ctx, runstore.CreateRequest{})
		require.NoError(t, err)
		require.Equal(t, []runstore.Superseded{{ID: older}}, c.Superseded)
		require.Equal(t, map[string]float64{"3": ms()}, outbox(t, b, s), "the superseded run, not the new one")
		require.NoError(t, s.Delivered(ctx, older))
		// A finished run left in the building set (as a supersede that
		// lost to a settle would see it) is dropped, not aborted again.
		require.NoError(t, b.rdb.SAdd(ctx, s.Keys().Building(), older).Err())
		b.clock.Add(time.Minute)
		again, err := s.Create(ctx, runstore.CreateRequest{})
		require.NoError(t, err)
		require.Equal(t, []runstore.Superseded{{ID: c.ID}}, again.Superseded)
		require.Equal(t, map[string]float64{"4": ms()}, outbox(t, b, s))
	})
}

// Without webhooks the terminal writes leave no outbox behind.
func TestOutboxOffWritesNothing(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		s := b.store
		_, err := s.Pass(ctx, create(t, s, runstore.CreateRequest{NoSupersede: true}))
		require.NoError(t, err)
		stalled := create(t, s, runstore.CreateRequest{NoSupersede: true})
		r, err := s.Get(ctx, stalled)
		require.NoError(t, err)
		expired, err := s.Expire(ctx, stalled, r.ProgressAt, "queued: no progress")
		require.NoError(t, err)
		require.True(t, expired)
		create(t, s, runstore.CreateRequest{NoSupersede: true})
		c, err := s.Create(ctx, runstore.CreateRequest{})
		require.NoError(t, err)
		require.Len(t, c.Superseded, 1)
		n, err := b.rdb.Exists(ctx, s.Keys().Outbox()).Result()
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

// Undelivered lists, oldest first, the runs settled strictly before the
// bound, at most limit of them.
func TestUndelivered(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		s := runstore.New(b.rdb, "hooks", runstore.WithClock(b.clock.Now), runstore.WithWebhooks(true))
		start := b.clock.Now()
		for range 4 { // run i settles at start + i seconds
			_, err := s.Fail(ctx, create(t, s, runstore.CreateRequest{NoSupersede: true}), "x")
			require.NoError(t, err)
			b.clock.Add(time.Second)
		}
		got, err := s.Undelivered(ctx, start, 10)
		require.NoError(t, err)
		require.Empty(t, got, "nothing settled before the first")
		got, err = s.Undelivered(ctx, start.Add(2*time.Second), 10)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2}, got, "the bound itself is excluded")
		got, err = s.Undelivered(ctx, start.Add(time.Hour), 3)
		require.NoError(t, err)
		require.Equal(t, []int64{1, 2, 3}, got)
		require.NoError(t, s.Delivered(ctx, 1))
		got, err = s.Undelivered(ctx, start.Add(time.Hour), 10)
		require.NoError(t, err)
		require.Equal(t, []int64{2, 3, 4}, got)
	})
}
