package e2e

// Asynqmon at /monitoring/: the API surface over plain HTTP (on a real
// redis-server and on the embedded miniredis), its auth and read-only mode,
// and the console in a real headless Chromium.
//
// /monitoring is not part of httpapi/openapi.json, so these requests go
// through monClient, not the harness's validating client.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// monitoringPipeline goes through every phase queue (fetch, compile, stage,
// gate) and, through its webhook, the "system" queue. asynq only knows a
// queue once a task was enqueued to it, so a run must go through first.
const monitoringPipeline = `build: "true"
stage: "true"
gates:
  - kind: unit
    run: "true"
webhooks:
  - %HOOK%
`

// runQueues are the queues a passed run of monitoringPipeline on s leaves:
// the fetch queue, its data dir's queue (every later step) and the system
// queue (its webhook).
func runQueues(t *testing.T, s *stack) []string {
	t.Helper()
	return []string{"fetch", diskQueue(t, s.dataDir), "system"}
}

var monClient = &http.Client{Timeout: 30 * time.Second}

// mon sends one request to the console, outside the OpenAPI validator.
func (s *stack) mon(method, path string, header map[string]string) response {
	s.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, s.base+path, nil)
	require.NoError(s.t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := monClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	require.NoError(s.t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b.Bytes()}
}

// monitoredStack starts a stack whose first run has passed through every
// queue, with a webhook receiver that accepts everything.
func monitoredStack(t *testing.T, o stackOpts) *stack {
	t.Helper()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(hook.Close)
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	o.pipeline = strings.Replace(monitoringPipeline, "%HOOK%", hook.URL+"/hook", 1)
	o.secret = "hook-secret"
	s := startStack(t, proj, o)
	var auth map[string]string
	if o.token != "" {
		auth = map[string]string{"Authorization": "Bearer " + o.token}
	}
	r := s.do("POST", "/rebuild", nil, auth)
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	require.Equal(t, "passed", s.waitTerminal(int(r.json(t)["run_id"].(float64)))["result"])
	// The run is passed inside the gate task's handler; asynq marks the task
	// completed just after, and the webhook is queued after that.
	var last string
	require.Eventually(t, func() bool {
		var ok bool
		ok, last = settled(s.base, auth, runQueues(t, s))
		return ok
	}, 20*time.Second, 20*time.Millisecond, "the run's tasks are not all completed: %s", last)
	return s
}

// settled reports whether every queue but the system queue has a
// completed task and none active, and the system queue exists; it also
// returns what it saw.
func settled(base string, header map[string]string, queues []string) (bool, string) {
	req, err := http.NewRequestWithContext(context.Background(), "GET", base+"/monitoring/api/queues", nil)
	if err != nil {
		return false, err.Error()
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := monClient.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var body struct {
		Queues []struct {
			Queue             string
			Active, Completed int
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false, err.Error()
	}
	seen := map[string]bool{}
	for _, q := range body.Queues {
		seen[q.Queue] = q.Queue == "system" || q.Active == 0 && q.Completed > 0
	}
	for _, q := range queues {
		if !seen[q] {
			return false, fmt.Sprintf("%+v", body.Queues)
		}
	}
	return true, ""
}

// queueNames lists the queues /monitoring/api/queues shows.
func queueNames(t *testing.T, r response) []string {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	var body struct {
		Queues []struct {
			Queue string `json:"queue"`
		} `json:"queues"`
	}
	require.NoError(t, json.Unmarshal(r.body, &body), "body: %s", r.body)
	var names []string
	for _, q := range body.Queues {
		names = append(names, q.Queue)
	}
	return names
}

func TestMonitoringAPI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		embedded bool
	}{{"redis-server", false}, {"embedded miniredis", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := monitoredStack(t, stackOpts{embedded: tc.embedded})

			// The console's HTML, rooted at /monitoring, with and without the slash.
			for _, path := range []string{"/monitoring/", "/monitoring", "/monitoring/queues/gate"} {
				r := s.mon("GET", path, nil)
				require.Equal(t, http.StatusOK, r.status, "%s: %s", path, r.body)
				require.Contains(t, r.header.Get("Content-Type"), "text/html", path)
				require.Contains(t, string(r.body), "<title>Asynq - Monitoring</title>", path)
				require.Contains(t, string(r.body), `window.FLAG_ROOT_PATH="\/monitoring"`, path)
				require.Contains(t, string(r.body), `window.FLAG_READ_ONLY="false"`, path)
			}
			// Its script, served from the same mount (the SPA needs it).
			r := s.mon("GET", "/monitoring/", nil)
			script := string(r.body)[strings.Index(string(r.body), `src="/monitoring/static/js/main.`)+5:]
			script = script[:strings.IndexByte(script, '"')]
			r = s.mon("GET", script, nil)
			require.Equal(t, http.StatusOK, r.status, script)
			require.Contains(t, r.header.Get("Content-Type"), "javascript", script)

			// The queues: every phase queue the run went through.
			names := queueNames(t, s.mon("GET", "/monitoring/api/queues", nil))
			for _, q := range runQueues(t, s) {
				require.Contains(t, names, q, "queues: %v", names)
			}

			// Task lists: the run's tasks are kept (Retention) as completed:
			// the fetch on the fleet's queue, the rest on the data dir's.
			queues := runQueues(t, s)
			for q, want := range map[string][]string{
				queues[0]: {"sando:fetch"},
				queues[1]: {"sando:compile", "sando:gate", "sando:stage"},
			} {
				r := s.mon("GET", "/monitoring/api/queues/"+q+"/completed_tasks", nil)
				require.Equal(t, http.StatusOK, r.status, "%s: %s", q, r.body)
				var list struct {
					Tasks []struct {
						ID   string `json:"id"`
						Type string `json:"type"`
					} `json:"tasks"`
				}
				require.NoError(t, json.Unmarshal(r.body, &list))
				var types []string
				for _, tk := range list.Tasks {
					types = append(types, tk.Type)
				}
				slices.Sort(types)
				require.Equal(t, want, types, "%s: %s", q, r.body)
			}
			r = s.mon("GET", "/monitoring/api/queues/"+queues[1]+"/pending_tasks", nil)
			require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)

			// The servers page lists the worker.
			r = s.mon("GET", "/monitoring/api/servers", nil)
			require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
			require.Contains(t, string(r.body), `"queue_priorities"`)

			// The Redis page: a real server reports its version; miniredis
			// answers INFO with next to nothing, but the page still loads.
			r = s.mon("GET", "/monitoring/api/redis_info", nil)
			require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
			var info struct {
				Addr string            `json:"address"`
				Info map[string]string `json:"info"`
			}
			require.NoError(t, json.Unmarshal(r.body, &info))
			require.NotEmpty(t, info.Addr)
			if tc.embedded {
				t.Logf("miniredis INFO fields: %v", info.Info)
			} else {
				require.NotEmpty(t, info.Info["redis_version"], "body: %s", r.body)
			}

			// Not read-only: a write works (pause, then resume, the fetch queue).
			require.Equal(t, http.StatusNoContent, s.mon("POST", "/monitoring/api/queues/fetch:pause", nil).status)
			require.Equal(t, http.StatusNoContent, s.mon("POST", "/monitoring/api/queues/fetch:resume", nil).status)

			// No Prometheus server is configured: the metrics endpoint fails
			// (the UI hides its Metrics tab).
			require.NotEqual(t, http.StatusOK, s.mon("GET", "/monitoring/api/metrics", nil).status)
		})
	}
}

func TestMonitoringAuthAndReadOnly(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token"
	s := monitoredStack(t, stackOpts{token: token, monitoringReadOnly: true})
	bearer := map[string]string{"Authorization": "Bearer " + token}
	basic := func(user, pass string) map[string]string {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "/", nil)
		req.SetBasicAuth(user, pass)
		return map[string]string{"Authorization": req.Header.Get("Authorization")}
	}

	for _, path := range []string{"/monitoring", "/monitoring/", "/monitoring/api/queues", "/monitoring/static/js/x.js"} {
		for _, h := range []map[string]string{nil, basic("admin", "wrong"), {"Authorization": "Bearer wrong"}} {
			r := s.mon("GET", path, h)
			require.Equal(t, http.StatusUnauthorized, r.status, "%s %v", path, h)
			require.Equal(t, `Basic realm="sando"`, r.header.Get("WWW-Authenticate"), path)
		}
	}
	for _, h := range []map[string]string{basic("admin", token), basic("", token), bearer} {
		r := s.mon("GET", "/monitoring/", h)
		require.Equal(t, http.StatusOK, r.status, "%v", h)
		require.Contains(t, string(r.body), `window.FLAG_READ_ONLY="true"`)
		names := queueNames(t, s.mon("GET", "/monitoring/api/queues", h))
		require.Contains(t, names, diskQueue(t, s.dataDir))
	}
	// A wrong token never reaches asynqmon, not even to be refused as read-only.
	require.Equal(t, http.StatusUnauthorized, s.mon("DELETE", "/monitoring/api/queues/fetch", nil).status)

	// Read-only: every non-GET API call is 405, and nothing changed.
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/monitoring/api/queues/fetch"},
		{"POST", "/monitoring/api/queues/fetch:pause"},
		{"DELETE", "/monitoring/api/queues/gate/completed_tasks:delete_all"},
		{"POST", "/monitoring/api/queues/gate/archived_tasks:run_all"},
	} {
		r := s.mon(c.method, c.path, basic("admin", token))
		require.Equal(t, http.StatusMethodNotAllowed, r.status, "%s %s: %s", c.method, c.path, r.body)
		require.Contains(t, string(r.body), "read-only")
	}
	r := s.mon("GET", "/monitoring/api/queues/fetch", bearer)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.Contains(t, string(r.body), `"paused":false`)
	require.Contains(t, queueNames(t, s.mon("GET", "/monitoring/api/queues", bearer)), "fetch")
}

const chromiumPath = "/usr/bin/chromium"

// TestMonitoringInBrowser opens the console in headless Chromium, on the
// embedded default, and waits until it shows the phase queues. The
// screenshot goes to t.ArtifactDir() (kept with go test -artifacts).
func TestMonitoringInBrowser(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is not installed (Debian: apt-get install chromium; .ci/run does): %v", chromiumPath, err)
	}
	s := monitoredStack(t, stackOpts{embedded: true})

	bctx, browserLog := startBrowser(t, 60*time.Second, 1400, 900)

	// Whole words of the page's visible text, once every queue is there.
	const shown = `(() => {
		const words = document.body.innerText.split(/\s+/);
		return ["fetch", "system"].every(q => words.includes(q)) && words.some(w => w.startsWith("disk:")) && words;
	})()`
	err := chromedp.Do(bctx, chromedp.Navigate(s.base+"/monitoring/"))
	require.NoError(t, err, "browser log:\n%s", browserLog.String())
	words, err := chromedp.Run(bctx, chromedp.Poll[[]string](shown, chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		text, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("the queues did not show: %v\npage text:\n%s\nbrowser log:\n%s", err, text, browserLog.String())
	}
	require.Contains(t, words, "Queues")
	title, err := chromedp.Run(bctx, chromedp.Title())
	require.NoError(t, err)
	require.Equal(t, "Asynq - Monitoring", title)

	png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(png, []byte("\x89PNG")), "a PNG")
	path := filepath.Join(t.ArtifactDir(), "monitoring.png")
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s (%d bytes; go test -artifacts keeps it)", path, len(png))
	require.True(t, slices.Contains(words, diskQueue(t, s.dataDir)), "the data dir's queue is listed: %v", words)
}

// startBrowser starts a headless Chromium (skipping the test when there is
// none) with a window of w×h, for at most d; it ends with the test.
func startBrowser(t *testing.T, d time.Duration, w, h int) (context.Context, *syncBuf) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is not installed (Debian: apt-get install chromium; .ci/run does): %v", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(w, h),
	)
	t.Cleanup(cancelAlloc) // kills Chromium and waits for it, before TempDir cleanup (cleanups run last first)
	browserLog := &syncBuf{}
	bctx, cancelBrowser := chromedp.NewContext(allocCtx,
		chromedp.WithErrorf(browserLog.printf), chromedp.WithLogf(browserLog.printf))
	t.Cleanup(cancelBrowser)
	return bctx, browserLog
}

// syncBuf collects chromedp's log lines (which may arrive after the test).
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(strings.TrimRight(fmt.Sprintf(format, args...), "\n") + "\n")
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A red build is the run's failure, not its tasks': the gate task that
// found the red gate ends completed, and Asynqmon's failed, retry and
// archived counts stay 0, so they mean infrastructure trouble only.
// (Before, the task returned SkipRetry: archived, one failure a run.)
func TestRedBuildLeavesNoFailedTasks(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{pipeline: `build: "true"
gates:
  - kind: unit
    run: "echo 'vector 2: FAIL: digest mismatch' >&2; exit 2"
`})
	r := s.do("POST", "/rebuild", nil, nil)
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	v := s.waitTerminal(int(r.json(t)["run_id"].(float64)))
	require.Equal(t, "failed", v["result"])
	require.Contains(t, v["failure_summary"], "unit: ")

	disk := diskQueue(t, s.dataDir)
	type queue struct {
		Queue                                       string
		Active, Pending, Retry, Archived, Completed int
		Processed, Failed                           int
	}
	var seen []queue
	require.Eventually(t, func() bool {
		var body struct{ Queues []queue }
		if json.Unmarshal(s.mon("GET", "/monitoring/api/queues", nil).body, &body) != nil {
			return false
		}
		seen = body.Queues
		for _, q := range seen {
			// The disk queue ran compile and the red gate.
			if q.Queue == disk && q.Active == 0 && q.Pending == 0 && q.Completed+q.Retry+q.Archived >= 2 {
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "the run's tasks never all ended")
	for _, q := range seen {
		require.Zero(t, q.Failed, "queue %s counts a failure: %+v", q.Queue, q)
		require.Zero(t, q.Retry, "queue %s: %+v", q.Queue, q)
		require.Zero(t, q.Archived, "queue %s: %+v", q.Queue, q)
	}
}
