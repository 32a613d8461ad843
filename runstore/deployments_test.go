package runstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// Deployments reads each pipeline's /state (its last passed run with the
// tier's gates at its version, and its newest run) in three round trips
// whatever the number of pipelines, and reads the same as the one-by-one
// methods: a pipeline with no runs has neither, one that never passed has
// no last passed run.
func TestDeploymentsInThreeRoundTrips(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		deployed := b.store
		passed := create(t, deployed, runstore.CreateRequest{Ref: "main"})
		_, err := deployed.SetFetched(ctx, passed, "aa", "1.0")
		require.NoError(t, err)
		_, _, err = deployed.SetGate(ctx, passed, "host", "1.0", vocab.Gate{Kind: "unit", Status: vocab.GatePassed})
		require.NoError(t, err)
		_, err = deployed.Pass(ctx, passed)
		require.NoError(t, err)
		newer := create(t, deployed, runstore.CreateRequest{Ref: "main"})
		building := runstore.New(b.rdb, "building")
		onlyRun := create(t, building, runstore.CreateRequest{})
		empty := runstore.New(b.rdb, "empty")

		var rt redistest.Traffic
		b.rdb.AddHook(&rt)
		ds, err := runstore.Deployments(ctx, b.rdb, []*runstore.Store{deployed, building, empty}, []string{"host", "host", "host"})
		require.NoError(t, err)
		require.Equal(t, int64(3), rt.Trips(), "three pipelined round trips for three pipelines")

		last, err := deployed.Get(ctx, passed)
		require.NoError(t, err)
		require.Equal(t, last, ds[0].LastPassed)
		tier, err := deployed.TierGates(ctx, "host", "1.0")
		require.NoError(t, err)
		require.Equal(t, tier, ds[0].TierGates)
		require.Len(t, ds[0].TierGates, 1)
		require.Equal(t, newer, ds[0].Latest.ID)

		require.Nil(t, ds[1].LastPassed, "never passed")
		require.Nil(t, ds[1].TierGates)
		require.Equal(t, onlyRun, ds[1].Latest.ID)
		require.Equal(t, runstore.Deployment{}, ds[2], "no runs at all")
	})
}
