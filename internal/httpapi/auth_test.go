package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/metrics"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/redistest"
)

// With both tokens set, reads take either (the write token grants every
// read, so `SANDO_TOKEN=… sandoctl rebuild --wait` can poll), writes only
// the write token, and the probes neither.
func TestTokens(t *testing.T) {
	t.Parallel()
	set, err := pipeline.NewSet(testPipeline("app"))
	require.NoError(t, err)
	m := redistest.Mini(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	s := &Server{
		Redis: rdb, Pipelines: func() *pipeline.Set { return set }, Queue: &recQueue{},
		Layout: datadir.Layout{Root: t.TempDir()}, Logger: slog.New(slog.DiscardHandler), Metrics: metrics.New(),
		Ping:  func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		Token: "write-secret", ReadToken: "read-secret",
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	status := func(method, path, token string) int {
		req, err := http.NewRequestWithContext(context.Background(), method, srv.URL+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/runs", "", http.StatusUnauthorized},
		{"GET", "/runs", "read-secret", http.StatusOK},
		{"GET", "/runs", "write-secret", http.StatusOK},
		{"GET", "/runs", "wrong", http.StatusUnauthorized},
		{"GET", "/state", "write-secret", http.StatusOK},
		{"POST", "/rebuild", "read-secret", http.StatusUnauthorized},
		{"POST", "/rebuild", "", http.StatusUnauthorized},
		{"POST", "/rebuild", "write-secret", http.StatusAccepted},
		{"POST", "/pipelines/app/cache:clear", "read-secret", http.StatusUnauthorized},
		{"POST", "/pipelines/app/cache:clear", "write-secret", http.StatusAccepted},
		{"POST", "/pipelines/nope/cache:clear", "write-secret", http.StatusNotFound},
		{"GET", "/healthz", "", http.StatusOK},
	} {
		require.Equal(t, tt.want, status(tt.method, tt.path, tt.token), "%s %s with %q", tt.method, tt.path, tt.token)
	}
}
