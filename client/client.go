// Package client is a typed Go client of Sando's HTTP API.
//
//	c := client.New("http://127.0.0.1:8080", os.Getenv("SANDO_TOKEN"))
//	rb, err := c.Rebuild(ctx, client.RebuildRequest{Ref: "main"}) // Pipeline: "app" with several
//	...
//	run, err := c.Watch(ctx, rb.RunID, func(r *client.Run) { log.Println(r.Phase) })
//	if run.Result != client.ResultPassed { log.Fatal(run.FailureSummary) }
//
// Every call retries transient failures (connection refused or reset, a
// timed-out attempt, 502, 503, 504 and 429) with exponential backoff, 200ms
// doubling to 5s with jitter, honouring Retry-After, for up to MaxElapsed
// (60s) or until ctx ends. When it gives up, the error matches
// ErrUnavailable (errors.Is). An error answer of the API is an *Error.
//
// The package uses only the standard library.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one Sando server. The zero values of its fields are
// the documented defaults; set them before the first call.
type Client struct {
	// BaseURL is the server, e.g. "http://127.0.0.1:8080".
	BaseURL string
	// Token is sent as "Authorization: Bearer <Token>" when not empty.
	Token string
	// HTTPClient does the requests; nil: a client with no overall timeout
	// (every attempt gets its own, see RequestTimeout).
	HTTPClient *http.Client
	// UserAgent is sent with every request; "": "sando-client".
	UserAgent string

	// MaxElapsed bounds the retries of one call, from its first attempt;
	// 0: 60s; negative: no retries.
	MaxElapsed time.Duration
	// MinBackoff and MaxBackoff bound the pause between attempts, which
	// doubles from MinBackoff (0: 200ms) up to MaxBackoff (0: 5s).
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds one attempt (a long-poll gets its wait on
	// top); 0: 30s. A timed-out attempt is retried.
	RequestTimeout time.Duration

	// PollWait is the ?wait= Watch asks for; 0: 30s.
	PollWait time.Duration
	// MinPollInterval is the least time between two Watch requests that
	// bring nothing new, so a server that answers at once is not
	// hammered; 0: 1s.
	MinPollInterval time.Duration
}

// New returns a client of the server at baseURL, sending token if set.
func New(baseURL, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token}
}

// ErrUnavailable is matched (errors.Is) by the error of a call that gave
// up retrying: the server stayed unreachable or kept answering 502, 503
// or 504.
var ErrUnavailable = errors.New("sando server unavailable")

// Error is an error answer of the API (an application/problem+json body).
type Error struct {
	Status int    // HTTP status code
	Title  string // e.g. "Not Found"
	Detail string // what went wrong, e.g. "no run with that id"
	Type   string
	// RetryAfter is the server's Retry-After, if it sent one.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := strconv.Itoa(e.Status) + " " + e.Title
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// StatusCode is the HTTP status of an API error in err's chain, else 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// unavailableError is what a call returns when it gives up retrying.
type unavailableError struct {
	attempts int
	elapsed  time.Duration
	last     error
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("%v after %d attempt(s) in %s: %v", ErrUnavailable, e.attempts,
		e.elapsed.Round(time.Millisecond), e.last)
}

func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }
func (e *unavailableError) Unwrap() error        { return e.last }

// Rebuild starts a run (POST /rebuild).
func (c *Client) Rebuild(ctx context.Context, req RebuildRequest) (*Rebuilt, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	key := ""
	if !req.NoIdempotencyKey {
		key = req.IdempotencyKey
		if key == "" {
			key = "sando-client-" + rand.Text()
		}
		h.Set("Idempotency-Key", key)
	}
	resp, b, err := c.do(ctx, call{method: http.MethodPost, path: "/rebuild", body: body, header: h})
	if err != nil {
		return nil, err
	}
	var out Rebuilt
	if err := decode(resp, b, &out); err != nil {
		return nil, err
	}
	out.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	out.IdempotencyKey = key
	return &out, nil
}

// Get returns run id's view (GET /runs/{id}). An unknown id is an *Error
// with Status 404.
func (c *Client) Get(ctx context.Context, id int64) (*Run, error) {
	resp, b, err := c.do(ctx, call{method: http.MethodGet, path: runPath(id)})
	if err != nil {
		return nil, err
	}
	return runOf(resp, b)
}

// Wait long-polls run id: the server holds the request until the run's
// view no longer has tag etag (the ETag of the view the caller has), or
// until wait ends (it caps wait at 60s). It returns the new view and
// true, or nil and false when the view is unchanged. A run that is
// finished and tagged etag is answered at once: it never changes. With
// etag "", it returns the current view at once.
func (c *Client) Wait(ctx context.Context, id int64, etag string, wait time.Duration) (*Run, bool, error) {
	h := http.Header{}
	if etag != "" {
		h.Set("If-None-Match", etag)
	}
	wait = max(wait, 0).Round(time.Millisecond)
	resp, b, err := c.do(ctx, call{
		method: http.MethodGet, path: runPath(id), query: url.Values{"wait": {wait.String()}},
		header: h, extra: wait,
	})
	if err != nil {
		return nil, false, err
	}
	if resp.StatusCode == http.StatusNotModified {
		return nil, false, nil
	}
	r, err := runOf(resp, b)
	if err != nil {
		return nil, false, err
	}
	if etag != "" && r.ETag == etag { // a server that ignores If-None-Match
		return nil, false, nil
	}
	return r, true, nil
}

// Watch follows run id until it is finished and returns its last view.
// It calls onChange (if not nil) with the first view and with every view
// that differs from the one before. It long-polls (Wait with PollWait)
// and never sends two requests that bring nothing new less than
// MinPollInterval apart. When ctx ends first, it returns the last view
// it saw (nil if none) with the error.
func (c *Client) Watch(ctx context.Context, id int64, onChange func(*Run)) (*Run, error) {
	cur, err := c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if onChange != nil {
		onChange(cur)
	}
	for !cur.Result.Terminal() {
		wait := orDefault(c.PollWait, 30*time.Second)
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl)) // a clean 304 rather than a cut request
		}
		began := time.Now()
		next, changed, err := c.Wait(ctx, id, cur.ETag, wait)
		if err != nil {
			return cur, err
		}
		if changed {
			cur = next
			if onChange != nil {
				onChange(cur)
			}
			continue
		}
		if err := sleep(ctx, orDefault(c.MinPollInterval, time.Second)-time.Since(began)); err != nil {
			return cur, err
		}
	}
	return cur, nil
}

// List returns a page of runs, newest first (GET /runs).
func (c *Client) List(ctx context.Context, o ListOptions) (*RunList, error) {
	q := url.Values{}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Before > 0 {
		q.Set("before", strconv.FormatInt(o.Before, 10))
	}
	if o.Pipeline != "" {
		q.Set("pipeline", o.Pipeline)
	}
	resp, b, err := c.do(ctx, call{method: http.MethodGet, path: "/runs", query: q})
	if err != nil {
		return nil, err
	}
	var out RunList
	if err := decode(resp, b, &out); err != nil {
		return nil, err
	}
	out.Raw = b
	return &out, nil
}

// Cancel aborts a building run (POST /runs/{id}/cancel) and returns its
// view. A finished run is an *Error with Status 409 (Conflict), also when
// a retried cancel finds the run already aborted by its first attempt.
func (c *Client) Cancel(ctx context.Context, id int64) (*Run, error) {
	resp, b, err := c.do(ctx, call{method: http.MethodPost, path: runPath(id) + "/cancel"})
	if err != nil {
		return nil, err
	}
	return runOf(resp, b)
}

// CacheCleared is the answer of ClearCache.
type CacheCleared struct {
	Pipeline   string `json:"pipeline"`
	Generation int64  `json:"generation"`
	Detail     string `json:"detail"`
}

// ClearCache clears pipeline's build caches on every worker (POST
// /pipelines/{name}/cache:clear): each worker wipes its slots before a
// run takes them next. An unknown pipeline is an *Error with Status 404.
func (c *Client) ClearCache(ctx context.Context, pipeline string) (*CacheCleared, error) {
	resp, b, err := c.do(ctx, call{method: http.MethodPost, path: "/pipelines/" + url.PathEscape(pipeline) + "/cache:clear"})
	if err != nil {
		return nil, err
	}
	var out CacheCleared
	if err := decode(resp, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// State returns what is deployed and what builds (GET /state). A server
// with several pipelines needs one named in o (at most one o is read).
func (c *Client) State(ctx context.Context, o ...StateOptions) (*State, error) {
	q := url.Values{}
	if len(o) > 0 && o[0].Pipeline != "" {
		q.Set("pipeline", o[0].Pipeline)
	}
	resp, b, err := c.do(ctx, call{method: http.MethodGet, path: "/state", query: q})
	if err != nil {
		return nil, err
	}
	var out State
	if err := decode(resp, b, &out); err != nil {
		return nil, err
	}
	out.Raw = b
	return &out, nil
}

// Pipelines lists the pipelines the server builds, sorted by name, each
// with its state (GET /pipelines).
func (c *Client) Pipelines(ctx context.Context) ([]Pipeline, error) {
	resp, b, err := c.do(ctx, call{method: http.MethodGet, path: "/pipelines"})
	if err != nil {
		return nil, err
	}
	var out struct {
		Pipelines []Pipeline `json:"pipelines"`
	}
	if err := decode(resp, b, &out); err != nil {
		return nil, err
	}
	return out.Pipelines, nil
}

// Logs opens a step's log (GET /logs/{ref}); ref is a log_ref such as
// "7/gate-unit.log" or "7/compile.log". With follow the body streams
// until the step ends. The caller closes it. Only opening is retried: a
// stream cut midway ends with the read error.
func (c *Client) Logs(ctx context.Context, ref string, follow bool) (io.ReadCloser, error) {
	segs := strings.Split(strings.TrimPrefix(ref, "/"), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	q := url.Values{}
	if follow {
		q.Set("follow", "1")
	}
	resp, _, err := c.do(ctx, call{method: http.MethodGet, path: "/logs/" + strings.Join(segs, "/"), query: q, stream: true})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func runPath(id int64) string { return "/runs/" + strconv.FormatInt(id, 10) }

// call is one API request.
type call struct {
	method, path string
	query        url.Values
	header       http.Header
	body         []byte
	extra        time.Duration // added to RequestTimeout (a long-poll's wait)
	stream       bool          // return the open body; the timeout covers the headers only
}

// do sends a call, retrying transient failures. It returns any answer
// that is not transient, error statuses included except where the body
// is streamed (then an error status is an *Error).
func (c *Client) do(ctx context.Context, cl call) (*http.Response, []byte, error) {
	start := time.Now()
	budget := orDefault(c.MaxElapsed, 60*time.Second)
	var last error
	for attempt := 1; ; attempt++ {
		resp, body, err := c.attempt(ctx, cl)
		if err == nil && !transientStatus(resp.StatusCode) {
			if cl.stream && resp.StatusCode >= 300 {
				return nil, nil, apiError(resp, body)
			}
			return resp, body, nil
		}
		var wait time.Duration
		switch {
		case ctx.Err() != nil:
			if last != nil || err == nil {
				if err == nil {
					last = apiError(resp, body)
				}
				return nil, nil, &unavailableError{attempt, time.Since(start), last}
			}
			return nil, nil, ctx.Err()
		case err != nil:
			if !transient(err) {
				return nil, nil, err
			}
			last = err
		default:
			ae := apiError(resp, body)
			last, wait = ae, ae.RetryAfter
		}
		if wait <= 0 {
			wait = c.backoff(attempt)
		}
		giveUp := budget < 0 || time.Since(start)+wait > budget
		if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
			giveUp = true
		}
		if giveUp || sleep(ctx, wait) != nil {
			return nil, nil, &unavailableError{attempt, time.Since(start), last}
		}
	}
}

// attempt sends one request. For a streamed call, the body stays open
// (and its error body, if any, is read into the second result).
func (c *Client) attempt(ctx context.Context, cl call) (*http.Response, []byte, error) {
	u := c.BaseURL + cl.path
	if len(cl.query) > 0 {
		u += "?" + cl.query.Encode()
	}
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	actx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(orDefault(c.RequestTimeout, 30*time.Second)+cl.extra, cancel)
	req, err := http.NewRequestWithContext(actx, cl.method, u, body)
	if err != nil {
		timer.Stop()
		cancel()
		return nil, nil, err
	}
	for k, v := range cl.header {
		req.Header[k] = v
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("User-Agent", orDefault(c.UserAgent, "sando-client"))
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		timer.Stop()
		cancel()
		return nil, nil, err
	}
	if cl.stream && resp.StatusCode < 300 {
		timer.Stop()
		resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil, nil
	}
	defer func() { timer.Stop(); cancel() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	if err != nil {
		return nil, nil, err
	}
	if cl.stream { // an error answer, read whole
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, b, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// transient reports whether a failed attempt (the caller's context still
// alive) is worth repeating: anything on the way to the server or back,
// except a certificate the client refuses.
func transient(err error) bool {
	var cv *tls.CertificateVerificationError
	var ue *url.Error
	switch {
	case errors.As(err, &cv):
		return false
	case errors.As(err, &ue):
		return ue.Op != "parse" && !strings.Contains(ue.Err.Error(), "unsupported protocol scheme")
	}
	return true // a body cut midway, a timed-out attempt
}

func transientStatus(code int) bool {
	switch code {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return true
	}
	return false
}

// backoff is the pause before attempt n+1: MinBackoff·2^(n-1), capped at
// MaxBackoff, with the upper quarter jittered.
func (c *Client) backoff(n int) time.Duration {
	lo, hi := orDefault(c.MinBackoff, 200*time.Millisecond), orDefault(c.MaxBackoff, 5*time.Second)
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d - time.Duration(mrand.Int64N(int64(d)/4+1)) //nolint:gosec // jitter spreads retries; nothing about it must be unguessable
}

// retryAfter reads a Retry-After header: seconds (fractions accepted) or
// an HTTP date. 0 when absent or unreadable.
func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// apiError turns an error answer into an *Error, problem+json or not.
func apiError(resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header)}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) == nil {
		e.Type, e.Title, e.Detail = p.Type, p.Title, p.Detail
	} else if s := strings.TrimSpace(string(body)); s != "" && len(s) < 200 && !strings.HasPrefix(s, "<") {
		e.Detail = s
	}
	if e.Title == "" {
		e.Title = http.StatusText(resp.StatusCode)
	}
	return e
}

// decode reads a 2xx JSON answer into v; any other answer is an error.
func decode(resp *http.Response, body []byte, v any) error {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode >= 400 {
			return apiError(resp, body)
		}
		return fmt.Errorf("unexpected answer %s from %s", resp.Status, resp.Request.URL.Path)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("unreadable answer from %s: %w", resp.Request.URL.Path, err)
	}
	return nil
}

func runOf(resp *http.Response, body []byte) (*Run, error) {
	var r Run
	if err := decode(resp, body, &r); err != nil {
		return nil, err
	}
	r.Raw = body
	r.ETag = resp.Header.Get("ETag")
	if r.ETag == "" { // a tag of our own, so Wait still sees changes
		sum := sha256.Sum256(body)
		r.ETag = `"client-` + hex.EncodeToString(sum[:12]) + `"`
	}
	return &r, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
