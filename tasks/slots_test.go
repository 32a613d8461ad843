package tasks

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/lifecycle"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/vocab"
)

// drive runs run id as workers would: its fetch, then every step queued
// on the bundle's disk, until none is left.
func drive(t *testing.T, b *testBundle, id int64) *vocab.Run {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id, Pipeline: b.pipeline.Name})))
	for {
		list := pending(t, b, diskQueue)
		if len(list) == 0 {
			break
		}
		for _, ti := range list {
			require.NoError(t, b.inspector.DeleteTask(diskQueue, ti.ID))
			_ = b.runner.handle(ctx, asynq.NewTask(ti.Type, ti.Payload)) // a red gate returns its failure
		}
	}
	r, err := b.store.Get(ctx, id)
	require.NoError(t, err)
	require.True(t, r.Result.Terminal(), "run %d still %s", id, r.Result)
	return r
}

func compileLogOf(t *testing.T, b *testBundle, id int64) string {
	t.Helper()
	out, err := os.ReadFile(b.runner.Layout.LogPath(id, "compile"))
	require.NoError(t, err)
	return string(out)
}

var cacheLine = regexp.MustCompile(`(?m)^cache=(.+)$`)

// Two runs of one pipeline building at once hold two slots: distinct
// cache dirs and worktrees. Once they settled, a third run takes one of
// them, with what its build left in the cache.
func TestConcurrentRunsGetDistinctCacheDirs(t *testing.T) {
	t.Parallel()
	b := setup(t, `echo "cache=$SANDO_CACHE_DIR"; echo "wt=$SANDO_WORKTREE"; sed 's/^/prev=/' "$SANDO_CACHE_DIR/by" 2>/dev/null; echo "$SANDO_RUN_ID" > "$SANDO_CACHE_DIR/by"`)
	ctx := context.Background()
	first, second := newRun(t, b), newRun(t, b)
	for _, id := range []int64{first, second} {
		require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id})))
	}
	for _, id := range []int64{first, second} {
		require.NoError(t, b.runner.handle(ctx, task(steps.Compile, steps.Payload{RunID: id})))
	}
	log1, log2 := compileLogOf(t, b, first), compileLogOf(t, b, second)
	cache1, cache2 := cacheLine.FindStringSubmatch(log1)[1], cacheLine.FindStringSubmatch(log2)[1]
	require.NotEqual(t, cache1, cache2)
	wt := regexp.MustCompile(`(?m)^wt=(.+)$`)
	require.NotEqual(t, wt.FindStringSubmatch(log1)[1], wt.FindStringSubmatch(log2)[1])

	for _, id := range []int64{first, second} {
		_, err := b.store.Pass(ctx, id)
		require.NoError(t, err)
		b.runner.Cleanup(id)
		require.NoFileExists(t, b.runner.Layout.Worktree(id), "the run's link is gone")
	}
	third := newRun(t, b)
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: third})))
	require.NoError(t, b.runner.handle(ctx, task(steps.Compile, steps.Payload{RunID: third})))
	log3 := compileLogOf(t, b, third)
	require.Contains(t, []string{cache1, cache2}, cacheLine.FindStringSubmatch(log3)[1], "a free slot is reused, not a new one made")
	prev := regexp.MustCompile(`(?m)^prev=(.+)$`).FindStringSubmatch(log3)
	require.NotNil(t, prev, "the third run sees an earlier one's cache:\n%s", log3)
	require.Contains(t, []string{strconv.FormatInt(first, 10), strconv.FormatInt(second, 10)}, prev[1])
}

// reuse: tree in the phase runner: the second run of a tree settles at the
// fetch, passed, without compiling; its webhook says it was reused; a
// changed command (another definition) builds again.
func TestReuseTreeBuildsAgainWhenTheCommandChanges(t *testing.T) {
	t.Parallel()
	b := setup(t, "echo built")
	b.pipeline.Reuse = pipeline.ReuseTree
	rc := &hookReceiver{}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	withWebhooks(t, b, hook.URL+"/sando")

	built := drive(t, b, newRun(t, b))
	require.Equal(t, vocab.ResultPassed, built.Result)
	require.Zero(t, built.ReusedFrom)

	reused := drive(t, b, newRun(t, b))
	require.Equal(t, vocab.ResultPassed, reused.Result)
	require.Equal(t, built.ID, reused.ReusedFrom)
	require.NoFileExists(t, b.runner.Layout.LogPath(reused.ID, "compile"), "nothing was built")
	require.Len(t, reused.Gates, 2)

	payload, err := json.Marshal(lifecycle.WebhookPayload{RunID: reused.ID, Pipeline: b.pipeline.Name})
	require.NoError(t, err)
	require.NoError(t, b.runner.deliver(context.Background(), asynq.NewTask(lifecycle.TypeWebhook, payload)))
	require.Equal(t, 1, rc.count())
	var view map[string]any
	require.NoError(t, json.Unmarshal(rc.got[0].body, &view))
	require.EqualValues(t, built.ID, view["reused_from"], "the webhook says the run was reused")

	b.pipeline.Build = "echo built differently"
	rebuilt := drive(t, b, newRun(t, b))
	require.Equal(t, vocab.ResultPassed, rebuilt.Result)
	require.Zero(t, rebuilt.ReusedFrom, "another definition builds again")
	require.Contains(t, compileLogOf(t, b, rebuilt.ID), "built differently")
}
