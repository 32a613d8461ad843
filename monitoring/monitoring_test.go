package monitoring

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
)

func mount(t *testing.T, o Options) *gin.Engine {
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
	return r
}

func serve(r http.Handler, method, path string, auth func(*http.Request)) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
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
