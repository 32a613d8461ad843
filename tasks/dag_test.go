package tasks

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// serve runs b's runner on a real asynq server with conc slots until the
// test ends.
func serve(t *testing.T, b *testBundle, conc int) {
	t.Helper()
	srv := asynq.NewServer(b.redis, asynq.Config{
		Concurrency: conc, Queues: steps.Queues(b.runner.Disk), StrictPriority: true,
		TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel,
		RetryDelayFunc: RetryDelay,
	})
	mux := asynq.NewServeMux()
	b.runner.Register(mux)
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)
}

func start(t *testing.T, b *testBundle) int64 {
	t.Helper()
	id := newRun(t, b)
	require.NoError(t, steps.EnqueueFirst(context.Background(), b.runner.Queue, b.pipeline, id))
	return id
}

func waitTerminal(t *testing.T, store *runstore.Store, id int64) *vocab.Run {
	t.Helper()
	var r *vocab.Run
	require.Eventually(t, func() bool {
		var err error
		r, err = store.Get(context.Background(), id)
		return err == nil && r.Result.Terminal()
	}, 30*time.Second, 20*time.Millisecond)
	return r
}

// Gates with needs: [] run at the same time, and a gate that needs them
// starts once both passed: three 1 s gates take about 2 s, not 3.
func TestGatesFanOutAndJoin(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	mark := t.TempDir()
	b.pipeline.Gates = []pipeline.Gate{
		{Kind: "lint", Run: "touch " + mark + "/lint.start; sleep 1; touch " + mark + "/lint.end", Timeout: time.Minute},
		{Kind: "unit", Run: "touch " + mark + "/unit.start; sleep 1; touch " + mark + "/unit.end", Timeout: time.Minute},
		{Kind: "e2e", Run: "test -e " + mark + "/lint.end && test -e " + mark + "/unit.end", Timeout: time.Minute, Needs: []string{"lint", "unit"}},
	}
	serve(t, b, 4)
	r := waitTerminal(t, b.store, start(t, b))
	require.Equal(t, vocab.ResultPassed, r.Result, r.FailureSummary)
	byKind := map[string]vocab.Gate{}
	for _, g := range r.Gates {
		byKind[g.Kind] = g
		require.Equal(t, vocab.GatePassed, g.Status, g.Kind)
	}
	lint, unit, e2e := byKind["lint"], byKind["unit"], byKind["e2e"]
	require.True(t, lint.StartedAt.Before(unit.FinishedAt) && unit.StartedAt.Before(lint.FinishedAt),
		"lint and unit ran at the same time: %+v %+v", lint, unit)
	require.False(t, e2e.StartedAt.Before(lint.FinishedAt) || e2e.StartedAt.Before(unit.FinishedAt),
		"e2e started after both it needs: %+v", e2e)
}

// The first red gate settles the run failed; a sibling still running is
// stopped (its process group killed) and reported blocked, as is a gate
// that never started.
func TestRedGateStopsSiblings(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	mark := t.TempDir()
	b.pipeline.Gates = []pipeline.Gate{
		{Kind: "slow", Run: "sleep 30 & echo $! > " + mark + "/slow.pid; wait", Timeout: time.Minute, Needs: []string{}},
		{Kind: "unit", Run: "sleep 0.3; echo 'FAIL: digest mismatch' >&2; exit 1", Timeout: time.Minute, Needs: []string{}},
		{Kind: "e2e", Run: "true", Timeout: time.Minute, Needs: []string{"slow", "unit"}},
	}
	serve(t, b, 4)
	began := time.Now()
	r := waitTerminal(t, b.store, start(t, b))
	require.Equal(t, vocab.ResultFailed, r.Result)
	require.Equal(t, "unit: FAIL: digest mismatch", r.FailureSummary)
	status := map[string]vocab.GateStatus{}
	for _, g := range r.Gates {
		status[g.Kind] = g.Status
	}
	require.Equal(t, map[string]vocab.GateStatus{"slow": vocab.GateBlocked, "unit": vocab.GateFailed, "e2e": vocab.GateBlocked}, status)
	require.Less(t, time.Since(began), 20*time.Second, "the run did not wait for its slow sibling")
	raw, err := os.ReadFile(filepath.Join(mark, "slow.pid"))
	require.NoError(t, err, "the slow sibling had started")
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil }, 5*time.Second, 20*time.Millisecond,
		"the slow sibling's process (pid %d) was killed", pid)
}

// A run is built with the definition it carries: editing the pipeline
// after the trigger changes nothing, and one runner builds any pipeline.
func TestRunIsBuiltWithItsOwnDefinition(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	serve(t, b, 2)
	id := start(t, b)
	b.pipeline.Build = "false" // an edit after the trigger
	require.Equal(t, vocab.ResultPassed, waitTerminal(t, b.store, id).Result)

	web := *b.pipeline
	web.Name, web.Build = "web", "echo 'web.c:1:1: error: nope' >&2; exit 1"
	b.pipeline = &web
	b.store = runstore.New(b.runner.Redis, "web")
	r := waitTerminal(t, b.store, start(t, b))
	require.Equal(t, "web", r.Pipeline)
	require.Equal(t, "web.c:1:1: error: nope", r.FailureSummary, "the same runner built the second pipeline")
}

// A run made by a version that did not store definitions is never dropped
// quietly: its task fails it with a summary saying what to do.
func TestRunWithoutDefinitionFailsClearly(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	ctx := context.Background()
	c, err := b.store.Create(ctx, runstore.CreateRequest{})
	require.NoError(t, err)
	// An older version's task: no pipeline name, the run found by id.
	err = b.runner.handle(ctx, rawTask(steps.Fetch.Type, steps.Payload{RunID: c.ID}))
	require.ErrorIs(t, err, asynq.SkipRetry)
	r, err := b.store.Get(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.ResultFailed, r.Result)
	require.Contains(t, r.FailureSummary, "started by an older version of Sando")
}
