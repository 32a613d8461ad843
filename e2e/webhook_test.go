package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
	"sando.dev/sando/tasks"
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
	view := signedView(t, got[0])
	require.Equal(t, float64(id), view["run_id"])
	require.Equal(t, "failed", view["result"])
	require.Equal(t, "unit: FAIL: TestThing", view["failure_summary"])
	require.Zero(t, s.redis.Client(t).Exists(context.Background(), runstore.NewKeys("default").Outbox()).Val(),
		"the settler took the run out of the outbox once its webhook was enqueued")

	// The next run is announced by its own delivery.
	s.rebuild(`{"ref":"main"}`)
	require.Eventually(t, func() bool {
		_, d := rc.snapshot()
		return len(d) == 2
	}, 30*time.Second, 50*time.Millisecond)
}

// The process that won a run's terminal write dies before enqueueing the
// run's webhooks (here: the API's cancel, whose Abort the test makes
// itself and then does nothing more). The terminal write left the run in
// the outbox, and the fleet's next janitor sweep delivers the webhook.
//
// As in TestJanitorFailsRunOfVanishedWorker, time is moved instead of
// waited for: the outbox entry is dated back past the janitor's grace, and
// the test offers the fleet a sweep itself.
func TestWebhookRecoveredAfterSettlerCrash(t *testing.T) {
	t.Parallel()
	rc := &receiver{}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{secret: "hook-secret", pipeline: `build: "sleep 30"
gates:
  - kind: unit
    run: "true"
webhooks:
  - ` + hook.URL + `/sando
`})
	id := s.rebuild("")
	s.waitRun(id, 20*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })

	ctx := context.Background()
	rdb := s.redis.Client(t)
	q, insp := asynqOf(t, asynq.RedisClientOpt{Addr: s.redis.Addr})
	// The worker sweeps once as it starts: let that sweep be over, or it
	// might be the one that finds the run in the outbox below.
	require.Eventually(t, func() bool {
		done, err := insp.ListCompletedTasks(steps.SystemQueue)
		return err == nil && slices.ContainsFunc(done, func(ti *asynq.TaskInfo) bool { return ti.Type == tasks.TypeJanitor })
	}, 20*time.Second, 20*time.Millisecond, "the worker's start-up sweep")
	store := runstore.New(rdb, "default", runstore.WithWebhooks(true))
	won, err := store.Abort(ctx, int64(id), vocab.SummaryCanceled)
	require.NoError(t, err)
	require.True(t, won)
	outbox := store.Keys().Outbox()
	require.Equal(t, []string{strconv.Itoa(id)}, rdb.ZRange(ctx, outbox, 0, -1).Val())
	// As if the settler had died a minute ago.
	require.NoError(t, rdb.ZAddXX(ctx, outbox, redis.Z{Score: float64(time.Now().Add(-time.Minute).UnixMilli()), Member: id}).Err())
	time.Sleep(500 * time.Millisecond)
	attempts, _ := rc.snapshot()
	require.Zero(t, attempts, "nobody announced the run")

	require.NoError(t, tasks.EnqueueJanitor(ctx, q, time.Now().Add(time.Hour)))
	require.Eventually(t, func() bool {
		_, d := rc.snapshot()
		return len(d) == 1
	}, 20*time.Second, 50*time.Millisecond, "the janitor enqueued the lost webhook")
	_, got := rc.snapshot()
	view := signedView(t, got[0])
	require.Equal(t, float64(id), view["run_id"])
	require.Equal(t, "aborted", view["result"])
	require.Equal(t, vocab.SummaryCanceled, view["failure_summary"])
	require.Zero(t, rdb.Exists(ctx, outbox).Val(), "the outbox is empty")
}

// signedView checks a delivery's signature and event and returns its run
// view.
func signedView(t *testing.T, d delivery) map[string]any {
	t.Helper()
	require.Equal(t, tasks.Sign("hook-secret", d.body), d.signature)
	require.Equal(t, "run.finished", d.event)
	var view map[string]any
	require.NoError(t, json.Unmarshal(d.body, &view))
	return view
}
