package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/client"
)

func TestSandoctlFlagsAnywhere(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		f    bool
	}{
		{[]string{"7", "--follow"}, []string{"7"}, true},
		{[]string{"--follow", "7", "compile"}, []string{"7", "compile"}, true},
		{[]string{"7", "compile", "-follow"}, []string{"7", "compile"}, true},
		{[]string{"7", "--", "--follow"}, []string{"7", "--follow"}, false},
		{[]string{"7"}, []string{"7"}, false},
	} {
		fs := flag.NewFlagSet("logs", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := fs.Bool("follow", false, "")
		pos, _, ok := parse(fs, tc.args, 1, 2)
		require.True(t, ok, "%v", tc.args)
		require.Equal(t, tc.pos, pos, "%v", tc.args)
		require.Equal(t, tc.f, *f, "%v", tc.args)
	}
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	_, code, ok := parse(fs, []string{"1", "2"}, 1, 1)
	require.False(t, ok)
	require.Equal(t, exitUsage, code)
	_, code, ok = parse(fs, []string{"-h"}, 1, 1)
	require.False(t, ok)
	require.Equal(t, exitPassed, code)
}

func TestSandoctlCIKey(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	require.Empty(t, ciKey(env(), "", "", ""))
	gh := ciKey(env("GITHUB_RUN_ID", "12", "GITHUB_RUN_ATTEMPT", "3", "GITHUB_REPOSITORY", "acme/app"), "", "", "")
	require.Regexp(t, `^sandoctl-gh-acme/app-12-3-[0-9a-f]{12}$`, gh)
	require.Equal(t, gh, ciKey(env("GITHUB_RUN_ID", "12", "GITHUB_RUN_ATTEMPT", "3", "GITHUB_REPOSITORY", "acme/app"), "", "", ""))
	require.NotEqual(t, gh, ciKey(env("GITHUB_RUN_ID", "12", "GITHUB_RUN_ATTEMPT", "3", "GITHUB_REPOSITORY", "acme/app"), "", "", "main"))
	require.Equal(t,
		ciKey(env("GITHUB_RUN_ID", "12"), "", "ABCDEF1", ""), ciKey(env("GITHUB_RUN_ID", "12", "GITHUB_RUN_ATTEMPT", "1"), "", "abcdef1", ""),
		"attempt 1 by default; a sha in any case is one commit")
	require.Regexp(t, `^sandoctl-gl-9-44-[0-9a-f]{12}$`, ciKey(env("CI_JOB_ID", "44", "CI_PROJECT_ID", "9"), "", "", ""))
	require.NotEqual(t, gh, ciKey(env("GITHUB_RUN_ID", "12", "GITHUB_RUN_ATTEMPT", "3", "GITHUB_REPOSITORY", "acme/app"), "web", "", ""),
		"one job rebuilding two pipelines gets two keys")
	odd := ciKey(env("CI_JOB_ID", "a b\tc"+strings.Repeat("x", 300)), "", "", "")
	require.LessOrEqual(t, len(odd), 255)
	require.NotContains(t, odd, " ")
}

func run7(phase client.Phase, result client.Result, gates ...client.Gate) *client.Run {
	return &client.Run{ID: 7, Phase: phase, Result: result, Gates: gates,
		StartedAt: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
}

func TestSandoctlWatchLines(t *testing.T) {
	var out bytes.Buffer
	p := &printer{out: &out, id: 7}
	p.update(run7(client.PhaseFetching, client.ResultBuilding))
	p.update(run7(client.PhaseFetching, client.ResultBuilding)) // nothing new
	p.update(run7(client.PhaseGating, client.ResultBuilding, client.Gate{Kind: "unit"}))
	p.update(run7(client.PhaseGating, client.ResultBuilding, client.Gate{Kind: "smoke"}, client.Gate{Kind: "unit", Status: "passed"}))
	last := run7(client.PhaseDone, client.ResultFailed, client.Gate{Kind: "e2e", Status: "blocked"},
		client.Gate{Kind: "smoke", Status: "failed"}, client.Gate{Kind: "unit", Status: "passed"})
	last.FailureSummary = "smoke: FAIL: broken"
	p.update(last)
	require.Equal(t, exitFailed, p.result(last))
	require.Equal(t, `run 7: fetching
run 7: gating
run 7: gate unit running
run 7: gate smoke running
run 7: gate unit passed
run 7: gate e2e blocked
run 7: gate smoke failed
run 7 failed: smoke: FAIL: broken
`, out.String())

	out.Reset()
	aborted := run7(client.PhaseDone, client.ResultAborted, client.Gate{Kind: "unit"}) // killed mid-gate
	aborted.FailureSummary = "canceled"
	p = &printer{out: &out, id: 7}
	p.update(aborted)
	require.Equal(t, exitAborted, p.result(aborted))
	require.Equal(t, "run 7 aborted: canceled\n", out.String())
}

func TestSandoctlProgressLineOnATerminal(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2026, 1, 1, 12, 0, 42, 0, time.UTC)
	p := &printer{out: &out, id: 7, tty: true, now: func() time.Time { return now }}
	p.update(run7(client.PhaseCompiling, client.ResultBuilding))
	p.update(run7(client.PhaseGating, client.ResultBuilding, client.Gate{Kind: "unit"}))
	passed := run7(client.PhaseDone, client.ResultPassed, client.Gate{Kind: "unit", Status: "passed"})
	passed.Version = "1.2.3"
	p.update(passed)
	require.Equal(t, exitPassed, p.result(passed))
	require.Equal(t, "run 7: compiling\n"+
		"\r\x1b[Krun 7: compiling… 42s"+
		"\r\x1b[Krun 7: gating\nrun 7: gate unit running\n"+
		"\r\x1b[Krun 7: gating unit… 42s"+
		"\r\x1b[Krun 7: gate unit passed\n"+
		"run 7 passed (version 1.2.3)\n", out.String())
}

// The whole command against a fake server that answers at once (no
// long-poll): it ends with the run and does not hammer the server.
func TestSandoctlWatchAgainstAnImpatientServer(t *testing.T) {
	t.Parallel()
	start := time.Now()
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("ETag", `"same"`)
		body := `{"run_id":3,"phase":"compiling","result":"building","started_at":"2026-01-01T00:00:00Z","gates":[]}`
		if time.Since(start) > 2500*time.Millisecond {
			w.Header().Set("ETag", `"done"`)
			body = `{"run_id":3,"phase":"done","result":"passed","started_at":"2026-01-01T00:00:00Z","gates":[]}`
		}
		if r.Header.Get("If-None-Match") == w.Header().Get("ETag") {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, body)
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"watch", "3"}, env{
		stdout: &stdout, stderr: &stderr,
		getenv: func(k string) string { return map[string]string{"SANDO_URL": srv.URL + "/"}[k] },
	})
	require.Equal(t, exitPassed, code, "stderr: %s", &stderr)
	require.Equal(t, "run 3: compiling\nrun 3 passed\n", stdout.String())
	require.LessOrEqual(t, requests.Load(), int32(5), "about one request a second")
}

// --pipeline (default SANDO_PIPELINE) reaches the server: in a rebuild's
// body, as ?pipeline= of list and status; a 404 for an unknown pipeline
// says which, and a 400 (several pipelines, none named) shows the detail.
func TestSandoctlPipeline(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" "+string(b))
		mu.Unlock()
		problemFor := func(status int, detail string) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"type":"about:blank","title":%q,"status":%d,"detail":%q}`, http.StatusText(status), status, detail)
		}
		switch q := r.URL.Query().Get("pipeline"); {
		case r.URL.Path == "/rebuild":
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"run_id":4,"url":"/runs/4","superseded":[]}`)
		case q == "nope":
			problemFor(http.StatusNotFound, `no pipeline "nope" (the pipelines: api, web)`)
		case q == "":
			problemFor(http.StatusBadRequest, "this server has 2 pipelines (api, web): name one with ?pipeline=<name>")
		case r.URL.Path == "/runs":
			io.WriteString(w, `{"runs":[{"run_id":4,"pipeline":"web","phase":"queued","result":"building","started_at":"2026-01-01T00:00:00Z","gates":[]}],"next":null}`)
		case r.URL.Path == "/state":
			io.WriteString(w, `{"deployed":null,"build":null}`)
		}
	}))
	defer srv.Close()
	ctl := func(vars map[string]string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		vars["SANDO_URL"] = srv.URL
		code := run(context.Background(), args, env{stdout: &stdout, stderr: &stderr,
			getenv: func(k string) string { return vars[k] }})
		return code, stdout.String(), stderr.String()
	}
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		return seen[len(seen)-1]
	}

	code, out, errOut := ctl(map[string]string{"SANDO_PIPELINE": "web"}, "rebuild", "--ref", "main")
	require.Equal(t, exitPassed, code, errOut)
	require.Equal(t, "4\n", out)
	require.Regexp(t, `^POST /rebuild \{"ref":"main","pipeline":"web"\}$`, last())
	code, _, errOut = ctl(map[string]string{"SANDO_PIPELINE": "web"}, "rebuild", "--pipeline", "api")
	require.Equal(t, exitPassed, code, errOut)
	require.Equal(t, `POST /rebuild {"pipeline":"api"}`, last(), "the flag wins over the environment")
	code, _, _ = ctl(map[string]string{}, "rebuild")
	require.Equal(t, exitPassed, code)
	require.Equal(t, `POST /rebuild {}`, last(), "no pipeline: no key")

	code, out, errOut = ctl(map[string]string{}, "list", "--pipeline", "web")
	require.Equal(t, exitPassed, code, errOut)
	require.Equal(t, "GET /runs?limit=20&pipeline=web ", last())
	require.Regexp(t, `(?m)^RUN +RESULT +PHASE +PIPELINE +VERSION`, out)
	require.Regexp(t, `(?m)^4 +building +queued +web +-`, out)

	code, out, errOut = ctl(map[string]string{"SANDO_PIPELINE": "web"}, "status")
	require.Equal(t, exitPassed, code, errOut)
	require.Equal(t, "GET /state?pipeline=web ", last())
	require.Contains(t, out, "deployed  none")

	code, _, errOut = ctl(map[string]string{}, "status")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "2 pipelines (api, web)")
	code, _, errOut = ctl(map[string]string{}, "list", "--pipeline", "nope")
	require.Equal(t, exitUsage, code)
	require.Equal(t, "sandoctl: pipeline \"nope\" does not exist\n", errOut)
}
