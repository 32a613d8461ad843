package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // the sando-* roles serve it
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sando.dev/sando/internal/app"
	sandoapi "sando.dev/sando/internal/app/api"
	"sando.dev/sando/internal/config"
)

func notifyTerm(ch chan os.Signal) { signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT) }

// sandoWithPprof is Sando's API or worker, exactly as cmd/ runs it, plus
// net/http/pprof on BENCH_PPROF_ADDR: what the bench profiles.
func sandoWithPprof(role string) error {
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", os.Getenv("BENCH_PPROF_ADDR"))
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(ln, http.DefaultServeMux) }()
	if role == "sando-api" {
		app.Main("sando-api", func(ctx context.Context, cfg config.Config, log *slog.Logger) error {
			return sandoapi.Run(ctx, cfg, log, nil)
		})
	} else {
		app.Main("sando-worker", app.Worker)
	}
	return nil
}

// ---------------------------------------------------------------- HTTP load

// loadResult is one load repetition.
type loadResult struct {
	RPS      float64
	P50, P99 time.Duration
	N        int // requests in the measured window
	Total    int // requests in all, warm-up included
	Errors   int
	Bytes    int // body size of the last answer
}

// httpLoad keeps conns keep-alive connections busy with GET path, one
// request in flight on each, for warm then dur, and measures the dur part.
// It speaks HTTP/1.1 on raw connections (net/http's response parser, no
// client machinery) so the generator takes as little of the CPU the
// server needs as it can.
func httpLoad(ctx context.Context, addr, path string, conns int, warm, dur time.Duration, want int) (loadResult, error) {
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: sando-bench\r\n\r\n")
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lats     []float64
		errs     atomic.Int64
		lastBody atomic.Int64
		total    atomic.Int64
		firstErr atomic.Value
	)
	start := time.Now()
	measureFrom, end := start.Add(warm), start.Add(warm+dur)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := new(net.Dialer).DialContext(ctx, "tcp", addr)
			if err != nil {
				errs.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, 16<<10)
			local := make([]float64, 0, 1<<14)
			for ctx.Err() == nil {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				if _, err := c.Write(req); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				t1 := time.Now()
				if resp.StatusCode != want {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("GET %s: status %d, want %d", path, resp.StatusCode, want))
					continue
				}
				lastBody.Store(n)
				total.Add(1)
				if t0.After(measureFrom) && t1.Before(end) {
					local = append(local, ms(t1.Sub(t0)))
				}
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := loadResult{N: len(lats), Total: int(total.Load()), Errors: int(errs.Load()), Bytes: int(lastBody.Load())}
	if err, _ := firstErr.Load().(error); err != nil && r.Errors > 0 {
		return r, fmt.Errorf("%d errors, first: %w", r.Errors, err)
	}
	if len(lats) == 0 {
		return r, errors.New("no request completed in the measured window")
	}
	r.RPS = float64(len(lats)) / dur.Seconds()
	r.P50 = time.Duration(percentile(lats, 50) * float64(time.Millisecond))
	r.P99 = time.Duration(percentile(lats, 99) * float64(time.Millisecond))
	return r, nil
}

// ---------------------------------------------------------------- API client

// api is a small client of Sando's HTTP API for the bench's control path.
type api struct {
	base string
	sha  string // what every rebuild asks for: a full sha, as CI sends
	hc   *http.Client
}

func newAPI(addr, sha string) *api {
	return &api{base: "http://" + addr, sha: sha, hc: &http.Client{Transport: &http.Transport{
		MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute,
	}}}
}

// Rebuild is POST /rebuild; it returns the run id.
func (a *api) Rebuild(ctx context.Context) (int64, error) { return a.RebuildOf(ctx, "") }

// RebuildOf is POST /rebuild of one pipeline of several ("": the only one).
func (a *api) RebuildOf(ctx context.Context, pipeline string) (int64, error) {
	body := `{"sha":"` + a.sha + `"}`
	if pipeline != "" {
		body = `{"sha":"` + a.sha + `","pipeline":` + strconv.Quote(pipeline) + `}`
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/rebuild", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		RunID      int64   `json:"run_id"`
		Superseded []int64 `json:"superseded"`
	}
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("POST /rebuild: %d %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	return out.RunID, nil
}

type runView struct {
	RunID  int64  `json:"run_id"`
	Phase  string `json:"phase"`
	Result string `json:"result"`
	Gates  []struct {
		Kind       string     `json:"kind"`
		Status     *string    `json:"status"`
		StartedAt  *time.Time `json:"started_at"`
		FinishedAt *time.Time `json:"finished_at"`
	} `json:"gates"`
	FailureSummary *string `json:"failure_summary"`
}

// Get is GET /runs/{id}, or with etag a long-poll of up to wait: it
// returns the view, its ETag and the raw body (nil view on 304).
func (a *api) Get(ctx context.Context, id int64, etag string, wait time.Duration) (*runView, string, []byte, error) {
	url := a.base + "/runs/" + strconv.FormatInt(id, 10)
	if etag != "" && wait > 0 {
		url += "?wait=" + wait.String()
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", nil, err
	}
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, resp.Header.Get("ETag"), nil, nil
	case http.StatusOK:
		var v runView
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, "", nil, err
		}
		return &v, resp.Header.Get("ETag"), body, nil
	}
	return nil, "", nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
}

// WaitUntil long-polls run id until done says yes, as a CI client does.
func (a *api) WaitUntil(ctx context.Context, id int64, within time.Duration, done func(*runView) bool) (*runView, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	v, etag, body, err := a.Get(ctx, id, "", 0)
	for err == nil {
		if v != nil && done(v) {
			return v, body, nil
		}
		var nv *runView
		var nb []byte
		nv, etag, nb, err = a.Get(ctx, id, etag, 30*time.Second)
		if nv != nil {
			v, body = nv, nb
		}
	}
	return v, body, fmt.Errorf("run %d: %w (last view %+v)", id, err, v)
}

func terminal(v *runView) bool { return v.Result != "building" }

// Metric reads one unlabelled sample from /metrics.
func (a *api) Metric(ctx context.Context, name string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/metrics", nil)
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte(name+" ")); ok {
			return strconv.ParseFloat(string(bytes.TrimSpace(rest)), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// ---------------------------------------------------------------- long-poll waiters

// waiters holds n keep-alive connections, each with one long-poll in
// flight, and records when each is answered.
type waiters struct {
	conns    []net.Conn
	brs      []*bufio.Reader
	got      []time.Time
	codes    []int
	answered atomic.Int64 // this round, so far
}

func dialWaiters(ctx context.Context, addr string, n int) (*waiters, error) {
	w := &waiters{conns: make([]net.Conn, n), brs: make([]*bufio.Reader, n), got: make([]time.Time, n), codes: make([]int, n)}
	var d net.Dialer
	err := forEach(ctx, n, 64, func(i int) error {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			w.conns[i], w.brs[i] = c, bufio.NewReaderSize(c, 2048)
		}
		return err
	})
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("dial waiter: %w", err)
	}
	return w, nil
}

func (w *waiters) Close() {
	for _, c := range w.conns {
		if c != nil {
			c.Close()
		}
	}
}

// Round sends every connection GET path with If-None-Match etag and
// returns at once; Wait collects the answers.
func (w *waiters) Round(addr, path, etag string) (wait func(timeout time.Duration) error) {
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nIf-None-Match: " + etag + "\r\n\r\n")
	var wg sync.WaitGroup
	w.answered.Store(0)
	for i, c := range w.conns {
		w.got[i], w.codes[i] = time.Time{}, 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.answered.Add(1)
			// A connection error leaves code 0, reported by the caller.
			if _, err := c.Write(req); err != nil {
				w.got[i] = time.Now()
				return
			}
			resp, err := http.ReadResponse(w.brs[i], nil)
			if err != nil {
				w.got[i] = time.Now()
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			w.got[i], w.codes[i] = time.Now(), resp.StatusCode
		}()
	}
	return func(timeout time.Duration) error {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-time.After(timeout):
			return fmt.Errorf("long-poll answers still missing after %s", timeout)
		}
	}
}
