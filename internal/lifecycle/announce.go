package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"sando.dev/sando/internal/steps"
)

// TypeWebhook delivers a finished run's view to one of the pipeline's
// webhooks. Delivery is its own task, with retries and backoff, so a slow
// or failing receiver never holds up a phase.
const TypeWebhook = "sando:webhook"

// WebhookPayload is the body of a webhook delivery task.
type WebhookPayload struct {
	RunID    int64  `json:"run_id"`
	Pipeline string `json:"pipeline,omitempty"` // absent in tasks of older versions
	Hook     int    `json:"hook"`               // index into the run's pipeline's webhooks
}

// webhookRetries spreads about ten minutes of tries (the worker's retry
// delay doubles from 1 s up to about a minute).
const webhookRetries = 12

// Announce enqueues the webhooks of a run that has reached a terminal
// result, then takes the run out of the store's outbox. followUp calls it
// after a terminal write that won; the janitor calls it again for runs the
// outbox still holds (the settler died or Redis blinked before this
// finished). The task id is fixed per (run, webhook), so a second call for
// the same run delivers nothing twice. On any error the run stays in the
// outbox.
func (l *Lifecycle) Announce(ctx context.Context, runID int64) error {
	if len(l.Pipeline.Webhooks) == 0 {
		return nil // the store keeps no outbox either: nothing to do
	}
	var errs []error
	for i := range l.Pipeline.Webhooks {
		body, _ := json.Marshal(WebhookPayload{RunID: runID, Pipeline: l.Pipeline.Name, Hook: i})
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
