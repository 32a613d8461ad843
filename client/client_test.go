package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const viewJSON = `{"run_id":7,"sha":"6d2ee1f188982ac0217154ceaf6a9c46732bec6d","ref":null,"version":"0.1.0",
"phase":"%s","result":"%s","started_at":"2026-11-27T13:50:08.034Z","finished_at":null,
"failure_summary":%s,"gates":[{"kind":"unit","status":null,"log_ref":"7/gate-unit.log"}]}`

func view(phase, result string) string {
	summary := "null"
	if result == "failed" {
		summary = `"main.go:12:2: undefined: x"`
	}
	return fmt.Sprintf(viewJSON, phase, result, summary)
}

func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"about:blank","title":%q,"status":%d,"detail":%q}`, http.StatusText(status), status, detail)
}

// fast is a client with tiny backoffs, for tests.
func fast(url string) *Client {
	c := New(url, "")
	c.MinBackoff, c.MaxBackoff = time.Millisecond, 10*time.Millisecond
	c.MaxElapsed = 5 * time.Second
	return c
}

func TestClientRetries503ThenSucceeds(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) <= 2 {
			problem(w, http.StatusServiceUnavailable, "the run store (Redis) is unreachable; retry shortly")
			return
		}
		w.Header().Set("ETag", `"abc"`)
		io.WriteString(w, view("compiling", "building"))
	}))
	defer srv.Close()

	r, err := fast(srv.URL).Get(context.Background(), 7)
	require.NoError(t, err)
	require.EqualValues(t, 3, calls.Load())
	require.Equal(t, int64(7), r.ID)
	require.Equal(t, PhaseCompiling, r.Phase)
	require.Equal(t, ResultBuilding, r.Result)
	require.Equal(t, `"abc"`, r.ETag)
	require.True(t, r.FinishedAt.IsZero())
	require.Equal(t, time.Date(2026, 11, 27, 13, 50, 8, 34e6, time.UTC), r.StartedAt)
	require.Equal(t, []Gate{{Kind: "unit", Status: "", LogRef: "7/gate-unit.log"}}, r.Gates)
	require.JSONEq(t, view("compiling", "building"), string(r.Raw))
}

func TestClientHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		n := len(times)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			problem(w, http.StatusServiceUnavailable, "busy")
			return
		}
		io.WriteString(w, `{"deployed":null,"build":null}`)
	}))
	defer srv.Close()

	st, err := fast(srv.URL).State(context.Background())
	require.NoError(t, err)
	require.Nil(t, st.Deployed)
	require.Nil(t, st.Build)
	require.Len(t, times, 2)
	gap := times[1].Sub(times[0])
	require.GreaterOrEqual(t, gap, 950*time.Millisecond, "Retry-After: 1 is honoured over the 1ms backoff")
	require.Less(t, gap, 3*time.Second)
}

func TestClientGivesUpAsUnavailable(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		problem(w, http.StatusBadGateway, "upstream down")
	}))
	defer srv.Close()
	c := fast(srv.URL)
	c.MaxElapsed = 200 * time.Millisecond
	start := time.Now()
	_, err := c.Get(context.Background(), 7)
	require.ErrorIs(t, err, ErrUnavailable)
	require.Equal(t, http.StatusBadGateway, StatusCode(err), "the last answer is in the chain")
	require.Contains(t, err.Error(), "upstream down")
	require.Greater(t, calls.Load(), int32(3))
	require.Less(t, time.Since(start), 2*time.Second)

	// A Retry-After past the budget: no point waiting for it.
	calls.Store(0)
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "120")
		problem(w, http.StatusServiceUnavailable, "later")
	}))
	defer srv2.Close()
	start = time.Now()
	_, err = fast(srv2.URL).Get(context.Background(), 7)
	require.ErrorIs(t, err, ErrUnavailable)
	require.EqualValues(t, 1, calls.Load())
	require.Less(t, time.Since(start), time.Second)
}

func TestClientConnectionRefusedUntilDeadline(t *testing.T) {
	t.Parallel()
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()

	c := New("http://"+addr, "")
	c.MinBackoff = 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Get(ctx, 1)
	require.ErrorIs(t, err, ErrUnavailable)
	require.Contains(t, err.Error(), "connection refused")
	require.Less(t, time.Since(start), 1500*time.Millisecond, "gives up rather than sleep past the deadline")
}

func TestClientRetriesAResetPOSTWithTheSameKey(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var keys, bodies, auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		bodies = append(bodies, string(b))
		auths = append(auths, r.Header.Get("Authorization"))
		n := len(keys)
		mu.Unlock()
		if n == 1 { // the connection dies before an answer
			conn, _, err := w.(http.Hijacker).Hijack()
			require.NoError(t, err)
			conn.Close()
			return
		}
		w.Header().Set("Location", "/runs/3")
		if n == 3 {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"run_id":3,"url":"/runs/3","superseded":[1,2]}`)
	}))
	defer srv.Close()
	c := fast(srv.URL)
	c.Token = "s3cret"

	rb, err := c.Rebuild(context.Background(), RebuildRequest{Ref: "main"})
	require.NoError(t, err)
	require.Equal(t, &Rebuilt{RunID: 3, URL: "/runs/3", Superseded: []int64{1, 2}, IdempotencyKey: keys[0]}, rb)
	require.Len(t, keys, 2)
	require.NotEmpty(t, keys[0], "a key is made when none is given")
	require.Equal(t, keys[0], keys[1], "the retry repeats the key")
	require.Equal(t, []string{`{"ref":"main"}`, `{"ref":"main"}`}, bodies)
	require.Equal(t, []string{"Bearer s3cret", "Bearer s3cret"}, auths)

	rb, err = c.Rebuild(context.Background(), RebuildRequest{Ref: "main", IdempotencyKey: "ci-42"})
	require.NoError(t, err)
	require.True(t, rb.Replayed)
	require.Equal(t, "ci-42", keys[2])

	rb, err = c.Rebuild(context.Background(), RebuildRequest{Ref: "main", IdempotencyKey: "ignored", NoIdempotencyKey: true})
	require.NoError(t, err)
	require.Len(t, keys, 4)
	require.Empty(t, keys[3], "NoIdempotencyKey sends no key, not even a given one")
	require.Empty(t, rb.IdempotencyKey)
}

func TestClientGateTimes(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"run_id":7,"phase":"gating","result":"building","gates":[
{"kind":"lint","status":"passed","log_ref":"7/gate-lint.log","started_at":"2026-11-27T13:50:08.5Z","finished_at":"2026-11-27T13:50:09Z","tests":null},
{"kind":"unit","status":null,"log_ref":null,"started_at":null,"finished_at":null,"tests":null}]}`)
	}))
	defer srv.Close()
	r, err := fast(srv.URL).Get(context.Background(), 7)
	require.NoError(t, err)
	require.Len(t, r.Gates, 2)
	require.Equal(t, time.Date(2026, 11, 27, 13, 50, 8, 5e8, time.UTC), r.Gates[0].StartedAt)
	require.Equal(t, time.Date(2026, 11, 27, 13, 50, 9, 0, time.UTC), r.Gates[0].FinishedAt)
	require.True(t, r.Gates[1].StartedAt.IsZero(), "null is the zero time")
	require.True(t, r.Gates[1].FinishedAt.IsZero())
}

func TestClientDoesNotRetryClientErrors(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch r.URL.Path {
		case "/runs/4242":
			problem(w, http.StatusNotFound, "no run with that id")
		case "/runs/1/cancel":
			problem(w, http.StatusConflict, "run 1 is already passed")
		case "/rebuild":
			w.Header().Set("WWW-Authenticate", `Bearer realm="sando"`)
			problem(w, http.StatusUnauthorized, "missing or wrong bearer token")
		default:
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "boom")
		}
	}))
	defer srv.Close()
	c := fast(srv.URL)
	ctx := context.Background()

	_, err := c.Get(ctx, 4242)
	var ae *Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, &Error{Status: 404, Title: "Not Found", Detail: "no run with that id", Type: "about:blank"}, ae)
	require.Equal(t, "404 Not Found: no run with that id", err.Error())
	_, err = c.Cancel(ctx, 1)
	require.Equal(t, http.StatusConflict, StatusCode(err))
	_, err = c.Rebuild(ctx, RebuildRequest{})
	require.Equal(t, http.StatusUnauthorized, StatusCode(err))
	_, err = c.List(ctx, ListOptions{})
	require.Equal(t, http.StatusInternalServerError, StatusCode(err))
	require.Equal(t, "500 Internal Server Error: boom", err.Error())
	require.False(t, errors.Is(err, ErrUnavailable))
	require.EqualValues(t, 4, calls.Load(), "none of these is retried")
}

// longPollServer serves run 7 with ETags; views advance when the test
// says so. With hold, ?wait= holds the request until a change.
type longPollServer struct {
	mu       sync.Mutex
	views    []string
	cur      int
	changed  chan struct{}
	hold     bool
	requests atomic.Int32
	waits    []string
}

func (s *longPollServer) advance() {
	s.mu.Lock()
	s.cur++
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *longPollServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	s.waits = append(s.waits, r.URL.Query().Get("wait"))
	body, ch := s.views[s.cur], s.changed
	s.mu.Unlock()
	etag := fmt.Sprintf(`"v%d"`, len(body)) // views differ in length here
	if inm := r.Header.Get("If-None-Match"); inm == etag && s.hold && !strings.Contains(body, `"done"`) {
		wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
		select {
		case <-ch:
			s.mu.Lock()
			body = s.views[s.cur]
			s.mu.Unlock()
			etag = fmt.Sprintf(`"v%d"`, len(body))
		case <-time.After(wait):
		}
	}
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	io.WriteString(w, body)
}

func newLongPoll(hold bool) *longPollServer {
	return &longPollServer{
		views:   []string{view("queued", "building"), view("compiling", "building"), view("done", "failed")},
		changed: make(chan struct{}), hold: hold,
	}
}

func TestClientWaitLongPolls(t *testing.T) {
	t.Parallel()
	lp := newLongPoll(true)
	srv := httptest.NewServer(lp)
	defer srv.Close()
	c := fast(srv.URL)
	ctx := context.Background()

	r, err := c.Get(ctx, 7)
	require.NoError(t, err)
	// Unchanged: the wait ends with 304.
	start := time.Now()
	next, changed, err := c.Wait(ctx, 7, r.ETag, 200*time.Millisecond)
	require.NoError(t, err)
	require.False(t, changed)
	require.Nil(t, next)
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)
	// A change wakes the held request.
	time.AfterFunc(100*time.Millisecond, lp.advance)
	start = time.Now()
	next, changed, err = c.Wait(ctx, 7, r.ETag, 30*time.Second)
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, PhaseCompiling, next.Phase)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, []string{"", "200ms", "30s"}, lp.waits)
}

func TestClientWatchFollowsToTheEnd(t *testing.T) {
	t.Parallel()
	for _, hold := range []bool{true, false} {
		t.Run(fmt.Sprintf("hold=%v", hold), func(t *testing.T) {
			t.Parallel()
			lp := newLongPoll(hold)
			srv := httptest.NewServer(lp)
			defer srv.Close()
			c := fast(srv.URL)
			c.MinPollInterval = 50 * time.Millisecond
			go func() {
				time.Sleep(300 * time.Millisecond)
				lp.advance()
				time.Sleep(300 * time.Millisecond)
				lp.advance()
			}()
			var phases []Phase
			last, err := c.Watch(context.Background(), 7, func(r *Run) { phases = append(phases, r.Phase) })
			require.NoError(t, err)
			require.Equal(t, []Phase{PhaseQueued, PhaseCompiling, PhaseDone}, phases)
			require.Equal(t, ResultFailed, last.Result)
			require.Equal(t, "main.go:12:2: undefined: x", last.FailureSummary)
			n := lp.requests.Load()
			if hold {
				require.LessOrEqual(t, n, int32(4), "held requests: one per change")
			} else {
				// 600ms at one request per 50ms at most, plus the changes.
				require.LessOrEqual(t, n, int32(17), "no busy loop against a server that answers at once")
			}
		})
	}
}

// A server that ignores If-None-Match and ?wait (200 with the same view
// every time) is polled at MinPollInterval, not in a loop.
func TestClientWatchDoesNotBusyLoop(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		io.WriteString(w, view("compiling", "building")) // no ETag at all
	}))
	defer srv.Close()
	c := fast(srv.URL)
	c.MinPollInterval = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 550*time.Millisecond)
	defer cancel()
	var changes atomic.Int32
	last, err := c.Watch(ctx, 7, func(*Run) { changes.Add(1) })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, ErrUnavailable)
	require.Equal(t, PhaseCompiling, last.Phase, "the last view comes back with the timeout")
	require.EqualValues(t, 1, changes.Load())
	require.LessOrEqual(t, calls.Load(), int32(7))
	require.GreaterOrEqual(t, calls.Load(), int32(2))
}

func TestClientLogsAndList(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/logs/7/gate-unit.log" && r.URL.Query().Get("follow") == "1":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			for _, l := range []string{"ok 1\n", "ok 2\n"} {
				io.WriteString(w, l)
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
		case r.URL.Path == "/runs":
			assert.Equal(t, "before=9&limit=2", r.URL.RawQuery)
			io.WriteString(w, `{"runs":[{"run_id":8,"sha":null,"ref":"main","version":null,"phase":"queued","result":"building",`+
				`"started_at":"","finished_at":null,"failure_summary":null,"gates":[],"url":"/runs/8"}],"next":"/runs?before=8&limit=2"}`)
		default:
			problem(w, http.StatusNotFound, "no log")
		}
	}))
	defer srv.Close()
	c := fast(srv.URL)
	ctx := context.Background()

	rc, err := c.Logs(ctx, "7/gate-unit.log", true)
	require.NoError(t, err)
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	require.Equal(t, "ok 1\nok 2\n", string(b))
	_, err = c.Logs(ctx, "7/nope.log", false)
	require.Equal(t, http.StatusNotFound, StatusCode(err))

	l, err := c.List(ctx, ListOptions{Limit: 2, Before: 9})
	require.NoError(t, err)
	require.Len(t, l.Runs, 1)
	require.Equal(t, "/runs?before=8&limit=2", l.Next)
	require.Equal(t, "/runs/8", l.Runs[0].URL)
	require.True(t, l.Runs[0].StartedAt.IsZero(), `"" is a zero time`)
	require.True(t, json.Valid(l.Raw))
}

func TestClientBackoffDoublesToTheCap(t *testing.T) {
	t.Parallel()
	c := New("http://x", "")
	for n, want := range []time.Duration{200, 400, 800, 1600, 3200, 5000, 5000} {
		want *= time.Millisecond
		got := c.backoff(n + 1)
		require.LessOrEqual(t, got, want, "attempt %d", n+1)
		require.GreaterOrEqual(t, got, want*3/4, "attempt %d", n+1)
	}
	require.Equal(t, time.Second, retryAfter(http.Header{"Retry-After": {"1"}}))
	require.Equal(t, 250*time.Millisecond, retryAfter(http.Header{"Retry-After": {"0.25"}}))
	require.Zero(t, retryAfter(http.Header{"Retry-After": {"soon"}}))
	date := time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat)
	require.InDelta(t, 3*time.Second, retryAfter(http.Header{"Retry-After": {date}}), float64(1500*time.Millisecond))
}

// The pipeline options reach the server: a rebuild's in its body, a
// list's and a state's as ?pipeline=; runs and pipelines decode theirs.
func TestClientPipelines(t *testing.T) {
	t.Parallel()
	var rebuildBody atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "POST /rebuild":
			b, _ := io.ReadAll(r.Body)
			rebuildBody.Store(string(b))
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"run_id":9,"url":"/runs/9","superseded":[]}`)
		case "GET /runs":
			assert.Equal(t, "pipeline=web", r.URL.RawQuery)
			io.WriteString(w, `{"runs":[{"run_id":8,"pipeline":"web","sha":null,"ref":null,"version":null,"phase":"queued",`+
				`"result":"building","started_at":"","finished_at":null,"failure_summary":null,"gates":[],"url":"/runs/8"}],"next":null}`)
		case "GET /state":
			if r.URL.RawQuery != "pipeline=web" {
				problem(w, http.StatusBadRequest, "this server has 2 pipelines (api, web): name one with ?pipeline=<name>")
				return
			}
			io.WriteString(w, `{"deployed":null,"build":{"run_id":8,"sha":null,"version":null,"phase":"queued",`+
				`"result":"building","failure_summary":null,"elapsed_s":3}}`)
		case "GET /pipelines":
			io.WriteString(w, `{"pipelines":[{"name":"api","branch":"main","tier":"host","url":"/pipelines/api","build":null,"deployed":null},`+
				`{"name":"web","branch":"dev","tier":"host","url":"/pipelines/web","deployed":null,`+
				`"build":{"run_id":8,"sha":null,"version":null,"phase":"queued","result":"building","failure_summary":null,"elapsed_s":3}}]}`)
		default:
			problem(w, http.StatusNotFound, "no such route")
		}
	}))
	defer srv.Close()
	c := fast(srv.URL)
	ctx := context.Background()

	_, err := c.Rebuild(ctx, RebuildRequest{Pipeline: "web", Ref: "main"})
	require.NoError(t, err)
	require.JSONEq(t, `{"pipeline":"web","ref":"main"}`, rebuildBody.Load().(string))
	_, err = c.Rebuild(ctx, RebuildRequest{})
	require.NoError(t, err)
	require.JSONEq(t, `{}`, rebuildBody.Load().(string), "no pipeline: no key")

	l, err := c.List(ctx, ListOptions{Pipeline: "web"})
	require.NoError(t, err)
	require.Equal(t, "web", l.Runs[0].Pipeline)

	_, err = c.State(ctx)
	require.Equal(t, http.StatusBadRequest, StatusCode(err))
	st, err := c.State(ctx, StateOptions{Pipeline: "web"})
	require.NoError(t, err)
	require.Equal(t, int64(8), st.Build.RunID)

	ps, err := c.Pipelines(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 2)
	require.Equal(t, Pipeline{Name: "api", Branch: "main", Tier: "host", URL: "/pipelines/api"}, ps[0])
	require.Equal(t, "dev", ps[1].Branch)
	require.Equal(t, int64(8), ps[1].Build.RunID)
}
