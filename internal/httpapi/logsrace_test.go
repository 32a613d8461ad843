package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/lograce"
)

// A build swapping its log between a way out of the logs root and a file
// a check would pass never makes GET /logs serve the secret outside: each
// answer is the log's own bytes or a 404.
func TestLogsRace(t *testing.T) {
	t.Parallel()
	l := datadir.Layout{Root: t.TempDir()}
	h := (&Server{Layout: l}).Handler()
	lograce.Check(t, l, func(t *testing.T, ref string) ([]byte, bool) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/logs/"+ref, nil))
		switch w.Code {
		case http.StatusOK:
			return w.Body.Bytes(), true
		case http.StatusNotFound:
			return nil, false
		}
		t.Errorf("GET /logs/%s: %d %s", ref, w.Code, w.Body)
		return nil, false
	})
}
