package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"sando/steps"
)

// TypeWebhook delivers a finished run's view to one of the pipeline's
// webhooks. Delivery is its own task, with retries and backoff, so a slow
// or failing receiver never holds up a phase.
const TypeWebhook = "sando:webhook"

// WebhookPayload is the body of a webhook delivery task.
type WebhookPayload struct {
	RunID int64 `json:"run_id"`
	Hook  int   `json:"hook"` // index into the pipeline's webhooks
}

// webhookRetries spreads about ten minutes of tries (the worker's retry
// delay doubles from 1 s up to about a minute).
const webhookRetries = 12

// Announce enqueues the webhooks of a run that has reached a terminal
// result, then takes the run out of the store's outbox. followUp calls it
// after a terminal write that won; RecoverOutbox calls it again for runs
// the outbox still holds (the settler died or Redis blinked before this
// finished). The task id is fixed per (run, webhook), so a second call for
// the same run delivers nothing twice. On any error the run stays in the
// outbox.
func (l *Lifecycle) Announce(ctx context.Context, runID int64) error {
	if len(l.Pipeline.Webhooks) == 0 {
		return nil // the store keeps no outbox either: nothing to do
	}
	var errs []error
	for i := range l.Pipeline.Webhooks {
		body, _ := json.Marshal(WebhookPayload{RunID: runID, Hook: i})
		_, err := l.Queue.EnqueueContext(ctx, asynq.NewTask(TypeWebhook, body),
			asynq.Queue(steps.SystemQueue),
			asynq.TaskID(l.Pipeline.Name+":"+strconv.FormatInt(runID, 10)+":webhook-"+strconv.Itoa(i)),
			asynq.MaxRetry(webhookRetries),
			asynq.Timeout(time.Minute),
			asynq.Retention(24*time.Hour),
		)
		if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			errs = append(errs, fmt.Errorf("enqueue webhook %d of run %d: %w", i, runID, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return l.Store.Delivered(ctx, runID)
}

// RecoverOutbox announces up to limit runs that settled before olderThan
// and are still in the outbox: the process that won their terminal write
// died (or lost Redis) before enqueueing their webhooks. It returns the
// ids it announced.
func (l *Lifecycle) RecoverOutbox(ctx context.Context, olderThan time.Time, limit int) ([]int64, error) {
	if len(l.Pipeline.Webhooks) == 0 {
		return nil, nil // no outbox is kept: save the sweep a command
	}
	ids, err := l.Store.Undelivered(ctx, olderThan, limit)
	if err != nil {
		return nil, err
	}
	var done []int64
	var errs []error
	for _, id := range ids {
		if err := l.Announce(ctx, id); err != nil {
			errs = append(errs, err) // still in the outbox: the next sweep tries again
			continue
		}
		done = append(done, id)
	}
	return done, errors.Join(errs...)
}
