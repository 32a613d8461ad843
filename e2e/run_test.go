package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A small Go project: a real compiler, real tests, real output.
var goProject = map[string]string{
	"go.mod":        "module hello\n\ngo 1.21\n",
	"VERSION":       "0.10.2\n",
	"main.go":       "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(greet()) }\n\nfunc greet() string { return \"hello\" }\n",
	"hello_test.go": "package main\n\nimport \"testing\"\n\nfunc TestGreet(t *testing.T) {\n\tif greet() != \"hello\" {\n\t\tt.Fatal(\"bad greeting\")\n\t}\n}\n",
	"smoke.sh":      "#!/bin/sh\nout=$(\"$SANDO_STAGE_DIR/hello\")\n[ \"$out\" = hello ] || { echo \"smoke: got $out\"; exit 1; }\necho smoke ok\n",
}

const goPipeline = `branch: main
version_file: VERSION
build: go build -o hello .
stage: cp hello "$SANDO_STAGE_DIR/"
gates:
  - kind: unit
    run: go test ./...
    timeout: 2m
  - kind: smoke
    run: ./smoke.sh
`

func TestGreenRun(t *testing.T) {
	t.Parallel()
	proj := newProject(t, goProject)
	sha := proj.git("rev-parse", "HEAD")
	s := startStack(t, proj, stackOpts{pipeline: goPipeline})

	id := s.rebuild("")
	m := s.waitTerminal(id)
	require.Equal(t, "passed", m["result"], "view: %v", m)
	require.Equal(t, "done", m["phase"])
	require.Equal(t, sha, m["sha"], "the full 40-hex sha once fetched")
	require.Equal(t, "0.10.2", m["version"])
	require.Nil(t, m["failure_summary"])
	require.NotNil(t, m["finished_at"])
	require.Equal(t, map[string]any{"smoke": "passed", "unit": "passed"}, gatesOf(m))

	// Logs of every gate are served, whole and by range.
	for _, g := range m["gates"].([]any) {
		ref := g.(map[string]any)["log_ref"].(string)
		require.Equal(t, fmt.Sprintf("%d/gate-%s.log", id, g.(map[string]any)["kind"]), ref)
		r := s.get("/logs/" + ref)
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "text/plain; charset=utf-8", r.header.Get("Content-Type"))
	}
	r := s.get(fmt.Sprintf("/logs/%d/gate-smoke.log", id))
	require.Equal(t, "smoke ok\n", string(r.body))
	r = s.do("GET", fmt.Sprintf("/logs/%d/gate-smoke.log", id), nil, map[string]string{"Range": "bytes=0-4"})
	require.Equal(t, http.StatusPartialContent, r.status)
	require.Equal(t, "smoke", string(r.body))
	r = s.do("GET", fmt.Sprintf("/logs/%d/gate-smoke.log", id), nil, map[string]string{"Range": "bytes=100-"})
	require.Equal(t, http.StatusRequestedRangeNotSatisfiable, r.status)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), "a bad Range is a problem like any error")
	require.Equal(t, "bytes */9", r.header.Get("Content-Range"))
	require.Contains(t, string(r.body), "past the end of the log (9 bytes)")
	r = s.get(fmt.Sprintf("/logs/%d/gate-smoke.log?follow=1", id))
	require.Equal(t, "smoke ok\n", string(r.body), "following a finished step returns at once")

	st := s.get("/state").json(t)
	dep := st["deployed"].(map[string]any)
	require.Equal(t, float64(id), dep["run_id"])
	require.Equal(t, "0.10.2", dep["version"])
	require.Len(t, dep["gates"], 2)
	build := st["build"].(map[string]any)
	require.Equal(t, float64(id), build["run_id"])
	require.Equal(t, "passed", build["result"])
	require.GreaterOrEqual(t, build["elapsed_s"], float64(0))

	// A specific sha (abbreviated) of an older commit builds that commit.
	newer := proj.commit(map[string]string{"VERSION": "0.11.0\n"}, "bump")
	id2 := s.rebuild(`{"sha": "` + sha[:10] + `"}`)
	m = s.waitTerminal(id2)
	require.Equal(t, "passed", m["result"], "view: %v", m)
	require.Equal(t, sha, m["sha"])
	require.Equal(t, "0.10.2", m["version"])
	id3 := s.rebuild(`{"ref": "main"}`)
	m = s.waitTerminal(id3)
	require.Equal(t, newer, m["sha"])
	require.Equal(t, "0.11.0", m["version"])

	list := s.get("/runs?limit=2").json(t)
	require.Len(t, list["runs"], 2)
	require.Equal(t, float64(id3), list["runs"].([]any)[0].(map[string]any)["run_id"])
	require.Equal(t, fmt.Sprintf("/runs?before=%d&limit=2", id2), list["next"])
	list = s.get(list["next"].(string)).json(t)
	require.Len(t, list["runs"], 1)
	require.Nil(t, list["next"])
}

func TestCompileErrorIsTheSummary(t *testing.T) {
	t.Parallel()
	files := map[string]string{}
	for k, v := range goProject {
		files[k] = v
	}
	files["main.go"] = "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(x)\n}\n"
	proj := newProject(t, files)
	s := startStack(t, proj, stackOpts{pipeline: goPipeline})

	id := s.rebuild("")
	m := s.waitTerminal(id)
	require.Equal(t, "failed", m["result"])
	require.Regexp(t, regexp.MustCompile(`^\./main\.go:6:14: undefined: x$`), m["failure_summary"])
	require.Empty(t, m["gates"], "gating never started")
	r := s.get(fmt.Sprintf("/logs/%d/compile.log", id))
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), "undefined: x")
	st := s.get("/state").json(t)
	require.Nil(t, st["deployed"], "no run ever passed")
	require.Equal(t, "failed", st["build"].(map[string]any)["result"])
}

func TestRedGateBlocksLaterGates(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{pipeline: `build: echo built
gates:
  - kind: unit
    run: echo all good
  - kind: smoke
    run: |
      echo "checking"; echo "FAIL: homepage returned 502"; exit 1
  - kind: e2e
    run: echo never
`})
	id := s.rebuild("")
	m := s.waitTerminal(id)
	require.Equal(t, "failed", m["result"])
	require.Equal(t, "smoke: FAIL: homepage returned 502", m["failure_summary"])
	require.Equal(t, map[string]any{"unit": "passed", "smoke": "failed", "e2e": "blocked"}, gatesOf(m))
	_, err := os.Stat(filepath.Join(s.dataDir, "logs", strconv.Itoa(id), "gate-e2e.log"))
	require.True(t, os.IsNotExist(err), "a blocked gate never runs")
}

// slowFirstRun builds slowly for run 1 only, leaving its grandchild's pid
// where the test can see it.
func slowFirstRun(pidFile string) string {
	return `build: |
  if [ "$SANDO_RUN_ID" = 1 ]; then sleep 120 & echo $! > ` + pidFile + `; wait; fi
gates:
  - kind: unit
    run: "true"
`
}

func waitPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, 30*time.Second, 20*time.Millisecond, "the build never started")
	return pid
}

func requireGone(t *testing.T, pid int) {
	t.Helper()
	require.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil || isZombie(pid) },
		10*time.Second, 50*time.Millisecond, "build process %d still alive", pid)
}

// isZombie: a killed process not yet reaped by init is as good as gone.
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

func TestSupersedeKillsOlderBuild(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := startStack(t, proj, stackOpts{pipeline: slowFirstRun(pidFile)})

	first := s.rebuild("")
	pid := waitPID(t, pidFile)
	s.waitRun(first, 10*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })

	r := s.do("POST", "/rebuild", strings.NewReader(`{"ref":"main"}`), nil)
	require.Equal(t, http.StatusAccepted, r.status)
	body := r.json(t)
	require.Equal(t, []any{float64(first)}, body["superseded"])

	m := s.get(fmt.Sprintf("/runs/%d", first)).json(t)
	require.Equal(t, "aborted", m["result"])
	require.Equal(t, "superseded by a newer /rebuild", m["failure_summary"])
	requireGone(t, pid)

	second := int(body["run_id"].(float64))
	require.Equal(t, "passed", s.waitTerminal(second)["result"])
	m = s.get(fmt.Sprintf("/runs/%d", first)).json(t)
	require.Equal(t, "aborted", m["result"], "the superseded run stays aborted")
}

func TestCancel(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := startStack(t, proj, stackOpts{pipeline: slowFirstRun(pidFile)})
	id := s.rebuild("")
	pid := waitPID(t, pidFile)

	r := s.do("POST", fmt.Sprintf("/runs/%d/cancel", id), nil, nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	m := r.json(t)
	require.Equal(t, "aborted", m["result"])
	require.Equal(t, "canceled", m["failure_summary"])
	requireGone(t, pid)

	r = s.do("POST", fmt.Sprintf("/runs/%d/cancel", id), nil, nil)
	require.Equal(t, http.StatusConflict, r.status)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
	require.Equal(t, "aborted", s.get(fmt.Sprintf("/runs/%d", id)).json(t)["result"], "stays aborted after the retry")
}

// Following the log of a running gate streams its output as it is written
// and ends when the gate does: the change of the run wakes the follower.
func TestFollowRunningGateLog(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{pipeline: `build: echo built
gates:
  - kind: unit
    run: echo one; sleep 2; echo two
`})
	id := s.rebuild("")
	s.waitRun(id, 20*time.Second, "unit gate running", func(m map[string]any) bool {
		g, ok := gatesOf(m)["unit"]
		return ok && g == nil
	})
	began := time.Now()
	r := s.get(fmt.Sprintf("/logs/%d/gate-unit.log?follow=1", id))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "one\ntwo\n", string(r.body), "the whole output, then the end of the stream")
	require.Less(t, time.Since(began), 10*time.Second, "the stream ended with the gate")
	require.Equal(t, "passed", s.waitTerminal(id)["result"])
}
