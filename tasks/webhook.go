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
	"time"

	"github.com/hibiken/asynq"

	"sando.dev/sando/internal/lifecycle"
	"sando.dev/sando/internal/runview"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/runstore"
)

// Sign is the Sando-Signature header value for body: "sha256=" and the hex
// HMAC-SHA256 of the body under secret (GitHub's scheme, so existing
// verifiers work).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// webhookClient never follows a redirect: a receiver answering 3xx could
// otherwise aim the signed body at any address the worker reaches (an
// internal admin port). A 3xx is a failed delivery, retried like any.
var webhookClient = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (r *Runner) deliver(ctx context.Context, t *asynq.Task) error {
	var p lifecycle.WebhookPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("undecodable webhook payload: %w: %w", err, asynq.SkipRetry)
	}
	j, cur, err := r.openID(ctx, steps.Payload{RunID: p.RunID, Pipeline: p.Pipeline})
	if errors.Is(err, runstore.ErrNotFound) {
		return fmt.Errorf("run %d: %w", p.RunID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	if p.Hook < 0 || p.Hook >= len(j.p.Webhooks) {
		return fmt.Errorf("webhook %d not in the run's pipeline: %w", p.Hook, asynq.SkipRetry)
	}
	target := j.p.Webhooks[p.Hook]
	body, err := json.Marshal(runview.Of(cur))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %d: %w: %w", p.Hook, err, asynq.SkipRetry)
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
