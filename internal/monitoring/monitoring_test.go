package monitoring

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
)

func mount(t *testing.T, o Options) *gin.Engine {
	t.Helper()
	r, _ := mountOn(t, o)
	return r
}

func mountOn(t *testing.T, o Options) (*gin.Engine, *miniredis.Miniredis) {
	t.Helper()
	m := miniredis.RunT(t)
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	o.Redis = asynq.RedisClientOpt{Addr: m.Addr()}
	o.Logger = slog.New(slog.DiscardHandler)
	c, err := Mount(r, o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return r, m
}

func serve(r http.Handler, method, path string, auth func(*http.Request)) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(context.Background(), method, path, nil)
	if auth != nil {
		auth(req)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	return w
}

func TestMountNeedsRedis(t *testing.T) {
	_, err := Mount(gin.New(), Options{})
	require.ErrorContains(t, err, "no Redis")
}

func TestMonitoringRoutesAndAuth(t *testing.T) {
	r := mount(t, Options{Token: "tok"})
	basic := func(req *http.Request) { req.SetBasicAuth("anyone", "tok") }
	bearer := func(req *http.Request) { req.Header.Set("Authorization", "Bearer tok") }
	wrong := func(req *http.Request) { req.SetBasicAuth("anyone", "nope") }

	for _, path := range []string{"/monitoring", "/monitoring/", "/monitoring/api/queues"} {
		for _, a := range []func(*http.Request){nil, wrong} {
			w := serve(r, "GET", path, a)
			require.Equal(t, http.StatusUnauthorized, w.Code, path)
			require.Equal(t, `Basic realm="sando"`, w.Header().Get("WWW-Authenticate"))
		}
		for _, a := range []func(*http.Request){basic, bearer} {
			w := serve(r, "GET", path, a)
			require.Equal(t, http.StatusOK, w.Code, "%s: %s", path, w.Body)
		}
	}
	w := serve(r, "GET", "/monitoring/api/queues", bearer)
	require.JSONEq(t, `{"queues":[]}`, w.Body.String())
	// Not read-only: DELETE reaches asynqmon (no such queue: 404, not 405).
	w = serve(r, "DELETE", "/monitoring/api/queues/nope", bearer)
	require.Equal(t, http.StatusNotFound, w.Code, "body: %s", w.Body)
	// Outside the mount nothing is routed.
	require.Equal(t, http.StatusNotFound, serve(r, "GET", "/monitoringx", bearer).Code)
}

func TestMonitoringReadOnly(t *testing.T) {
	r := mount(t, Options{ReadOnly: true})
	require.Equal(t, http.StatusOK, serve(r, "GET", "/monitoring/api/queues", nil).Code)
	for _, c := range [][2]string{{"DELETE", "/monitoring/api/queues/fetch"}, {"POST", "/monitoring/api/queues/fetch:pause"}} {
		w := serve(r, c[0], c[1], nil)
		require.Equal(t, http.StatusMethodNotAllowed, w.Code, c)
		body, _ := io.ReadAll(w.Body)
		require.Contains(t, string(body), "read-only")
	}
}

// While Redis is away Asynqmon's API answers a bare 500 with the dial
// error; Sando's wrapper turns it into the 503 every other route answers.
// Asynqmon's own 500s with Redis up stay 500s.
func TestMonitoringAPIWhileRedisDown(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	ping := func(context.Context) error {
		if down.Load() {
			return errors.New("redis down")
		}
		return nil
	}
	r, m := mountOn(t, Options{Ping: ping})
	require.Equal(t, http.StatusOK, serve(r, "GET", "/monitoring/api/queues", nil).Code)
	// Redis up, Asynqmon fails on its own (no Prometheus configured): kept.
	w := serve(r, "GET", "/monitoring/api/metrics", nil)
	require.Equal(t, http.StatusInternalServerError, w.Code, "body: %s", w.Body)
	require.Empty(t, w.Header().Get("Retry-After"))

	m.Close()
	down.Store(true)
	// One route: each costs go-redis's dial retries (about 1.7 s).
	w = serve(r, "GET", "/monitoring/api/queues", nil)
	require.Equal(t, http.StatusServiceUnavailable, w.Code, "body: %s", w.Body)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
	require.Contains(t, w.Body.String(), `"status":503`)
	// The console's page is not Redis-backed and still loads.
	require.Equal(t, http.StatusOK, serve(r, "GET", "/monitoring/", nil).Code)
}
