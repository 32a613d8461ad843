package tasks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"sando/pipeline"
	"sando/runstore"
	"sando/runview"
)

// TypeWebhook delivers a finished run's view to one of the pipeline's
// webhooks. Delivery is its own task, with retries and backoff, so a slow
// or failing receiver never holds up a phase.
const TypeWebhook = "sando:webhook"

type webhookPayload struct {
	RunID int64 `json:"run_id"`
	Hook  int   `json:"hook"` // index into the pipeline's webhooks
}

// webhookRetries spreads about ten minutes of tries (RetryDelay doubles
// from 1 s up to about a minute).
const webhookRetries = 12

// Settled enqueues the webhooks of a run that has reached a terminal
// result, then takes the run out of the store's outbox. Call it after a
// terminal write that won; the janitor calls it again for runs the outbox
// still holds (the settler died or Redis blinked before this finished).
// The task id is fixed per (run, webhook), so a second call for the same
// run delivers nothing twice. On any error the run stays in the outbox.
func Settled(ctx context.Context, q Enqueuer, s *runstore.Store, p *pipeline.Pipeline, runID int64) error {
	if len(p.Webhooks) == 0 {
		return nil // the store keeps no outbox either: nothing to do
	}
	var errs []error
	for i := range p.Webhooks {
		body, _ := json.Marshal(webhookPayload{RunID: runID, Hook: i})
		_, err := q.EnqueueContext(ctx, asynq.NewTask(TypeWebhook, body),
			asynq.Queue(SystemQueue),
			asynq.TaskID(p.Name+":"+strconv.FormatInt(runID, 10)+":webhook-"+strconv.Itoa(i)),
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
	return s.Delivered(ctx, runID)
}

// Sign is the Sando-Signature header value for body: "sha256=" and the hex
// HMAC-SHA256 of the body under secret (GitHub's scheme, so existing
// verifiers work).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

var webhookClient = &http.Client{Timeout: 10 * time.Second}

func (r *Runner) deliver(ctx context.Context, t *asynq.Task) error {
	var p webhookPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("undecodable webhook payload: %v: %w", err, asynq.SkipRetry)
	}
	if p.Hook < 0 || p.Hook >= len(r.Pipeline.Webhooks) {
		return fmt.Errorf("webhook %d not in the pipeline: %w", p.Hook, asynq.SkipRetry)
	}
	target := r.Pipeline.Webhooks[p.Hook]
	cur, err := r.Store.Get(ctx, p.RunID)
	if errors.Is(err, runstore.ErrNotFound) {
		return fmt.Errorf("run %d: %w", p.RunID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	body, err := json.Marshal(runview.Of(cur))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %d: %v: %w", p.Hook, err, asynq.SkipRetry)
	}
	id, _ := asynq.GetTaskID(ctx)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sando-webhook")
	req.Header.Set("Sando-Event", "run.finished")
	req.Header.Set("Sando-Delivery", id)
	if r.WebhookSecret != "" {
		req.Header.Set("Sando-Signature", Sign(r.WebhookSecret, body))
	}
	resp, err := webhookClient.Do(req)
	host := hostOf(target)
	if err != nil {
		r.Logger.Warn("webhook delivery failed", "run_id", p.RunID, "host", host, "err", err)
		return fmt.Errorf("webhook to %s: %w", host, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		r.Logger.Warn("webhook refused", "run_id", p.RunID, "host", host, "status", resp.StatusCode)
		return fmt.Errorf("webhook to %s: status %d", host, resp.StatusCode)
	}
	r.Logger.Info("webhook delivered", "run_id", p.RunID, "host", host, "result", cur.Result)
	return nil
}

// hostOf keeps URLs (which may carry tokens in their path or query) out of
// logs and errors.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Host
}
