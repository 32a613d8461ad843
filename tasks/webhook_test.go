package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/lifecycle"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// hookReceiver records the webhook deliveries it gets.
type hookReceiver struct {
	mu  sync.Mutex
	got []hookDelivery
}

type hookDelivery struct {
	path   string
	header http.Header
	body   []byte
}

func (h *hookReceiver) ServeHTTP(_ http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, hookDelivery{r.URL.Path, r.Header.Clone(), body})
}

func (h *hookReceiver) count() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.got) }

// withWebhooks gives the bundle's pipeline one webhook and a store that
// keeps the outbox, as app wiring does for such a pipeline.
func withWebhooks(t *testing.T, b *testBundle, url string) {
	t.Helper()
	b.pipeline.Webhooks = []string{url}
	b.runner.WebhookSecret = "hook-secret"
	b.store = runstore.New(b.runner.Redis, b.pipeline.Name, runstore.WithWebhooks(true))
}

func outboxIDs(t *testing.T, b *testBundle) []string {
	t.Helper()
	ids, err := b.runner.Redis.ZRange(context.Background(), b.store.Keys().Outbox(), 0, -1).Result()
	require.NoError(t, err)
	return ids
}

// The process that won a run's terminal write dies before enqueueing its
// webhooks (kill -9 between the two): the janitor's sweep finds the run in
// the outbox once the grace has passed and the webhook still arrives,
// signed, with the run's view.
func TestJanitorDeliversWebhooksOfCrashedSettler(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	rc := &hookReceiver{}
	hook := httptest.NewServer(rc) // 127.0.0.1
	defer hook.Close()
	withWebhooks(t, b, hook.URL+"/sando")
	ctx := context.Background()

	// Settled a minute ago by a process that then died: the terminal write
	// won, and nobody announced it.
	lost := newRun(t, b)
	ago := runstore.New(b.runner.Redis, b.pipeline.Name, runstore.WithWebhooks(true),
		runstore.WithClock(func() time.Time { return time.Now().Add(-time.Minute) }))
	won, err := ago.Fail(ctx, lost, "compile: undefined: x")
	require.NoError(t, err)
	require.True(t, won)
	// Settled just now: its settler may still be enqueueing; left alone.
	fresh := newRun(t, b)
	_, err = b.store.Pass(ctx, fresh)
	require.NoError(t, err)

	var logs bytes.Buffer // written only by the sweep below, in this goroutine
	b.runner.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	require.NoError(t, b.runner.sweep(ctx, nil))
	require.Equal(t, []string{strconv.FormatInt(fresh, 10)}, outboxIDs(t, b),
		"the recovered run leaves the outbox; one inside the grace stays")
	require.Contains(t, logs.String(), `level=WARN msg="webhooks recovered from the outbox" run_id=`+strconv.FormatInt(lost, 10)+" pipeline=app\n")
	b.runner.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	// What the sweep enqueued, before any server takes it: one delivery,
	// the lost run's. (No sleep waiting for a duplicate to show up.)
	insp := asynq.NewInspector(b.redis)
	defer insp.Close()
	pending, err := insp.ListPendingTasks("system")
	require.NoError(t, err)
	require.Len(t, pending, 1, "only the recovered run was enqueued")
	require.Contains(t, string(pending[0].Payload), `"run_id":`+strconv.FormatInt(lost, 10)+`,`)

	srv := asynq.NewServer(b.redis, asynq.Config{
		Concurrency: 1, Queues: map[string]int{"system": 1},
		TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	b.runner.Register(mux)
	require.NoError(t, srv.Start(mux))
	defer srv.Shutdown()
	require.Eventually(t, func() bool { return rc.count() == 1 }, 20*time.Second, 20*time.Millisecond)

	rc.mu.Lock()
	d := rc.got[0]
	rc.mu.Unlock()
	require.Equal(t, "/sando", d.path)
	require.Equal(t, Sign("hook-secret", d.body), d.header.Get("Sando-Signature"))
	require.Equal(t, "run.finished", d.header.Get("Sando-Event"))
	require.Equal(t, "app:"+strconv.FormatInt(lost, 10)+":webhook-0", d.header.Get("Sando-Delivery"))
	var view map[string]any
	require.NoError(t, json.Unmarshal(d.body, &view))
	require.Equal(t, float64(lost), view["run_id"])
	require.Equal(t, string(vocab.ResultFailed), view["result"])
	require.Equal(t, "compile: undefined: x", view["failure_summary"])
}

// failingQueue refuses every enqueue, as Redis away would.
type failingQueue struct{}

func (failingQueue) EnqueueContext(context.Context, *asynq.Task, ...asynq.Option) (*asynq.TaskInfo, error) {
	return nil, errors.New("connection refused")
}

// Announce takes a run out of the outbox only once its webhooks are
// enqueued; a second call (the janitor racing the settler) is harmless.
func TestAnnounceLeavesOutboxOnlyWhenEnqueued(t *testing.T) {
	t.Parallel()
	b := setup(t, "true")
	withWebhooks(t, b, "http://127.0.0.1:1/sando")
	ctx := context.Background()
	id := newRun(t, b)
	_, err := b.store.Fail(ctx, id, "x")
	require.NoError(t, err)
	require.Equal(t, []string{strconv.FormatInt(id, 10)}, outboxIDs(t, b))

	failing := &lifecycle.Lifecycle{Store: b.store, Pipeline: b.pipeline, Queue: failingQueue{}}
	require.Error(t, failing.Announce(ctx, id))
	life := &lifecycle.Lifecycle{Store: b.store, Pipeline: b.pipeline, Queue: b.runner.Queue}
	require.Equal(t, []string{strconv.FormatInt(id, 10)}, outboxIDs(t, b), "a failed enqueue leaves the run for the janitor")

	require.NoError(t, life.Announce(ctx, id))
	require.Empty(t, outboxIDs(t, b))
	require.NoError(t, life.Announce(ctx, id), "the task id dedupes a second call")
	require.Len(t, pending(t, b, "system"), 1)
}

// A worker's terminal write keeps the webhook outbox exactly when the
// run's definition lists webhooks: without them it writes nothing more.
func TestOutboxOnlyForRunsWithWebhooks(t *testing.T) {
	t.Parallel()
	for name, hooks := range map[string][]string{"webhooks": {"http://127.0.0.1:1/hook"}, "no webhooks": nil} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, "echo 'x.c:1:1: error: no' >&2; exit 1")
			b.pipeline.Webhooks = hooks
			ctx := context.Background()
			id := newRun(t, b)
			require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id, Pipeline: "app"})))
			b.runner.Queue = failingQueue{} // the webhooks cannot be enqueued: the outbox keeps them
			require.NoError(t, b.runner.handle(ctx, task(steps.Compile, steps.Payload{RunID: id, Pipeline: "app"})))
			n, err := b.runner.Redis.ZCard(ctx, b.store.Keys().Outbox()).Result()
			require.NoError(t, err)
			require.Equal(t, int64(len(hooks)), n)
		})
	}
}

// A receiver that answers a redirect does not get the signed body sent
// where it points: the 3xx is a failed delivery, retried like one.
func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	inner := &hookReceiver{}
	admin := httptest.NewServer(inner)
	defer admin.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, admin.URL+"/internal/admin", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	b := setup(t, "true")
	withWebhooks(t, b, redirect.URL+"/hook")
	ctx := context.Background()
	id := newRun(t, b)
	_, err := b.store.Fail(ctx, id, "x")
	require.NoError(t, err)
	body, _ := json.Marshal(lifecycle.WebhookPayload{RunID: id, Pipeline: "app", Hook: 0})
	err = b.runner.deliver(ctx, asynq.NewTask(lifecycle.TypeWebhook, body))
	require.ErrorContains(t, err, "status 307", "a redirect is a failed delivery")
	require.Zero(t, inner.count(), "nothing reached the redirect's target")
}
