package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/logstore"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

type testBundle struct {
	runner *Runner
	// pipeline is what newRun snapshots into each run: change it before
	// making the run, as an edit of the pipeline file would be.
	pipeline  *pipeline.Pipeline
	store     *runstore.Store
	inspector *asynq.Inspector
	redis     asynq.RedisClientOpt
}

func setup(t *testing.T, build string) *testBundle {
	t.Helper()
	srv := redistest.Start(t)
	src := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"},
	} {
		out, err := exec.CommandContext(context.Background(), "git", append([]string{"-C", src}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	p := &pipeline.Pipeline{
		Name: "app", Repo: src, Branch: "main", Build: build, Tier: "host",
		Gates: []pipeline.Gate{
			{Kind: "unit", Run: "true", Timeout: time.Minute},
			{Kind: "smoke", Run: "true", Timeout: time.Minute, Needs: []string{"unit"}}, // in file order
		},
		Timeouts: pipeline.Timeouts{Fetch: time.Minute, Compile: time.Minute, Stage: time.Minute},
	}
	opt := asynq.RedisClientOpt{Addr: srv.Addr}
	client := asynq.NewClient(opt)
	inspector := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = client.Close(); _ = inspector.Close() })
	rdb := srv.Client(t)
	return &testBundle{
		runner: &Runner{
			Redis: rdb, Fleet: runstore.NewFleet(rdb), Layout: datadir.Layout{Root: t.TempDir()}, Queue: client,
			Disk: testDisk, Name: "test:" + testDisk,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), BaseEnv: BaseEnv(nil),
			WatchInterval: 50 * time.Millisecond,
		},
		pipeline: p, store: runstore.New(rdb, p.Name), inspector: inspector, redis: opt,
	}
}

func task(k *steps.Kind, p steps.Payload) *asynq.Task {
	return rawTask(k.Type, p)
}

func rawTask(typ string, p steps.Payload) *asynq.Task {
	b, _ := json.Marshal(p)
	return asynq.NewTask(typ, b)
}

func pending(t *testing.T, b *testBundle, queue string) []*asynq.TaskInfo {
	t.Helper()
	list, err := b.inspector.ListPendingTasks(queue)
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return nil
	}
	require.NoError(t, err)
	return list
}

// pendingOf lists the pending tasks of kind k on the bundle's disk queue.
func pendingOf(t *testing.T, b *testBundle, k *steps.Kind) []*asynq.TaskInfo {
	t.Helper()
	var out []*asynq.TaskInfo
	for _, ti := range pending(t, b, diskQueue) {
		if ti.Type == k.Type {
			out = append(out, ti)
		}
	}
	return out
}

// testDisk is the bundle's data dir id; diskQueue holds its runs' steps
// after the fetch.
const testDisk = "t1"

var diskQueue = steps.DiskQueue(testDisk)

// newRun makes a run of b.pipeline as it is now, as POST /rebuild would.
func newRun(t *testing.T, b *testBundle) int64 {
	t.Helper()
	def, err := pipeline.Marshal(b.pipeline)
	require.NoError(t, err)
	c, err := b.store.Create(context.Background(), runstore.CreateRequest{NoSupersede: true, Definition: def})
	require.NoError(t, err)
	return c.ID
}

// What a fetch learned rides on the compile's task. A fetch that runs
// again before the compile (a redelivery) records its own, and the compile
// task the first try queued, with the first try's sha, changes nothing:
// the run names the commit its worktree holds.
func TestRefetchOutranksQueuedCompile(t *testing.T) {
	t.Parallel()
	b := setup(t, `git log -1 --format=%H`)
	ctx := context.Background()
	id := newRun(t, b) // by ref: the branch's head when fetched
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id})))
	r, err := b.store.Get(ctx, id)
	require.NoError(t, err)
	require.Empty(t, r.Version, "nothing recorded yet: it is in the compile's task")
	out, err := exec.CommandContext(ctx, "git", "-C", b.pipeline.Repo, "-c", "user.email=t@e", "-c", "user.name=t",
		"commit", "-q", "--allow-empty", "-m", "y").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id})))
	refetched, err := b.store.Get(ctx, id)
	require.NoError(t, err)
	require.NotEmpty(t, refetched.SHA)

	queued := pendingOf(t, b, steps.Compile)
	require.Len(t, queued, 1)
	var first steps.Payload
	require.NoError(t, json.Unmarshal(queued[0].Payload, &first))
	require.NotNil(t, first.Fetched)
	require.NotEqual(t, refetched.SHA, first.Fetched.SHA, "the first try saw the branch's older head")
	require.NoError(t, b.runner.handle(ctx, asynq.NewTask(queued[0].Type, queued[0].Payload)))
	r, err = b.store.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, refetched.SHA, r.SHA)
	log, err := os.ReadFile(b.runner.Layout.LogPath(id, "compile"))
	require.NoError(t, err)
	require.Equal(t, refetched.SHA+"\n", string(log), "the worktree holds the refetched commit")
}

// A gate's task, as the step before queues it, carries its pipeline's
// tier: the gate is recorded running, in the run and in its version's
// tier gates, by its phase write, before its command ends.
func TestGateRecordedRunningByItsPhaseWrite(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	release := filepath.Join(t.TempDir(), "release")
	b.pipeline.Gates = []pipeline.Gate{{Kind: "unit", Timeout: time.Minute,
		Run: `while [ ! -e "` + release + `" ]; do sleep 0.01; done`}}
	ctx := context.Background()
	id := newRun(t, b)
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id})))
	compiles := pendingOf(t, b, steps.Compile)
	require.Len(t, compiles, 1)
	require.NoError(t, b.runner.handle(ctx, asynq.NewTask(compiles[0].Type, compiles[0].Payload)))
	gates := pendingOf(t, b, steps.Gate)
	require.Len(t, gates, 1)
	r, err := b.store.Get(ctx, id)
	require.NoError(t, err)
	require.NotEmpty(t, r.Version)

	done := make(chan error, 1)
	go func() { done <- b.runner.handle(ctx, asynq.NewTask(gates[0].Type, gates[0].Payload)) }()
	require.Eventually(t, func() bool {
		tier, err := b.store.TierGates(ctx, "host", r.Version)
		return err == nil && len(tier) == 1 && tier[0].Status == vocab.GateRunning && tier[0].RunID == id
	}, 10*time.Second, 10*time.Millisecond, "the tier's gates show the gate running")
	r, err = b.store.Get(ctx, id)
	require.NoError(t, err)
	require.Len(t, r.Gates, 1)
	require.Equal(t, vocab.GateRunning, r.Gates[0].Status)
	require.Equal(t, fmt.Sprintf("%d/gate-unit.log", id), r.Gates[0].LogRef)
	require.NoError(t, os.WriteFile(release, nil, 0o600))
	require.NoError(t, <-done)
	r, err = b.store.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, vocab.ResultPassed, r.Result)
	require.Equal(t, vocab.GatePassed, r.Gates[0].Status)
}

// A phase redelivered after it already succeeded (lease lost, worker
// killed after the enqueue) enqueues its successor once, not twice.
func TestRedeliveredPhaseEnqueuesNextOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	ctx := context.Background()
	id := newRun(t, b)
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id})))
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id})))
	compiles := pendingOf(t, b, steps.Compile)
	require.Len(t, compiles, 1)
	require.Equal(t, "app:1:compile", compiles[0].ID)

	require.NoError(t, b.runner.handle(ctx, task(steps.Compile, steps.Payload{RunID: id})))
	require.NoError(t, b.runner.handle(ctx, task(steps.Gate, steps.Payload{RunID: id, Gate: "unit"})))
	require.NoError(t, b.runner.handle(ctx, task(steps.Gate, steps.Payload{RunID: id, Gate: "unit"})))
	gates := pendingOf(t, b, steps.Gate)
	require.Len(t, gates, 2, "gate 0 (enqueued by compile) and gate 1, each once")
	r, err := b.store.Get(ctx, id)
	require.NoError(t, err)
	require.Len(t, r.Gates, 1)
	g := r.Gates[0]
	require.False(t, g.StartedAt.IsZero() || g.FinishedAt.Before(g.StartedAt), "the gate is timed: %+v", g)
	g.StartedAt, g.FinishedAt = time.Time{}, time.Time{}
	require.Equal(t, vocab.Gate{Kind: "unit", Status: vocab.GatePassed, LogRef: "1/gate-unit.log", RunID: id}, g)

	// A late compile after gating began is ignored: the run never moves back.
	require.NoError(t, b.runner.handle(ctx, task(steps.Compile, steps.Payload{RunID: id})))
	r, err = b.store.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, vocab.PhaseGating, r.Phase)

	require.NoError(t, b.runner.handle(ctx, task(steps.Gate, steps.Payload{RunID: id, Gate: "smoke"})))
	r, err = b.store.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, vocab.ResultPassed, r.Result)
	require.NoDirExists(t, b.runner.Layout.Worktree(id), "a settled run's worktree is removed")
}

func TestPhaseOfFinishedRunEndsQuietly(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	ctx := context.Background()
	id := newRun(t, b)
	_, err := b.store.Abort(ctx, id, vocab.SummaryCanceled)
	require.NoError(t, err)
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id})))
	require.Empty(t, pendingOf(t, b, steps.Compile))
	require.NoDirExists(t, b.runner.Layout.Worktree(id), "nothing was fetched")
}

func TestPoisonTasksSkipRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	ctx := context.Background()
	for _, tk := range []*asynq.Task{
		asynq.NewTask(steps.Fetch.Type, []byte("{")),
		asynq.NewTask(steps.Fetch.Type, []byte(`{"run_id": 0}`)),
		task(steps.Gate, steps.Payload{RunID: 1, Gate: "nope"}),
		task(steps.Gate, steps.Payload{RunID: 1, LegacyGate: 7}),
		task(steps.Fetch, steps.Payload{RunID: 999}), // no such run
		rawTask("sando:bogus", steps.Payload{RunID: 1}),
	} {
		err := b.runner.handle(ctx, tk)
		require.ErrorIs(t, err, asynq.SkipRetry, "%s %s", tk.Type(), tk.Payload())
	}
}

func TestCompileFailureSettlesWithoutRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, "echo 'main.c:3:5: error: expected ; before }' >&2; exit 1")
	ctx := context.Background()
	id := newRun(t, b)
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id})))
	// A red build is the step's answer, not its failure: the task completes.
	require.NoError(t, b.runner.handle(ctx, task(steps.Compile, steps.Payload{RunID: id})))
	r, err := b.store.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, vocab.ResultFailed, r.Result)
	require.Equal(t, "main.c:3:5: error: expected ; before }", r.FailureSummary)
	require.Empty(t, pendingOf(t, b, steps.Gate))
}

// An infrastructure failure is retried; only the last retry fails the run,
// with a summary naming the phase.
func TestLastRetryFailsRun(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	ctx := context.Background()
	b.pipeline.Repo = filepath.Join(t.TempDir(), "gone")
	id := newRun(t, b)
	err := b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id}))
	require.Error(t, err)
	require.NotErrorIs(t, err, asynq.SkipRetry, "an unreachable repository is retried")

	tk := task(steps.Fetch, steps.Payload{RunID: id})
	b.runner.giveUpIfLast(ctx, tk, err, 2, 5)
	r, gerr := b.store.Get(ctx, id)
	require.NoError(t, gerr)
	require.Equal(t, vocab.ResultBuilding, r.Result, "retries remain")

	b.runner.giveUpIfLast(ctx, tk, err, 5, 5)
	r, gerr = b.store.Get(ctx, id)
	require.NoError(t, gerr)
	require.Equal(t, vocab.ResultFailed, r.Result)
	require.True(t, strings.HasPrefix(r.FailureSummary, "fetching: fetch: git fetch:"), r.FailureSummary)
	require.True(t, strings.HasSuffix(r.FailureSummary, "(gave up after 6 attempts)"), r.FailureSummary)
}

// The watcher stops a running build when the run is settled elsewhere,
// even if asynq's cancel message never arrives.
func TestWatcherStopsBuildOfSettledRun(t *testing.T) {
	t.Parallel()
	b := setup(t, "sleep 60")
	ctx := context.Background()
	id := newRun(t, b)
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id})))
	done := make(chan error, 1)
	go func() { done <- b.runner.handle(ctx, task(steps.Compile, steps.Payload{RunID: id})) }()
	require.Eventually(t, func() bool {
		r, err := b.store.Get(ctx, id)
		return err == nil && r.Phase == vocab.PhaseCompiling
	}, 5*time.Second, 10*time.Millisecond)
	_, err := b.store.Abort(ctx, id, vocab.SummarySuperseded)
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err, "a build stopped by its own watcher completes the task")
	case <-time.After(10 * time.Second):
		t.Fatal("build kept running after its run was aborted")
	}
}

func TestBaseEnvDropsSecrets(t *testing.T) {
	t.Parallel()
	env := BaseEnv([]string{"PATH=/bin", "HOME=/root", "LC_ALL=C", "REDIS_URL=redis://:pw@x", "SANDO_TOKEN=t", "AWS_SECRET_ACCESS_KEY=k"})
	require.Equal(t, []string{"PATH=/bin", "HOME=/root", "LC_ALL=C"}, env)
	full := phaseEnv(env, map[string]string{"SANDO_RUN_ID": "evil", "CGO_ENABLED": "0"}, map[string]string{"SANDO_RUN_ID": "7"})
	require.Equal(t, "SANDO_RUN_ID=7", full[len(full)-1], "run variables come last and win")
	require.Contains(t, full, "CGO_ENABLED=0")
}

// The janitor fails a run whose phase stopped making progress, naming the
// phase, and leaves runs that are alive alone.
func TestJanitorFailsStalledRun(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	ctx := context.Background()
	stalled := newRun(t, b)
	alive := newRun(t, b)
	_, _, err := b.store.SetPhase(ctx, stalled, vocab.PhaseCompiling, "t", runstore.Where{}, "")
	require.NoError(t, err)
	_, _, err = b.store.SetPhase(ctx, alive, vocab.PhaseCompiling, "t", runstore.Where{}, "")
	require.NoError(t, err)
	// The stalled run's last sign of life is older than compile's deadline.
	old := time.Now().Add(-Deadline(b.pipeline, vocab.PhaseCompiling) - time.Minute).UTC()
	require.NoError(t, b.runner.Redis.HSet(ctx, b.store.Keys().Run(stalled), "progress_at", old.Format("2006-01-02T15:04:05.000Z07:00")).Err())

	require.NoError(t, b.runner.sweep(ctx, nil))
	r, err := b.store.Get(ctx, stalled)
	require.NoError(t, err)
	require.Equal(t, vocab.ResultFailed, r.Result)
	require.Regexp(t, `^compiling: no progress for 4m\d+s \(worker lost\?\)$`, r.FailureSummary)
	r, err = b.store.Get(ctx, alive)
	require.NoError(t, err)
	require.Equal(t, vocab.ResultBuilding, r.Result)
}

func TestJanitorOncePerWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	for range 3 { // three workers offering the same window
		require.NoError(t, EnqueueJanitor(ctx, b.runner.Queue, now))
	}
	require.Len(t, pending(t, b, "system"), 1)
	require.NoError(t, EnqueueJanitor(ctx, b.runner.Queue, now.Add(JanitorInterval)))
	require.Len(t, pending(t, b, "system"), 2, "the next window sweeps again")
}

func TestPruneRemovesRunsAndFiles(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	ctx := context.Background()
	b.runner.Retention = Retention{Age: time.Nanosecond, Runs: 1}
	var ids []int64
	for range 3 {
		id := newRun(t, b)
		require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id})))
		require.NoError(t, b.runner.handle(ctx, task(steps.Compile, steps.Payload{RunID: id})))
		_, err := b.store.Fail(ctx, id, "x")
		require.NoError(t, err)
		require.DirExists(t, b.runner.Layout.LogDir(id))
		ids = append(ids, id)
	}
	// A minute on, all three are older than the retention age (1 ns).
	b.runner.Now = func() time.Time { return time.Now().Add(time.Minute) }
	require.NoError(t, b.runner.prune(ctx, nil))
	for _, id := range ids[:2] {
		_, err := b.store.Get(ctx, id)
		require.ErrorIs(t, err, runstore.ErrNotFound)
		require.NoDirExists(t, b.runner.Layout.LogDir(id))
		_, err = logstore.Open(ctx, b.runner.Redis, b.store.Keys().Log(id, "compile"))
		require.ErrorIs(t, err, logstore.ErrNotFound, "the run's logs leave Redis with it")
	}
	l, err := logstore.Open(ctx, b.runner.Redis, b.store.Keys().Log(ids[2], "compile"))
	require.NoError(t, err, "a kept run keeps its logs in Redis")
	require.True(t, l.Done)
	_, err = b.store.Get(ctx, ids[2])
	require.NoError(t, err, "the newest run is kept")
	require.DirExists(t, b.runner.Layout.LogDir(ids[2]))
}

// A worker gone for good (no beat from its data dir, its step silent) has
// its run failed within two sweeps, saying so; a run whose disk has a live
// worker is left to asynq's recovery; a run that moved between the sweeps
// (as every run does once Redis is back after an outage) is left alone.
func TestJanitorFailsRunOfLostWorker(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	ctx := context.Background()
	now := time.Now()
	b.runner.Now = func() time.Time { return now }
	progressAgo := func(id int64, d time.Duration) {
		require.NoError(t, b.runner.Redis.HSet(ctx, b.store.Keys().Run(id), "progress_at",
			now.Add(-d).UTC().Format("2006-01-02T15:04:05.000Z07:00")).Err())
	}
	atDisk := func(disk string) int64 {
		id := newRun(t, b)
		_, _, err := b.store.SetPhase(ctx, id, vocab.PhaseCompiling, "t", runstore.Where{Disk: disk, Worker: "h:/" + disk}, "")
		require.NoError(t, err)
		progressAgo(id, time.Minute)
		return id
	}
	lost, shared, moved := atDisk("gone"), atDisk("alive"), atDisk("gone")
	fetching := newRun(t, b) // on the fleet's fetch queue: asynq hands it to any live worker
	_, _, err := b.store.SetPhase(ctx, fetching, vocab.PhaseFetching, "t", runstore.Where{Disk: "gone", Worker: "h:/gone"}, "")
	require.NoError(t, err)
	progressAgo(fetching, time.Minute)
	require.NoError(t, b.runner.Fleet.Beat(ctx, "gone", now.Add(-2*time.Minute)))
	require.NoError(t, b.runner.Fleet.Beat(ctx, "alive", now.Add(-time.Second)))
	result := func(id int64) *vocab.Run {
		r, err := b.store.Get(ctx, id)
		require.NoError(t, err)
		return r
	}

	require.NoError(t, b.runner.sweep(ctx, nil))
	for _, id := range []int64{lost, shared, moved} {
		require.Equal(t, vocab.ResultBuilding, result(id).Result, "one silent sweep is not enough: run %d", id)
	}
	now = now.Add(JanitorInterval)
	progressAgo(lost, time.Minute+JanitorInterval) // unchanged since the last sweep
	progressAgo(shared, time.Minute+JanitorInterval)
	progressAgo(moved, time.Minute) // it made progress between the sweeps
	progressAgo(fetching, time.Minute+JanitorInterval)
	require.NoError(t, b.runner.sweep(ctx, nil))
	r := result(lost)
	require.Equal(t, vocab.ResultFailed, r.Result)
	require.Equal(t, "compiling: worker lost (h:/gone, silent for 1m30s); rebuild to run it elsewhere", r.FailureSummary)
	require.Equal(t, vocab.ResultBuilding, result(shared).Result, "a live worker on its disk recovers it")
	require.Equal(t, vocab.ResultBuilding, result(moved).Result, "it moved: not lost")
	require.Equal(t, vocab.ResultBuilding, result(fetching).Result, "a fetch is not bound to its disk")
}

// Every worker tidies its own data dir: a pruned run's files go, a
// finished run's worktree goes, a building run's stays.
func TestTidy(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	ctx := context.Background()
	building, finished := newRun(t, b), newRun(t, b)
	_, err := b.store.Pass(ctx, finished)
	require.NoError(t, err)
	const pruned = 999 // no run of that id: retention took it
	l := b.runner.Layout
	for _, id := range []int64{building, finished, pruned} {
		for _, dir := range []string{l.Worktree(id), l.LogDir(id), l.StageDir(id)} {
			require.NoError(t, os.MkdirAll(dir, 0o755))
		}
	}
	require.NoError(t, b.runner.Tidy(ctx))
	require.DirExists(t, l.Worktree(building))
	require.NoDirExists(t, l.Worktree(finished))
	require.DirExists(t, l.LogDir(finished), "a kept run keeps its logs")
	for _, dir := range []string{l.Worktree(pruned), l.LogDir(pruned), l.StageDir(pruned)} {
		require.NoDirExists(t, dir)
	}
}
