package runstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// reuse: tree in the store: a passed run filed under its reuse key is
// reused by a later run of the same key (one terminal write that carries
// its gates and version and names it); a failed run and a run of another
// key are not; retention keeps the reused run while its reuser is kept,
// and drops its index entry with it.
func TestReuseIndexAndRetention(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		const key, sha = "tree1:def1", "1111111111111111111111111111111111111111"

		built := create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
		_, err := b.store.SetFetchedReusable(ctx, built, sha, "1.0.0", key)
		require.NoError(t, err)
		_, _, err = b.store.SetGate(ctx, built, "host", "1.0.0", vocab.Gate{Kind: "unit", Status: vocab.GatePassed, LogRef: "1/gate-unit.log"})
		require.NoError(t, err)

		// Not passed yet: nothing to reuse, and nothing filed.
		early := create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
		o, from, err := b.store.Reuse(ctx, early, sha, key)
		require.NoError(t, err)
		require.Zero(t, o)
		require.Zero(t, from)
		filed, err := b.store.IndexPassed(ctx, built)
		require.NoError(t, err)
		require.False(t, filed, "a building run is not filed")

		_, err = b.store.Pass(ctx, built)
		require.NoError(t, err)
		filed, err = b.store.IndexPassed(ctx, built)
		require.NoError(t, err)
		require.True(t, filed)

		other := create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
		o, _, err = b.store.Reuse(ctx, other, sha, "tree2:def1")
		require.NoError(t, err)
		require.Zero(t, o, "another key builds")

		b.clock.Add(time.Hour)
		reuser := create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
		const newSHA = "2222222222222222222222222222222222222222"
		o, from, err = b.store.Reuse(ctx, reuser, newSHA, key)
		require.NoError(t, err)
		require.Equal(t, runstore.Applied, o)
		require.Equal(t, built, from)
		r, err := b.store.Get(ctx, reuser)
		require.NoError(t, err)
		require.Equal(t, vocab.ResultPassed, r.Result)
		require.Equal(t, vocab.PhaseDone, r.Phase)
		require.Equal(t, built, r.ReusedFrom)
		require.Equal(t, newSHA, r.SHA)
		require.Equal(t, "1.0.0", r.Version)
		require.Len(t, r.Gates, 1)
		require.Equal(t, "1/gate-unit.log", r.Gates[0].LogRef)
		last := deployment(t, b).LastPassed
		require.NotNil(t, last)
		require.Equal(t, reuser, last.ID, "/state's deployed follows the reused run")
		filed, err = b.store.IndexPassed(ctx, reuser)
		require.NoError(t, err)
		require.False(t, filed, "a reused run is not filed: the index names the run that built")

		o, _, err = b.store.Reuse(ctx, reuser, newSHA, key)
		require.NoError(t, err)
		require.Equal(t, runstore.Finished, o, "a settled run is not settled again")

		// Settle the rest, then prune everything prunable: the built run
		// stays while its reuser does.
		for _, id := range []int64{early, other} {
			_, err := b.store.Fail(ctx, id, "x")
			require.NoError(t, err)
		}
		b.clock.Add(time.Hour)
		newer := create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
		_, err = b.store.Pass(ctx, newer) // so the reuser is not the last passed run
		require.NoError(t, err)
		deleted, err := b.store.Prune(ctx, b.clock.Now().Add(time.Hour), 0, 100)
		require.NoError(t, err)
		require.ElementsMatch(t, []int64{early, other, reuser}, deleted)
		_, err = b.store.Get(ctx, built)
		require.NoError(t, err, "kept while its reuser was")
		deleted, err = b.store.Prune(ctx, b.clock.Now().Add(time.Hour), 0, 100)
		require.NoError(t, err)
		require.Equal(t, []int64{built}, deleted, "its reuser gone, it goes")

		again := create(t, b.store, runstore.CreateRequest{Ref: "main", NoSupersede: true})
		o, _, err = b.store.Reuse(ctx, again, sha, key)
		require.NoError(t, err)
		require.Zero(t, o, "a pruned run is not reused")
	})
}

// The cache generation starts at 0 and every clear moves it on.
func TestCacheGeneration(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		gen, err := b.store.CacheGeneration(ctx)
		require.NoError(t, err)
		require.Zero(t, gen)
		for want := int64(1); want <= 2; want++ {
			got, err := b.store.ClearCache(ctx)
			require.NoError(t, err)
			require.Equal(t, want, got)
			gen, err = b.store.CacheGeneration(ctx)
			require.NoError(t, err)
			require.Equal(t, want, gen)
		}
	})
}
