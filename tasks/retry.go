package tasks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"sando.dev/sando/internal/steps"
)

// RetryDelay replaces asynq's default (n⁴ + 15 s + jitter, minutes after a
// few tries): a task of a lost worker comes back at once, and other
// infrastructure failures back off from 1 s to about a minute.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	if errors.Is(err, asynq.ErrLeaseExpired) || errors.Is(err, context.Canceled) {
		// A lost worker, or a cancel (asynq always retries those): the
		// redelivery either reruns the phase or sees the run finished.
		return time.Second
	}
	d := time.Second << min(n, 6)
	return d + rand.N(d/2+1) //nolint:gosec // jitter spreads retries; nothing about it must be unguessable
}

// HandleError is the asynq error handler: when the last retry of a phase
// fails, the run is failed with a summary naming the phase and the error,
// so it never stays building for want of a worker that can run it.
func (r *Runner) HandleError(ctx context.Context, t *asynq.Task, err error) {
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	r.giveUpIfLast(ctx, t, err, retried, maxRetry)
}

func (r *Runner) giveUpIfLast(ctx context.Context, t *asynq.Task, err error, retried, maxRetry int) {
	if errors.Is(err, asynq.SkipRetry) || retried < maxRetry {
		return // settled by the phase itself, or another try is coming
	}
	pl, k, derr := steps.DecodePayload(t)
	if derr != nil {
		return
	}
	wctx, cancel := settling(ctx)
	defer cancel()
	j, _, oerr := r.openID(wctx, pl)
	if oerr != nil {
		r.Logger.Error("phase gave up; its run cannot be failed", "run_id", pl.RunID, "phase", k.Phase, "err", err, "store_err", oerr)
		return
	}
	summary := fmt.Sprintf("%s: %v (gave up after %d attempts)", k.Phase, err, retried+1)
	won, ferr := j.life.Fail(wctx, pl.RunID, summary)
	r.Logger.Error("phase gave up", "run_id", pl.RunID, "phase", k.Phase, "err", err, "failed_run", won, "store_err", ferr)
}
