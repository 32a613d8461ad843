package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/metrics"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/runstore"
)

// testAPI is a Server on miniredis behind a real listener (HEAD needs
// net/http's own response writer, which drops the body).
type testAPI struct {
	t      *testing.T
	url    string
	rdb    *redis.Client
	layout datadir.Layout
	queue  *recQueue
	set    atomic.Pointer[pipeline.Set] // what Server.Pipelines answers; a test may swap it
}

// newTestAPI serves pipelines (by default one, "app").
func newTestAPI(t *testing.T, pipelines ...*pipeline.Pipeline) *testAPI {
	t.Helper()
	if len(pipelines) == 0 {
		pipelines = []*pipeline.Pipeline{testPipeline("app")}
	}
	set, err := pipeline.NewSet(pipelines...)
	require.NoError(t, err)
	m := redistest.Mini(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	a := &testAPI{t: t, rdb: rdb, layout: datadir.Layout{Root: t.TempDir()}, queue: &recQueue{}}
	a.set.Store(set)
	a.url = a.server(nil)
	return a
}

// server starts another Server on a's Redis, pipelines and data dir, as
// configure changes it (nil: as newTestAPI's), and returns its URL.
func (a *testAPI) server(configure func(*Server)) string {
	s := &Server{
		Redis: a.rdb, Pipelines: a.set.Load, Queue: a.queue,
		Layout: a.layout, Logger: slog.New(slog.DiscardHandler), Metrics: metrics.New(),
		Ping: func(ctx context.Context) error { return a.rdb.Ping(ctx).Err() },
	}
	if configure != nil {
		configure(s)
	}
	srv := httptest.NewServer(s.Handler())
	a.t.Cleanup(srv.Close)
	return srv.URL
}

func testPipeline(name string) *pipeline.Pipeline {
	return &pipeline.Pipeline{Name: name, Repo: "https://example.com/" + name + ".git", Branch: "main", Tier: "host",
		Build: "make", Gates: []pipeline.Gate{{Kind: "unit", Run: "make test", Timeout: time.Minute}},
		Timeouts: pipeline.Timeouts{Fetch: time.Minute, Compile: time.Minute, Stage: time.Minute}}
}

// store is pipeline name's run store, as the server opens it.
func (a *testAPI) store(name string) *runstore.Store { return runstore.New(a.rdb, name) }

// noRedirects shows a test the 303 a page's form gets, not its target.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (a *testAPI) do(method, path, body string, header ...string) (*http.Response, string) {
	a.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, a.url+path, strings.NewReader(body))
	require.NoError(a.t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := noRedirects.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	return resp, string(b)
}

// diskLog creates a run of "app" whose compile log is on the disk only, as
// a run from before step logs went to Redis has it, and answers its id.
func (a *testAPI) diskLog(content string) int64 {
	a.t.Helper()
	c, err := a.store("app").Create(context.Background(), runstore.CreateRequest{})
	require.NoError(a.t, err)
	require.NoError(a.t, os.MkdirAll(a.layout.LogDir(c.ID), 0o755))
	require.NoError(a.t, os.WriteFile(a.layout.LogPath(c.ID, "compile"), []byte(content), 0o644))
	return c.ID
}

// HEAD answers wherever GET does, with GET's status and headers and no
// body: the probes, the reads, a log (without streaming it, even with
// ?follow=1) and the documents.
func TestHeadWorksWhereGetDoes(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	log := "/logs/" + datadir.LogRef(a.diskLog("building\n"), "compile")

	for _, path := range []string{
		"/healthz", "/readyz", "/openapi.json", "/metrics", "/runs", "/runs/1", "/state",
		log, log + "?follow=1", "/runs/999",
	} {
		get, getBody := a.do(http.MethodGet, strings.TrimSuffix(path, "?follow=1"), "")
		head, headBody := a.do(http.MethodHead, path, "")
		require.Equal(t, get.StatusCode, head.StatusCode, "HEAD %s", path)
		require.NotEqual(t, http.StatusMethodNotAllowed, head.StatusCode, "HEAD %s", path)
		require.Empty(t, headBody, "HEAD %s", path)
		require.NotEmpty(t, getBody, "GET %s", path)
		require.Equal(t, get.Header.Get("Content-Type"), head.Header.Get("Content-Type"), "HEAD %s", path)
	}
	head, _ := a.do(http.MethodHead, log, "")
	require.Equal(t, "9", head.Header.Get("Content-Length"), "a log's HEAD says its size")
}

// recQueue records the tasks enqueued and runs none.
type recQueue struct {
	mu    sync.Mutex
	tasks []*asynq.Task
}

func (q *recQueue) EnqueueContext(_ context.Context, t *asynq.Task, _ ...asynq.Option) (*asynq.TaskInfo, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tasks = append(q.tasks, t)
	return &asynq.TaskInfo{}, nil
}
