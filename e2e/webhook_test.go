package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sando/tasks"
)

// receiver records webhook deliveries, refusing the first `fail` of them.
type receiver struct {
	mu         sync.Mutex
	fail       int
	attempts   int
	deliveries []delivery
}

type delivery struct {
	body      []byte
	signature string
	event     string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts++
	if rc.attempts <= rc.fail {
		http.Error(w, "try later", http.StatusBadGateway)
		return
	}
	rc.deliveries = append(rc.deliveries, delivery{body: body, signature: r.Header.Get("Sando-Signature"), event: r.Header.Get("Sando-Event")})
}

func (rc *receiver) snapshot() (int, []delivery) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.attempts, append([]delivery(nil), rc.deliveries...)
}

func TestWebhookDeliveredOnceWithRetries(t *testing.T) {
	t.Parallel()
	rc := &receiver{fail: 2}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{secret: "hook-secret", pipeline: `build: "true"
gates:
  - kind: unit
    run: |
      echo "FAIL: TestThing"; exit 1
webhooks:
  - ` + hook.URL + `/sando
`})
	id := s.rebuild("")
	require.Equal(t, "failed", s.waitTerminal(id)["result"])

	require.Eventually(t, func() bool {
		_, d := rc.snapshot()
		return len(d) == 1
	}, 30*time.Second, 50*time.Millisecond, "delivered on the third try")
	time.Sleep(1500 * time.Millisecond) // a duplicate would arrive by now
	attempts, got := rc.snapshot()
	require.Equal(t, 3, attempts, "two refusals, then one success")
	require.Len(t, got, 1, "delivered once")
	d := got[0]
	require.Equal(t, tasks.Sign("hook-secret", d.body), d.signature)
	require.Equal(t, "run.finished", d.event)
	var view map[string]any
	require.NoError(t, json.Unmarshal(d.body, &view))
	require.Equal(t, float64(id), view["run_id"])
	require.Equal(t, "failed", view["result"])
	require.Equal(t, "unit: FAIL: TestThing", view["failure_summary"])

	// The next run is announced by its own delivery.
	s.rebuild(`{"ref":"main"}`)
	require.Eventually(t, func() bool {
		_, d := rc.snapshot()
		return len(d) == 2
	}, 30*time.Second, 50*time.Millisecond)
}
