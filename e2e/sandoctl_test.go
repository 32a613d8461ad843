package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Black-box tests of cmd/sandoctl: the built binary against real stacks,
// judged by its exit code and output.

// ctlResult is one finished sandoctl process.
type ctlResult struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func (r ctlResult) String() string {
	return fmt.Sprintf("exit %d after %s\nstdout:\n%s\nstderr:\n%s", r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// ctlEnv is the environment for sandoctl: the test's own minus anything
// that would change its behaviour (a CI job's ids, a token), plus extra.
func ctlEnv(base string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SANDO_") || strings.HasPrefix(name, "GITHUB_") || strings.HasPrefix(name, "CI_") {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "SANDO_URL="+base), extra...)
}

// ctlStart starts sandoctl; wait returns how it ended. It is killed if
// it runs past 90s.
func ctlStart(t *testing.T, env []string, args ...string) (wait func() ctlResult) {
	t.Helper()
	bin := buildCmd(t, "cmd/sandoctl")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	require.NoError(t, cmd.Start())
	done := make(chan ctlResult, 1)
	go func() {
		defer cancel()
		err := cmd.Wait()
		r := ctlResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
		if err != nil && ctx.Err() != nil {
			r.code = -1 // killed
		}
		done <- r
	}()
	t.Cleanup(func() { cancel(); <-done })
	var res *ctlResult
	return func() ctlResult {
		if res == nil {
			r := <-done
			done <- r // for the cleanup
			res = &r
		}
		return *res
	}
}

func ctl(t *testing.T, env []string, args ...string) ctlResult {
	t.Helper()
	return ctlStart(t, env, args...)()
}

const ctlGreenPipeline = `build: "true"
gates:
  - kind: unit
    run: echo ok
`

func TestSandoctlRebuildWaitExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		pipeline string
		code     int
		stdout   []string
	}{
		{"green", ctlGreenPipeline, 0, []string{"run 1: gate unit passed\n", "run 1 passed (version 1.2.3)\n"}},
		{"red gate", `build: "true"
gates:
  - kind: unit
    run: |
      echo "FAIL: broken"; exit 1
  - kind: smoke
    run: echo never
`, 1, []string{"run 1: gate unit failed\n", "run 1 failed: unit: FAIL: broken\n"}},
		{"compile error", `build: |
  echo "main.go:12:2: undefined: x" >&2; exit 2
`, 1, []string{"run 1 failed: main.go:12:2: undefined: x\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			proj := newProject(t, map[string]string{"VERSION": "1.2.3\n"})
			s := startStack(t, proj, stackOpts{pipeline: tc.pipeline})
			r := ctl(t, ctlEnv(s.base), "rebuild", "--wait", "--timeout", "60s")
			require.Equal(t, tc.code, r.code, "%s", r)
			require.True(t, strings.HasPrefix(r.stdout, "run 1: "+s.base+"/runs/1\n"), "%s", r)
			for _, want := range tc.stdout {
				require.Contains(t, r.stdout, want, "%s", r)
			}
			require.Empty(t, r.stderr)
			require.NotContains(t, r.stdout, "\r", "no progress line when stdout is not a terminal")
			// watch on the finished run says the same, at once.
			again := ctl(t, ctlEnv(s.base), "watch", "1")
			require.Equal(t, tc.code, again.code, "%s", again)
			require.Contains(t, again.stdout, tc.stdout[len(tc.stdout)-1])
			require.Less(t, again.took, 10*time.Second)
		})
	}
}

func TestSandoctlStatusLogsList(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.2.3\n"})
	s := startStack(t, proj, stackOpts{pipeline: ctlGreenPipeline})
	env := ctlEnv(s.base)

	r := ctl(t, env, "rebuild")
	require.Equal(t, 0, r.code, "%s", r)
	require.Equal(t, "1\n", r.stdout, "the id alone on stdout")
	require.Equal(t, "run 1: "+s.base+"/runs/1\n", r.stderr)
	require.Equal(t, "passed", s.waitTerminal(1)["result"])

	r = ctl(t, env, "status", "1")
	require.Equal(t, 0, r.code, "%s", r)
	for _, want := range []string{"run       1\n", "result    passed\n", "phase     done\n", "version   1.2.3\n", "gate unit  passed  1/gate-unit.log\n"} {
		require.Contains(t, r.stdout, want, "%s", r)
	}
	r = ctl(t, env, "status", "--json", "1")
	require.Equal(t, 0, r.code, "%s", r)
	var view map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &view), "%s", r)
	require.Equal(t, "passed", view["result"])
	r = ctl(t, env, "status")
	require.Equal(t, 0, r.code, "%s", r)
	require.Contains(t, r.stdout, "deployed  run 1, version 1.2.3", "%s", r)
	require.Contains(t, r.stdout, "build     run 1, passed, done", "%s", r)
	r = ctl(t, env, "status", "--json")
	require.Equal(t, 0, r.code, "%s", r)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &view), "%s", r)
	require.Contains(t, view, "deployed")

	for _, args := range [][]string{
		{"logs", "1", "gate-unit"}, {"logs", "1/gate-unit.log"}, {"logs", "--follow", "1", "gate-unit"}, {"logs", "1/gate-unit.log", "--follow"},
	} {
		r = ctl(t, env, args...)
		require.Equal(t, 0, r.code, "%v: %s", args, r)
		require.Equal(t, "ok\n", r.stdout, "%v", args)
	}
	r = ctl(t, env, "logs", "1", "unit")
	require.Equal(t, 3, r.code, "%s", r)
	require.Contains(t, r.stderr, "gate-unit", "a hint at the gate log's name")

	r = ctl(t, env, "open", "1")
	require.Equal(t, 0, r.code, "%s", r)
	require.Equal(t, s.base+"/runs/1\n", r.stdout, "the run's page")

	r = ctl(t, env, "list")
	require.Equal(t, 0, r.code, "%s", r)
	require.Contains(t, r.stdout, "RUN  RESULT  PHASE")
	require.Contains(t, r.stdout, "\n1    passed  done ")
}

// A run canceled while it builds: watch exits 2; a --timeout that ends
// first exits 6 and leaves the run building.
func TestSandoctlCanceledRunExits2(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{pipeline: "build: sleep 30\n"})
	env := ctlEnv(s.base)

	id := s.rebuild("")
	watching := ctlStart(t, env, "watch", fmt.Sprint(id), "--timeout", "80s")
	s.waitRun(id, 30*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })

	r := ctl(t, env, "watch", fmt.Sprint(id), "--timeout", "1500ms")
	require.Equal(t, 6, r.code, "%s", r)
	require.Contains(t, r.stderr, "--timeout 1.5s reached: run 1 is still building (compiling)", "%s", r)
	require.Less(t, r.took, 10*time.Second)
	require.Equal(t, "building", s.get(fmt.Sprintf("/runs/%d", id)).json(t)["result"], "a timeout leaves the run alone")

	r = ctl(t, env, "cancel", fmt.Sprint(id))
	require.Equal(t, 0, r.code, "%s", r)
	require.Equal(t, "run 1 aborted: canceled\n", r.stdout)

	w := watching()
	require.Equal(t, 2, w.code, "%s", w)
	require.Contains(t, w.stdout, "run 1: compiling\n", "%s", w)
	require.True(t, strings.HasSuffix(w.stdout, "run 1 aborted: canceled\n"), "%s", w)
	require.Less(t, w.took, 30*time.Second, "the watch ends with the cancel, not with the build")

	r = ctl(t, env, "cancel", fmt.Sprint(id))
	require.Equal(t, 0, r.code, "canceling an aborted run again is fine (a retried CI step): %s", r)

	// A newer rebuild supersedes a building one: aborted too.
	id2 := s.rebuild("")
	watching = ctlStart(t, env, "watch", fmt.Sprint(id2), "--timeout", "80s")
	s.waitRun(id2, 30*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })
	r = ctl(t, env, "rebuild")
	require.Equal(t, 0, r.code, "%s", r)
	require.Contains(t, r.stderr, fmt.Sprintf("run %d superseded", id2))
	w = watching()
	require.Equal(t, 2, w.code, "%s", w)
	require.Contains(t, w.stdout, fmt.Sprintf("run %d aborted: superseded by a newer /rebuild\n", id2))
	r = ctl(t, env, "cancel", strings.TrimSpace(r.stdout))
	require.Equal(t, 0, r.code, "%s", r)
}

func TestSandoctlUsageAndUnknownRunExit3(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{pipeline: ctlGreenPipeline})
	env := ctlEnv(s.base)
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"watch", "4242"}, "run 4242 does not exist"},
		{[]string{"status", "4242"}, "run 4242 does not exist"},
		{[]string{"cancel", "4242"}, "run 4242 does not exist"},
		{[]string{"open", "4242"}, "run 4242 does not exist"},
		{[]string{"logs", "4242", "compile"}, "log 4242/compile.log does not exist"},
		{[]string{}, "Exit codes:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"watch"}, "missing arguments"},
		{[]string{"watch", "1", "2"}, `unexpected argument "2"`},
		{[]string{"watch", "seven"}, `run id "seven" is not a positive integer`},
		{[]string{"watch", "1", "--timeout", "soon"}, "invalid value"},
		{[]string{"rebuild", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"rebuild", "--sha", "abcdef1", "--ref", "main"}, "give --sha or --ref, not both"},
		{[]string{"rebuild", "--sha", "not-hex"}, "400 Bad Request: sha:"},
		{[]string{"logs", "compile"}, "want ID STEP"},
		{[]string{"cache", "clear", "nope"}, `pipeline "nope" does not exist`},
		{[]string{"cache", "wipe", "default"}, "the one cache command is clear"},
	} {
		r := ctl(t, env, tc.args...)
		require.Equal(t, 3, r.code, "%v: %s", tc.args, r)
		require.Contains(t, r.stderr, tc.stderr, "%v: %s", tc.args, r)
		require.Empty(t, r.stdout, "%v: %s", tc.args, r)
	}
	r := ctl(t, ctlEnv("ftp://example.com"), "status")
	require.Equal(t, 3, r.code, "%s", r)
	require.Contains(t, r.stderr, "SANDO_URL")

	r = ctl(t, env, "-h")
	require.Equal(t, 0, r.code, "%s", r)
	for _, want := range []string{"Exit codes:", "SANDO_URL", "SANDO_TOKEN", "GITHUB_RUN_ID", "CI_JOB_ID", "\n  6    --timeout reached"} {
		require.Contains(t, r.stdout, want)
	}
	r = ctl(t, env, "cache", "clear", "default")
	require.Equal(t, 0, r.code, "%s", r)
	require.Contains(t, r.stdout, "pipeline default: caches cleared (generation 1)")

	r = ctl(t, env, "watch", "-h")
	require.Equal(t, 0, r.code, "%s", r)
	require.Contains(t, r.stderr, "usage: sandoctl watch ID [--timeout D]")
}

func TestSandoctlWrongTokenExits4(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{pipeline: ctlGreenPipeline, token: "s3cret"})

	for _, env := range [][]string{ctlEnv(s.base, "SANDO_TOKEN=wr0ng-t0ken"), ctlEnv(s.base)} {
		for _, args := range [][]string{{"rebuild"}, {"rebuild", "--wait"}, {"cancel", "1"}} {
			r := ctl(t, env, args...)
			require.Equal(t, 4, r.code, "%v: %s", args, r)
			require.Contains(t, r.stderr, "401 Unauthorized", "%v: %s", args, r)
			require.Contains(t, r.stderr, "SANDO_TOKEN")
			require.NotContains(t, r.stdout+r.stderr, "wr0ng-t0ken", "the token is never printed")
			require.Less(t, r.took, 10*time.Second, "a 401 is not retried")
		}
	}
	r := ctl(t, ctlEnv(s.base, "SANDO_TOKEN=s3cret"), "rebuild", "--wait", "--timeout", "60s")
	require.Equal(t, 0, r.code, "%s", r)
	require.NotContains(t, r.stdout+r.stderr, "s3cret")
}

func TestSandoctlUnreachableExits5(t *testing.T) {
	t.Parallel()
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	for _, args := range [][]string{
		{"watch", "1", "--timeout", "2s"},
		{"rebuild", "--wait", "--timeout", "2s"},
		{"status", "--timeout", "2s"},
		{"cancel", "1", "--timeout", "2s"},
	} {
		r := ctl(t, ctlEnv(base, "SANDO_TOKEN=tok3n-value"), args...)
		require.Equal(t, 5, r.code, "%v: %s", args, r)
		require.Contains(t, r.stderr, "connection refused", "%v: %s", args, r)
		require.Contains(t, r.stderr, "attempt", "it retried: %s", r)
		require.NotContains(t, r.stderr, "tok3n-value")
		require.Less(t, r.took, 5*time.Second, "%v: --timeout bounds the retries", args)
	}
}

// rebuild's Idempotency-Key: --idempotency-key, else derived from the CI
// job, so a repeated step gets the same run.
func TestSandoctlIdempotencyKey(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{pipeline: ctlGreenPipeline})
	rebuild := func(code int, env []string, args ...string) (string, ctlResult) {
		t.Helper()
		r := ctl(t, env, append([]string{"rebuild"}, args...)...)
		require.Equal(t, code, r.code, "%s", r)
		return strings.TrimSpace(r.stdout), r
	}
	plain := ctlEnv(s.base)
	a, _ := rebuild(0, plain, "--idempotency-key", "job-1")
	again, r := rebuild(0, plain, "--idempotency-key", "job-1")
	require.Equal(t, a, again)
	require.Contains(t, r.stderr, `already started with Idempotency-Key "job-1"`)
	_, r = rebuild(3, plain, "--idempotency-key", "job-1", "--ref", "main")
	require.Contains(t, r.stderr, "422")

	gh := ctlEnv(s.base, "GITHUB_RUN_ID=9001", "GITHUB_RUN_ATTEMPT=1", "GITHUB_REPOSITORY=acme/app")
	b, _ := rebuild(0, gh)
	require.NotEqual(t, a, b)
	again, _ = rebuild(0, gh)
	require.Equal(t, b, again, "the same job attempt gets the same run")
	c, _ := rebuild(0, gh, "--ref", "main")
	require.NotEqual(t, b, c, "another ref in the same job is another run, not a 422")
	d, _ := rebuild(0, ctlEnv(s.base, "GITHUB_RUN_ID=9001", "GITHUB_RUN_ATTEMPT=2", "GITHUB_REPOSITORY=acme/app"))
	require.NotEqual(t, b, d, "a re-run job starts a new run")

	gl := ctlEnv(s.base, "CI_JOB_ID=55", "CI_PROJECT_ID=3")
	e, _ := rebuild(0, gl)
	again, _ = rebuild(0, gl)
	require.Equal(t, e, again)
	f, _ := rebuild(0, plain)
	g, _ := rebuild(0, plain)
	require.NotEqual(t, f, g, "outside CI every rebuild is a new run")
}
