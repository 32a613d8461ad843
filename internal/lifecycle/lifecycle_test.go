package lifecycle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/metrics"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// recorder stands in for asynq's client and Inspector: it records what
// the lifecycle enqueues and cancels.
type recorder struct {
	mu       sync.Mutex
	enqueued []string // task types
	canceled []string // task ids
	fail     bool     // every enqueue fails, as with Redis away
}

func (r *recorder) EnqueueContext(_ context.Context, t *asynq.Task, _ ...asynq.Option) (*asynq.TaskInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return nil, errors.New("connection refused")
	}
	r.enqueued = append(r.enqueued, t.Type())
	return &asynq.TaskInfo{}, nil
}

func (r *recorder) CancelProcessing(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.canceled = append(r.canceled, id)
	return nil
}

type testBundle struct {
	life     *Lifecycle
	store    *runstore.Store
	rec      *recorder
	metrics  *metrics.Metrics
	afterFor []int64 // runs AfterSettle saw
}

func setup(t *testing.T, webhooks ...string) *testBundle {
	t.Helper()
	srv := redistest.Start(t)
	p := &pipeline.Pipeline{Name: "app", Webhooks: webhooks}
	store := runstore.New(srv.Client(t), p.Name, runstore.WithWebhooks(len(webhooks) > 0))
	b := &testBundle{store: store, rec: &recorder{}, metrics: metrics.New()}
	b.life = &Lifecycle{
		Store: store, Pipeline: p, Queue: b.rec, Canceler: b.rec, Metrics: b.metrics,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		AfterSettle: func(id int64) { b.afterFor = append(b.afterFor, id) },
	}
	return b
}

// finished is sando_runs_finished_total's lines, as /metrics shows them.
func (b *testBundle) finished(t *testing.T) []string {
	t.Helper()
	w := httptest.NewRecorder()
	b.metrics.Handler().ServeHTTP(w, httptest.NewRequestWithContext(context.Background(), "GET", "/metrics", nil))
	var out []string
	for line := range strings.SplitSeq(w.Body.String(), "\n") {
		if strings.HasPrefix(line, "sando_runs_finished_total{") {
			out = append(out, line)
		}
	}
	return out
}

// A newer run supersedes the building one: the old run is aborted, its
// running task cancelled, its finish counted once, and the new run's first
// step enqueued.
func TestStartSupersedes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	first, err := b.life.Start(ctx, runstore.CreateRequest{})
	require.NoError(t, err)
	_, _, err = b.store.SetPhase(ctx, first.ID, vocab.PhaseFetching, "app:1:fetch", runstore.Where{}, "")
	require.NoError(t, err)

	second, err := b.life.Start(ctx, runstore.CreateRequest{})
	require.NoError(t, err)
	require.Equal(t, []runstore.Superseded{{ID: first.ID, TaskID: "app:1:fetch"}}, second.Superseded)
	require.Equal(t, []string{"app:1:fetch"}, b.rec.canceled)
	require.Equal(t, []string{"sando:fetch", "sando:fetch"}, b.rec.enqueued)
	require.Equal(t, []int64{first.ID}, b.afterFor)
	require.Equal(t, []string{`sando_runs_finished_total{pipeline="app",result="aborted"} 1`}, b.finished(t))
	r, err := b.store.Get(ctx, first.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.SummarySuperseded, r.FailureSummary)
}

// A run whose first step cannot be queued is failed at once, never left
// building with no task to move it.
func TestStartFailsRunItCannotEnqueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.rec.fail = true
	ctx := context.Background()
	started, err := b.life.Start(ctx, runstore.CreateRequest{})
	require.ErrorIs(t, err, ErrNotEnqueued)
	r, err := b.store.Get(ctx, started.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.ResultFailed, r.Result)
	require.Contains(t, r.FailureSummary, "could not enqueue the fetch")
	require.Equal(t, []string{`sando_runs_finished_total{pipeline="app",result="failed"} 1`}, b.finished(t))
}

// Every terminal transition follows up once when it wins, and not at all
// (but for the process's clean-up) when another write won first.
func TestSettleFollowsUpOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc   string
		settle func(context.Context, *Lifecycle, int64) (bool, error)
		result vocab.Result
	}{
		{"pass", func(ctx context.Context, l *Lifecycle, id int64) (bool, error) { return l.Pass(ctx, id) }, vocab.ResultPassed},
		{"fail", func(ctx context.Context, l *Lifecycle, id int64) (bool, error) { return l.Fail(ctx, id, "compile: x") }, vocab.ResultFailed},
		{"cancel", func(ctx context.Context, l *Lifecycle, id int64) (bool, error) {
			_, won, err := l.Cancel(ctx, id)
			return won, err
		}, vocab.ResultAborted},
		{"expire", func(ctx context.Context, l *Lifecycle, id int64) (bool, error) {
			r, err := l.Store.Get(ctx, id)
			if err != nil {
				return false, err
			}
			return l.Expire(ctx, id, r.ProgressAt, "fetching: no progress")
		}, vocab.ResultFailed},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			b := setup(t, "http://127.0.0.1:1/hook")
			ctx := context.Background()
			started, err := b.life.Start(ctx, runstore.CreateRequest{})
			require.NoError(t, err)
			won, err := tt.settle(ctx, b.life, started.ID)
			require.NoError(t, err)
			require.True(t, won)
			won, err = tt.settle(ctx, b.life, started.ID)
			require.NoError(t, err)
			require.False(t, won, "the second terminal write loses")

			r, err := b.store.Get(ctx, started.ID)
			require.NoError(t, err)
			require.Equal(t, tt.result, r.Result)
			require.Equal(t, []string{`sando_runs_finished_total{pipeline="app",result="` + string(tt.result) + `"} 1`}, b.finished(t))
			require.Equal(t, []string{"sando:fetch", TypeWebhook}, b.rec.enqueued, "one webhook, for the write that won")
			require.Equal(t, []int64{started.ID, started.ID}, b.afterFor, "clean-up follows every attempt")
			left, err := b.store.Undelivered(ctx, r.FinishedAt.Add(1), 10)
			require.NoError(t, err)
			require.Empty(t, left, "announced: out of the outbox")
		})
	}
}

// The last of a run's gates to pass settles it passed in its own write,
// followed up as Pass is; an earlier gate's pass does not, and a pass
// recorded after the run settled changes nothing.
func TestPassGateSettlesWithTheLastGate(t *testing.T) {
	t.Parallel()
	b := setup(t, "http://127.0.0.1:1/hook")
	b.life.Pipeline.Tier = "host"
	b.life.Pipeline.Gates = []pipeline.Gate{{Kind: "unit"}, {Kind: "smoke"}}
	ctx := context.Background()
	started, err := b.life.Start(ctx, runstore.CreateRequest{})
	require.NoError(t, err)
	id := started.ID

	o, gates, settled, err := b.life.PassGate(ctx, id, "1.0", vocab.Gate{Kind: "unit", LogRef: "1/gate-unit.log"})
	require.NoError(t, err)
	require.Equal(t, runstore.Applied, o)
	require.False(t, settled, "smoke has not passed")
	require.Len(t, gates, 1)
	require.Equal(t, vocab.GatePassed, gates[0].Status)
	r, err := b.store.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, vocab.ResultBuilding, r.Result)
	require.Empty(t, b.finished(t))
	require.Empty(t, b.afterFor)

	_, gates, settled, err = b.life.PassGate(ctx, id, "1.0", vocab.Gate{Kind: "smoke", LogRef: "1/gate-smoke.log"})
	require.NoError(t, err)
	require.True(t, settled)
	require.Len(t, gates, 2)
	r, err = b.store.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, vocab.ResultPassed, r.Result)
	require.Equal(t, vocab.PhaseDone, r.Phase)
	require.Equal(t, []string{`sando_runs_finished_total{pipeline="app",result="passed"} 1`}, b.finished(t))
	require.Equal(t, []string{"sando:fetch", TypeWebhook}, b.rec.enqueued)
	require.Equal(t, []int64{id}, b.afterFor)
	left, err := b.store.Undelivered(ctx, r.FinishedAt.Add(1), 10)
	require.NoError(t, err)
	require.Empty(t, left, "announced: out of the outbox")
	tier, err := b.store.TierGates(ctx, "host", "1.0")
	require.NoError(t, err)
	require.Len(t, tier, 2, "both gates are the version's latest")

	o, _, settled, err = b.life.PassGate(ctx, id, "1.0", vocab.Gate{Kind: "smoke"})
	require.NoError(t, err)
	require.Equal(t, runstore.Finished, o)
	require.False(t, settled)
	require.Len(t, b.finished(t), 1)
	require.Equal(t, []int64{id}, b.afterFor, "no terminal write was attempted")
}
