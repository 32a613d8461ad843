package main

import (
	"bufio"
	"bytes"
	"context"
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
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sando.dev/sando/client"
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

// api is the bench's control path to Sando's HTTP API: the typed client
// (sando.dev/sando/client), as a CI job using sandoctl talks to Sando.
type api struct {
	c    *client.Client
	base string // for /metrics, which the client does not read
	sha  string // what every rebuild asks for: a full sha, as CI sends
}

func newAPI(addr, sha string) *api {
	c := client.New("http://"+addr, "")
	c.HTTPClient = &http.Client{Transport: &http.Transport{
		MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute,
	}}
	return &api{c: c, base: "http://" + addr, sha: sha}
}

// Rebuild is POST /rebuild; it returns the run id.
func (a *api) Rebuild(ctx context.Context) (int64, error) { return a.RebuildOf(ctx, "") }

// RebuildOf is POST /rebuild of one pipeline of several ("": the only one).
// It sends no Idempotency-Key, as the bench always has: a key would add
// its own writes and memory to every run the economy and footprint
// benches count.
func (a *api) RebuildOf(ctx context.Context, pipeline string) (int64, error) {
	rb, err := a.c.Rebuild(ctx, client.RebuildRequest{SHA: a.sha, Pipeline: pipeline, NoIdempotencyKey: true})
	if err != nil {
		return 0, fmt.Errorf("POST /rebuild: %w", err)
	}
	return rb.RunID, nil
}

// WaitUntil long-polls run id until done says yes, as a CI client does:
// GET /runs/{id}, then GET ?wait=30s with If-None-Match its ETag. The
// view's Raw is the body the server sent.
func (a *api) WaitUntil(ctx context.Context, id int64, within time.Duration, done func(*client.Run) bool) (*client.Run, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	v, err := a.c.Get(ctx, id)
	for err == nil && !done(v) {
		var next *client.Run
		var changed bool
		if next, changed, err = a.c.Wait(ctx, id, v.ETag, 30*time.Second); changed {
			v = next
		}
	}
	if err != nil {
		return v, fmt.Errorf("run %d: %w (last view %+v)", id, err, v)
	}
	return v, nil
}

func terminal(v *client.Run) bool { return v.Result.Terminal() }

// Metric reads one unlabelled sample from /metrics. A raw GET: the
// client reads the JSON API only, not Prometheus' text.
func (a *api) Metric(ctx context.Context, name string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/metrics", nil)
	resp, err := a.c.HTTPClient.Do(req)
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
