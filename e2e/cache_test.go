package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/redistest"
)

// cacheBuild is a compile step that reports what a build sees of its
// cache slot: the run's cache dir (also through env: expansion), a
// counter kept in the cache, the mtime of a file no commit changes, and
// whether a file the last build left in the worktree survived.
const cacheBuild = `
env:
  MY_TARGET: $SANDO_CACHE_DIR/target
  LITERAL: "$HOME-and-${SANDO_NOPE}"
build: |
  test "$MY_TARGET" = "$SANDO_CACHE_DIR/target" || { echo "env not expanded: $MY_TARGET"; exit 1; }
  echo "literal=$LITERAL"
  n=$(cat "$SANDO_CACHE_DIR/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$SANDO_CACHE_DIR/count"
  echo "count=$n"
  echo "mtime=$(stat -c %y stable.txt)"
  if test -e left-behind; then echo "left-behind survived"; fi
  touch left-behind
gates:
  - kind: unit
    run: "true"
`

// compileLog is the compile log of a finished run.
func (s *stack) compileLog(id int) string {
	s.t.Helper()
	r := s.get(fmt.Sprintf("/logs/%d/compile.log", id))
	require.Equal(s.t, http.StatusOK, r.status, "body: %s", r.body)
	return string(r.body)
}

func logValue(t *testing.T, log, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + key + `=(.*)$`).FindStringSubmatch(log)
	require.NotNil(t, m, "no %s= in the log:\n%s", key, log)
	return m[1]
}

// A second run of a pipeline sees what the first left in SANDO_CACHE_DIR,
// builds in the same worktree checked out in place (a file no commit
// changed keeps its mtime) with what the first build left there removed;
// a cache:clear, which reaches the worker through Redis alone, makes the
// next run start from an empty cache. A clear of an unknown pipeline is 404.
func TestCacheDirWarmAcrossRunsAndCleared(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"stable.txt": "never changes\n", "main.txt": "1\n"})
	s := startStack(t, proj, stackOpts{pipeline: "branch: main\n" + cacheBuild})

	first := s.rebuild("")
	require.Equal(t, "passed", s.waitTerminal(first)["result"])
	log1 := s.compileLog(first)
	require.Equal(t, "1", logValue(t, log1, "count"))
	require.Contains(t, log1, "literal=$HOME-and-${SANDO_NOPE}", "only the run's own SANDO_ variables are expanded")

	// By sha, as CI asks: a commit the git cache lacks yet.
	sha := proj.commit(map[string]string{"main.txt": "2\n"}, "one-line change")
	second := s.rebuild(`{"sha": "` + sha + `"}`)
	require.Equal(t, "passed", s.waitTerminal(second)["result"])
	log2 := s.compileLog(second)
	require.Equal(t, "2", logValue(t, log2, "count"), "the second run sees the first one's cache")
	require.Equal(t, logValue(t, log1, "mtime"), logValue(t, log2, "mtime"), "an unchanged file keeps its mtime")
	require.NotContains(t, log2, "left-behind survived", "untracked files are cleaned")

	r := s.do("POST", "/pipelines/default/cache:clear", nil, nil)
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	body := r.json(t)
	require.Equal(t, "default", body["pipeline"])
	require.EqualValues(t, 1, body["generation"])

	third := s.rebuild("")
	require.Equal(t, "passed", s.waitTerminal(third)["result"])
	require.Equal(t, "1", logValue(t, s.compileLog(third), "count"), "the clear wiped the cache")

	r = s.do("POST", "/pipelines/nope/cache:clear", nil, nil)
	require.Equal(t, http.StatusNotFound, r.status, "body: %s", r.body)
	require.Contains(t, string(r.body), `no pipeline \"nope\"`)
}

// SANDO_CACHE_DIR outlives its worker: one stopped (SIGTERM) or killed
// (SIGKILL) between runs and started again on the same data dir gives the
// next run the cache the last one left.
func TestCacheDirKeptAcrossWorkerRestarts(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"stable.txt": "never changes\n", "main.txt": "1\n"})
	f := startFleet(t, proj, redistest.Start(t).URL(), "branch: main\n"+cacheBuild)
	count := func(want string) {
		t.Helper()
		id := f.rebuild("")
		require.Equal(t, "passed", f.waitTerminal(id)["result"])
		require.Equal(t, want, logValue(t, f.compileLog(id), "count"))
	}
	w := f.startWorker("worker-1")
	count("1")
	require.NoError(t, w.Cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, w.waitExit(10*time.Second), "a worker exits 0 on SIGTERM")
	w = f.startWorker("worker-2")
	count("2")
	w.kill()
	f.startWorker("worker-3")
	count("3")
}

// reuse: tree: a rebuild of a tree and definition that passed settles
// passed without building, keeping its own sha, naming the earlier run in
// reused_from, with its gates (log refs pointing at its logs) and version;
// /state's deployed follows it. Without reuse: tree the same rebuild builds.
func TestReuseTree(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.2.3\n"})
	const gates = "gates:\n  - kind: unit\n    run: echo unit ran\n"
	s := startStack(t, proj, stackOpts{pipelines: map[string]string{
		"reused.yaml": "branch: main\nreuse: tree\nbuild: echo built\n" + gates,
		"plain.yaml":  "branch: main\nbuild: echo built\n" + gates,
	}})

	built := s.rebuildOf("reused")
	view := s.waitTerminal(built)
	require.Equal(t, "passed", view["result"])
	require.Nil(t, view["reused_from"])

	// A new commit of the same tree: reused.
	sha := proj.commit(nil, "empty commit: same tree")
	reused := s.rebuildOf("reused")
	view = s.waitTerminal(reused)
	require.Equal(t, "passed", view["result"], "view: %v", view)
	require.EqualValues(t, built, view["reused_from"])
	require.Equal(t, sha, view["sha"], "the reused run keeps its own sha")
	require.Equal(t, "1.2.3", view["version"])
	gate := view["gates"].([]any)[0].(map[string]any)
	require.Equal(t, "passed", gate["status"])
	require.Equal(t, fmt.Sprintf("%d/gate-unit.log", built), gate["log_ref"], "the gates are the earlier run's")
	for _, p := range view["phases"].([]any) {
		require.NotEqual(t, "compiling", p.(map[string]any)["phase"], "nothing was built")
	}
	state := s.get("/state?pipeline=reused").json(t)
	require.EqualValues(t, reused, state["deployed"].(map[string]any)["run_id"])

	// A changed tree builds again.
	proj.commit(map[string]string{"VERSION": "1.2.4\n"}, "bump")
	changed := s.rebuildOf("reused")
	view = s.waitTerminal(changed)
	require.Equal(t, "passed", view["result"])
	require.Nil(t, view["reused_from"])

	// Off by default: the same tree twice is built twice.
	first := s.rebuildOf("plain")
	require.Equal(t, "passed", s.waitTerminal(first)["result"])
	again := s.rebuildOf("plain")
	view = s.waitTerminal(again)
	require.Equal(t, "passed", view["result"])
	require.Nil(t, view["reused_from"])
	require.Contains(t, s.compileLog(again), "built")
}

// Runs of one pipeline building at once on two worker processes sharing
// a data dir never share a cache dir: each build claims its cache with a
// mkdir that fails if another build holds it.
func TestConcurrentRunsNeverShareACache(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{workers: 2, noSupersede: true, pipeline: `branch: main
build: |
  mkdir "$SANDO_CACHE_DIR/busy" || { echo "cache shared with another run"; exit 1; }
  echo "$SANDO_CACHE_DIR"
  sleep 0.5
  rmdir "$SANDO_CACHE_DIR/busy"
gates:
  - kind: unit
    run: "true"
`})
	ids := make([]int, 6)
	for i := range ids {
		ids[i] = s.rebuild("")
	}
	dirs := map[string]bool{}
	for _, id := range ids {
		v := s.waitTerminal(id)
		require.Equal(t, "passed", v["result"], "run %d: %v", id, v["failure_summary"])
		dirs[strings.TrimSpace(s.compileLog(id))] = true
	}
	require.Greater(t, len(dirs), 1, "runs at once got slots of their own")
	require.LessOrEqual(t, len(dirs), len(ids))
}

func (s *stack) rebuildOf(pipeline string) int {
	s.t.Helper()
	return s.rebuild(`{"pipeline": "` + strings.ReplaceAll(pipeline, `"`, "") + `"}`)
}
