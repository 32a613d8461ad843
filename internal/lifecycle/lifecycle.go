// Package lifecycle owns a run's life: it is started (superseding older
// runs), canceled, passed, failed or expired, and every terminal write that
// wins is followed here, once, by what must follow it:
//
//   - the running task of an aborted run is cancelled, so its processes die;
//   - the run is counted in sando_runs_finished_total;
//   - its webhooks are enqueued, and it leaves the outbox;
//   - the process's own clean-up runs (a worker drops the run's worktree).
//
// The HTTP API, the phase runner and the janitor all settle runs through
// it; none of them writes a terminal result itself.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"sando.dev/sando/internal/metrics"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// Canceler stops a running asynq task (an *asynq.Inspector).
type Canceler interface {
	CancelProcessing(id string) error
}

// Lifecycle settles one pipeline's runs.
type Lifecycle struct {
	Store    *runstore.Store
	Pipeline *pipeline.Pipeline
	Queue    steps.Enqueuer
	// Canceler reaches the task of an aborted run; nil leaves it to the
	// phase, which also watches its run and stops once it is settled.
	Canceler Canceler
	Metrics  *metrics.Metrics // nil counts nothing
	Logger   *slog.Logger
	// AfterSettle, when set, runs after every terminal write this process
	// attempted, won or lost: the run is over either way.
	AfterSettle func(id int64)
}

// ErrNotEnqueued means the run was made but its first step could not be queued
// (Redis went away in between); the run is failed so it never waits for a
// task that does not exist.
var ErrNotEnqueued = errors.New("the first step could not be enqueued")

// Started is what Start did.
type Started = runstore.Created

// Start creates a run (aborting the pipeline's older building runs,
// unless req says not to) and queues its first step. With an idempotency
// key that names an earlier run, nothing new is made: the earlier run's
// first step is queued again in case its starter died before doing so
// (its task id is fixed, so that is harmless).
func (l *Lifecycle) Start(ctx context.Context, req runstore.CreateRequest) (Started, error) {
	created, err := l.Store.Create(ctx, req)
	if err != nil {
		return created, err
	}
	if created.Replayed {
		if res, err := l.Store.Result(ctx, created.ID); err == nil && res == vocab.ResultBuilding {
			if err := steps.EnqueueFirst(ctx, l.Queue, l.Pipeline, created.ID); err != nil {
				return created, fmt.Errorf("%w: %v", ErrNotEnqueued, err) //nolint:errorlint // the status is ErrNotEnqueued's (503): the cause, say a caller's canceled context, is text only
			}
		}
		return created, nil
	}
	l.Metrics.RunStarted(l.Pipeline.Name)
	l.Metrics.Superseded(l.Pipeline.Name, len(created.Superseded))
	for _, old := range created.Superseded {
		l.followUp(ctx, old.ID, true, vocab.ResultAborted, old.TaskID)
	}
	if err := steps.EnqueueFirst(ctx, l.Queue, l.Pipeline, created.ID); err != nil {
		// Never leave a run building with no task to move it.
		_, _ = l.Fail(ctx, created.ID, "could not enqueue the fetch: "+err.Error())
		return created, fmt.Errorf("%w: %v", ErrNotEnqueued, err) //nolint:errorlint // the status is ErrNotEnqueued's (503): the cause, say a caller's canceled context, is text only
	}
	return created, nil
}

// Cancel aborts a building run with the summary "canceled" and stops its
// running task. It returns the run as it is after the write, and whether
// this cancel won (false: the run was already terminal).
func (l *Lifecycle) Cancel(ctx context.Context, id int64) (*vocab.Run, bool, error) {
	// Mark the run first, then cancel: asynq always retries a canceled
	// task, and the retry must find the run finished.
	won, err := l.Store.Abort(ctx, id, vocab.SummaryCanceled)
	if err != nil {
		return nil, false, err
	}
	r, err := l.Store.Get(ctx, id)
	if err != nil {
		return nil, won, err
	}
	if won {
		l.Metrics.Canceled(l.Pipeline.Name)
	}
	l.followUp(ctx, id, won, vocab.ResultAborted, r.TaskID)
	return r, won, nil
}

// Pass settles a run passed. It reports whether this write won.
func (l *Lifecycle) Pass(ctx context.Context, id int64) (bool, error) {
	won, err := l.Store.Pass(ctx, id)
	return l.passed(ctx, id, won, err)
}

// PassGate records gate g of run id (built at version) passed and, when
// it is the last of the pipeline's gates to pass, settles the run passed
// in the same write (runstore's PassGate), followed as Pass is. It
// returns the write's outcome, the run's gates after it, and whether it
// settled the run.
func (l *Lifecycle) PassGate(ctx context.Context, id int64, version string, g vocab.Gate) (runstore.Outcome, []vocab.Gate, bool, error) {
	o, gates, settled, err := l.Store.PassGate(ctx, id, l.Pipeline.Tier, version, g, len(l.Pipeline.Gates))
	if err != nil || !settled {
		return o, gates, false, err
	}
	_, err = l.passed(ctx, id, true, nil)
	return o, gates, true, err
}

// passed follows a pass: with reuse: tree the run is then filed for later
// runs of its tree to reuse (best effort: a run not filed is only built
// again).
func (l *Lifecycle) passed(ctx context.Context, id int64, won bool, err error) (bool, error) {
	if err == nil && won && l.Pipeline.Reuse == pipeline.ReuseTree {
		if _, ierr := l.Store.IndexPassed(ctx, id); ierr != nil {
			l.logger().Warn("passed run not filed for reuse", "run_id", id, "err", ierr)
		}
	}
	return l.settled(ctx, id, won, err, vocab.ResultPassed)
}

// Reuse settles run id, fetched at sha, passed at once with the result
// of the passed run its reuse key names (reuse: tree), if there is one.
// It reports that run's id and whether the run is settled now (by this
// write, or already by another: either way there is nothing to build);
// with no run to reuse, neither.
func (l *Lifecycle) Reuse(ctx context.Context, id int64, sha, key string) (from int64, settled bool, err error) {
	o, from, err := l.Store.Reuse(ctx, id, sha, key)
	if err != nil || o == 0 {
		return 0, false, err
	}
	_, err = l.settled(ctx, id, o == runstore.Applied, nil, vocab.ResultPassed)
	return from, true, err
}

// Fail settles a run failed with summary. It reports whether this write won.
func (l *Lifecycle) Fail(ctx context.Context, id int64, summary string) (bool, error) {
	won, err := l.Store.Fail(ctx, id, summary)
	return l.settled(ctx, id, won, err, vocab.ResultFailed)
}

// Expire fails a run the janitor found stalled, unless it made progress
// since seen. It reports whether it failed the run.
func (l *Lifecycle) Expire(ctx context.Context, id int64, seen time.Time, summary string) (bool, error) {
	won, err := l.Store.Expire(ctx, id, seen, summary)
	return l.settled(ctx, id, won, err, vocab.ResultFailed)
}

func (l *Lifecycle) settled(ctx context.Context, id int64, won bool, err error, result vocab.Result) (bool, error) {
	if err != nil {
		return won, err
	}
	l.followUp(ctx, id, won, result, "")
	return won, nil
}

// followUp is what follows a terminal write, in one place (see the
// package comment). taskID, for an aborted run, is the task to stop.
func (l *Lifecycle) followUp(ctx context.Context, id int64, won bool, result vocab.Result, taskID string) {
	if l.AfterSettle != nil {
		defer l.AfterSettle(id)
	}
	if !won {
		return
	}
	l.Metrics.RunFinished(l.Pipeline.Name, string(result))
	if taskID != "" && l.Canceler != nil {
		// Best effort: the phase also notices the settle on its own, and a
		// redelivered phase of a finished run does nothing.
		if err := l.Canceler.CancelProcessing(taskID); err != nil {
			l.logger().Warn("cancel of running phase failed", "run_id", id, "task_id", taskID, "err", err)
		}
	}
	if err := l.Announce(ctx, id); err != nil {
		// The run stays in the outbox: the janitor announces it later.
		l.logger().Error("webhooks not enqueued", "run_id", id, "err", err)
	}
}

func (l *Lifecycle) logger() *slog.Logger {
	if l.Logger == nil {
		return slog.Default()
	}
	return l.Logger
}
