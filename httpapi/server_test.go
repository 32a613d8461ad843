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
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando/datadir"
	"sando/internal/redistest"
	"sando/lifecycle"
	"sando/metrics"
	"sando/pipeline"
	"sando/runstore"
)

// testAPI is a Server on miniredis behind a real listener (HEAD needs
// net/http's own response writer, which drops the body).
type testAPI struct {
	t      *testing.T
	url    string
	rdb    *redis.Client
	layout datadir.Layout
	store  *runstore.Store
}

func newTestAPI(t *testing.T) *testAPI {
	t.Helper()
	m := redistest.Mini(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	p := &pipeline.Pipeline{Name: "app", Branch: "main", Tier: "host"}
	store := runstore.New(rdb, p.Name)
	layout := datadir.Layout{Root: t.TempDir()}
	s := &Server{
		Store: store, Pipeline: p, Life: &lifecycle.Lifecycle{Store: store, Pipeline: p, Queue: &recQueue{}},
		Layout: layout, Logger: slog.New(slog.DiscardHandler), Metrics: metrics.New(),
		Ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &testAPI{t: t, url: srv.URL, rdb: rdb, layout: layout, store: store}
}

func (a *testAPI) do(method, path, body string, header ...string) (*http.Response, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	require.NoError(a.t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	return resp, string(b)
}

// HEAD answers wherever GET does, with GET's status and headers and no
// body: the probes, the reads, a log (without streaming it, even with
// ?follow=1) and the documents.
func TestHeadWorksWhereGetDoes(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	ctx := context.Background()
	c, err := a.store.Create(ctx, runstore.CreateRequest{})
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(a.layout.LogDir(c.ID), 0o755))
	require.NoError(t, os.WriteFile(a.layout.LogPath(c.ID, "compile"), []byte("building\n"), 0o644))
	log := "/logs/" + datadir.LogRef(c.ID, "compile")

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
