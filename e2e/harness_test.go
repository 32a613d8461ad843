// Package e2e drives whole Sando stacks: a real redis-server on a free
// port, the API and a worker (in process, through the same app package
// the commands use, or as built binaries), and a throwaway git repository
// with a pipeline file.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/app"
	"sando.dev/sando/internal/app/api"
	"sando.dev/sando/internal/config"
	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/testproc"
	"sando.dev/sando/internal/testrepo"
)

// project is a throwaway git repository (testrepo's) that fails its
// test on a git error.
type project struct {
	dir  string
	t    *testing.T
	repo testrepo.Repo
}

func newProject(t *testing.T, files map[string]string) *project {
	t.Helper()
	r, _, err := testrepo.New(t.TempDir(), files)
	require.NoError(t, err)
	return &project{dir: r.Dir, t: t, repo: r}
}

func (p *project) git(args ...string) string {
	p.t.Helper()
	out, err := p.repo.Git(args...)
	require.NoError(p.t, err)
	return out
}

// commit writes files and commits them; it returns the new sha.
func (p *project) commit(files map[string]string, msg string) string {
	p.t.Helper()
	sha, err := p.repo.Commit(files, msg)
	require.NoError(p.t, err)
	return sha
}

// stack is one running Sando.
type stack struct {
	t       *testing.T
	base    string
	dataDir string
	cfgPath string // SANDO_CONFIG: the pipeline file, or the directory of pipelines
	redis   *redistest.Server
	logs    *testproc.Buffer // of every process of the stack
}

type stackOpts struct {
	pipeline string // YAML; "repo:" is added
	// pipelines, when set, makes SANDO_CONFIG a directory of these files
	// (file name → YAML; "repo:" is added to each) instead of pipeline.
	pipelines map[string]string
	embedded  bool   // no REDIS_URL: miniredis + in-process worker
	redisURL  string // REDIS_URL of a Redis the test started (a cluster); default: a fresh redis-server
	workers   int    // separate in-process workers (default 1 unless embedded)
	token     string
	readToken string // SANDO_READ_TOKEN
	secret    string // SANDO_WEBHOOK_SECRET
	// workerAddr is the workers' /metrics address (one worker only).
	workerAddr string

	monitoringReadOnly bool // SANDO_MONITORING_READONLY
	noSupersede        bool // SANDO_SUPERSEDE=0
}

// startStack runs the API (and workers) until the test ends.
func startStack(t *testing.T, proj *project, o stackOpts) *stack {
	t.Helper()
	s := &stack{t: t, dataDir: filepath.Join(t.TempDir(), "data"), logs: &testproc.Buffer{}}
	cfgPath := filepath.Join(t.TempDir(), "sando.yaml")
	if o.pipelines != nil {
		cfgPath = t.TempDir()
		for name, body := range o.pipelines {
			s.writePipeline(cfgPath, name, "repo: "+proj.dir+"\n"+body)
		}
	} else {
		s.writePipeline(filepath.Dir(cfgPath), filepath.Base(cfgPath), "repo: "+proj.dir+"\n"+o.pipeline)
	}
	s.cfgPath = cfgPath
	cfg := config.Config{
		Addr: "127.0.0.1:0", PipelinePath: cfgPath, DataDir: s.dataDir, Concurrency: 4,
		PollInterval: 10 * time.Millisecond, ShutdownTimeout: 5 * time.Second, LogLevel: "debug",
		Token: o.token, ReadToken: o.readToken, WebhookSecret: o.secret, WorkerAddr: o.workerAddr, MonitoringReadOnly: o.monitoringReadOnly,
		NoSupersede: o.noSupersede,
	}
	if o.redisURL != "" {
		cfg.RedisURL = o.redisURL
	} else if !o.embedded {
		s.redis = redistest.Start(t)
		cfg.RedisURL = s.redis.URL()
	}
	log := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	var done []chan error
	ready := make(chan string, 1)
	apiDone := make(chan error, 1)
	go func() { apiDone <- api.Run(ctx, cfg, log.With("proc", "api"), func(a string) { ready <- a }) }()
	done = append(done, apiDone)
	workers := o.workers
	if workers == 0 && !o.embedded {
		workers = 1
	}
	for i := range workers {
		ch := make(chan error, 1)
		go func() { ch <- app.Worker(ctx, cfg, log.With("proc", fmt.Sprintf("worker-%d", i))) }()
		done = append(done, ch)
	}
	select {
	case addr := <-ready:
		s.base = "http://" + addr
	case err := <-apiDone:
		t.Fatalf("api did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("api did not start in 10s")
	}
	t.Cleanup(func() {
		cancel()
		for _, ch := range done {
			select {
			case err := <-ch:
				require.NoError(t, err)
			case <-time.After(20 * time.Second):
				t.Error("a process did not stop within 20s of shutdown")
			}
		}
		if t.Failed() {
			t.Logf("stack logs:\n%s", s.logs.String())
		}
	})
	return s
}

// writePipeline writes one pipeline file of the stack (also to change it
// before a SIGHUP).
func (s *stack) writePipeline(dir, name, body string) {
	s.t.Helper()
	require.NoError(s.t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: validating(http.DefaultTransport)}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

func (s *stack) do(method, path string, body io.Reader, header map[string]string) response {
	s.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, s.base+path, body)
	require.NoError(s.t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (s *stack) get(path string) response { return s.do("GET", path, nil, nil) }

// rebuild triggers a run and returns its id.
func (s *stack) rebuild(body string) int {
	s.t.Helper()
	r := s.do("POST", "/rebuild", strings.NewReader(body), map[string]string{"Content-Type": "application/json"})
	require.Equal(s.t, http.StatusAccepted, r.status, "body: %s", r.body)
	m := r.json(s.t)
	id := int(m["run_id"].(float64))
	require.Equal(s.t, fmt.Sprintf("/runs/%d", id), r.header.Get("Location"))
	return id
}

// waitRun polls a run until pred holds (or fails the test after d).
func (s *stack) waitRun(id int, d time.Duration, what string, pred func(map[string]any) bool) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(d)
	var last map[string]any
	for time.Now().Before(deadline) {
		r := s.get(fmt.Sprintf("/runs/%d", id))
		require.Equal(s.t, http.StatusOK, r.status, "body: %s", r.body)
		last = r.json(s.t)
		if pred(last) {
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("run %d: not %s within %s; last view: %v", id, what, d, last)
	return nil
}

func (s *stack) waitTerminal(id int) map[string]any {
	return s.waitRun(id, 60*time.Second, "terminal", func(m map[string]any) bool { return m["result"] != "building" })
}

func gatesOf(m map[string]any) map[string]any {
	out := map[string]any{}
	for _, g := range m["gates"].([]any) {
		gm := g.(map[string]any)
		out[gm["kind"].(string)] = gm["status"]
	}
	return out
}

func writeFile(path string) error { return os.WriteFile(path, []byte("x"), 0o644) }

// diskQueue is the queue of the steps after the fetch of runs fetched on
// dataDir (whose id the first worker there wrote in disk-id).
func diskQueue(t *testing.T, dataDir string) string {
	t.Helper()
	var id []byte
	require.Eventually(t, func() bool {
		var err error
		id, err = os.ReadFile(filepath.Join(dataDir, "disk-id"))
		return err == nil && len(bytes.TrimSpace(id)) > 0
	}, 10*time.Second, 10*time.Millisecond, "no worker wrote %s/disk-id", dataDir)
	return steps.DiskQueue(string(bytes.TrimSpace(id)))
}
