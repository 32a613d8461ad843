package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/logstore"
	"sando.dev/sando/internal/runwatch"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// logs serves one step's log. Range requests work (http.ServeContent);
// ?follow=1 streams new bytes until the step ends.
func (s *Server) logs(c *gin.Context) {
	ref := strings.TrimPrefix(c.Param("ref"), "/")
	following := (c.Query("follow") == "1" || c.Query("follow") == "true") && c.Request.Method == http.MethodGet
	var from int64 // a follower starts here: what a run's page already shows
	if raw, ok := c.GetQuery("from"); ok {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 {
			s.abort(c, badRequest(fmt.Sprintf("from=%q: want a byte offset, 0 or more", raw)))
			return
		}
		from = n
	}
	// A step's log is in Redis, whichever worker wrote it; a run from
	// before logs went there has only its worker's file.
	if id, step, ok := parseRef(ref); ok && s.Redis != nil {
		served, err := s.redisLog(c, id, step, following, from)
		if err != nil {
			s.abort(c, err)
			return
		}
		if served {
			return
		}
	}
	f, err := s.Layout.OpenLog(ref)
	if err != nil {
		s.abort(c, notFound("no log "+strconv.Quote(ref)))
		return
	}
	defer f.Close()
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.Header("X-Content-Type-Options", "nosniff")
	// A HEAD asks for the headers of the log as it is: it never streams.
	if following {
		if _, err := f.Seek(from, io.SeekStart); err != nil {
			s.abort(c, err)
			return
		}
		s.follow(c, ref, f)
		return
	}
	st, err := f.Stat()
	if err != nil {
		s.abort(c, err)
		return
	}
	serveLog(c, st.ModTime(), f)
}

// serveLog answers a log with Range support (http.ServeContent), after
// taking out what ServeContent gets wrong: a zero-length suffix range
// ("-0") is unsatisfiable (RFC 9110, 14.1.2), where ServeContent answers
// an empty 206 with an impossible Content-Range. Dropped among others,
// it is ignored; alone, it is a 416 like a range past the end.
func serveLog(c *gin.Context, modtime time.Time, content io.ReadSeeker) {
	w := &rangeProblems{ResponseWriter: c.Writer, c: c}
	if spec, ok := strings.CutPrefix(c.GetHeader("Range"), "bytes="); ok {
		var kept []string
		for r := range strings.SplitSeq(spec, ",") {
			if r = strings.TrimSpace(r); !(len(r) > 1 && r[0] == '-' && strings.Trim(r[1:], "0") == "") {
				kept = append(kept, r)
			}
		}
		switch {
		case len(kept) == 0:
			size, err := content.Seek(0, io.SeekEnd)
			if err != nil {
				writeProblem(c, http.StatusInternalServerError, "internal error")
				return
			}
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		case len(kept) < strings.Count(spec, ",")+1:
			c.Request.Header.Set("Range", "bytes="+strings.Join(kept, ","))
		}
	}
	http.ServeContent(w, c.Request, "", modtime, content)
}

// redisLog serves step's log of run id from Redis, and reports whether
// there was one to serve.
func (s *Server) redisLog(c *gin.Context, id int64, step string, following bool, from int64) (bool, error) {
	cat := s.catalog()
	p, err := s.pipeOf(c, cat, id)
	if errors.Is(err, runstore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	base := p.store.Keys().Log(id, step)
	l, err := logstore.Open(c, s.Redis, base)
	if errors.Is(err, logstore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.Header("X-Content-Type-Options", "nosniff")
	if !following {
		serveLog(c, time.Time{}, l)
		return true, nil
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), maxFollow)
	defer cancel()
	wake := make(chan struct{}, 1)
	if s.Watch != nil {
		go s.wakeOnChange(ctx, cancel, cat, id, step, wake)
	}
	c.Status(http.StatusOK)
	c.Writer.Flush() // the 200 now, not at the step's first byte
	_ = logstore.Follow(ctx, s.Redis, base, c.Writer, c.Writer.Flush, from, wake)
	return true, nil
}

// liveGrace is how long a follower waits for a log to be closed after its
// step ended: a worker that died mid-step never closes it.
const liveGrace = 5 * time.Second

// wakeOnChange wakes a follower whenever the run changes, and ends it
// (cancel) liveGrace after the step has ended if the log is still open.
func (s *Server) wakeOnChange(ctx context.Context, cancel func(), cat *catalog, id int64, step string, wake chan<- struct{}) {
	w := s.Watch.Watch(id)
	defer func() { w.Close() }()
	for ctx.Err() == nil {
		changed := w.Wait(ctx, 30*time.Second)
		if changed {
			w.Close()
			w = s.Watch.Watch(id)
			select {
			case wake <- struct{}{}:
			default:
			}
		}
		if r, err := s.runOf(ctx, cat, id); err == nil && stepEnded(r, step) {
			select {
			case <-ctx.Done():
			case <-time.After(liveGrace):
				cancel()
			}
			return
		}
	}
}

// rangeProblems makes http.ServeContent's one error a client can cause, 416
// for a Range past the end, a problem+json like every other error. It keeps
// ServeContent's Content-Range (bytes */size) and drops its text body.
type rangeProblems struct {
	gin.ResponseWriter
	c        *gin.Context
	replaced bool
}

func (w *rangeProblems) WriteHeader(code int) {
	if code != http.StatusRequestedRangeNotSatisfiable {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replaced = true
	w.Header().Del("Content-Length") // ServeContent's, for its text
	detail := "the Range is past the end of the log"
	if size, ok := strings.CutPrefix(w.Header().Get("Content-Range"), "bytes */"); ok {
		detail += " (" + size + " bytes)"
	}
	writeProblem(w.c, code, detail) // through c.Writer, not this wrapper
}

func (w *rangeProblems) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil // ServeContent's text/plain message
	}
	return w.ResponseWriter.Write(b)
}

// maxFollow bounds one streaming request; a client reconnects with Range.
const maxFollow = time.Hour

func (s *Server) follow(c *gin.Context, ref string, f *os.File) {
	id, step, ok := parseRef(ref)
	var cat *catalog // the pipelines, to find the run's: once per request
	if ok {
		cat = s.catalog()
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), maxFollow)
	defer cancel()
	// The run is re-read only when it changed (runwatch, as long-polls
	// are woken), not on a timer: an idle follower costs Redis nothing.
	var w *runwatch.Watcher
	if ok && s.Watch != nil {
		w = s.Watch.Watch(id) // before the first read: no change slips by
		defer func() { w.Close() }()
	}
	c.Status(http.StatusOK)
	c.Writer.Flush() // the 200 now, not at the step's first byte
	buf := make([]byte, 32<<10)
	check := true // the step may be over already
	lastCheck := time.Time{}
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := c.Writer.Write(buf[:n]); werr != nil {
				return
			}
			c.Writer.Flush()
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return
		}
		// At the end of what is written: stop once the step is over (one
		// more read catches its last bytes), else wait for more.
		if !ok {
			return
		}
		if check {
			lastCheck = time.Now()
			r, gerr := s.runOf(ctx, cat, id)
			if gerr != nil || stepEnded(r, step) {
				if n, _ := io.Copy(c.Writer, f); n > 0 {
					c.Writer.Flush()
				}
				return
			}
		}
		// New bytes need polling the file; a change of the run does not.
		switch {
		case w != nil:
			if check = w.Wait(ctx, 100*time.Millisecond); check {
				w.Close()
				w = s.Watch.Watch(id)
			}
		default: // no subscription: look at the run every 500 ms
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			check = time.Since(lastCheck) > 500*time.Millisecond
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// parseRef splits "17/gate-unit.log" into run 17 and step "gate-unit".
func parseRef(ref string) (int64, string, bool) {
	dir, file, ok := strings.Cut(ref, "/")
	if !ok {
		return 0, "", false
	}
	id, err := strconv.ParseInt(dir, 10, 64)
	step, isLog := strings.CutSuffix(file, ".log")
	return id, step, err == nil && isLog && datadir.LogRef(id, step) == ref
}

// stepEnded reports whether a run has moved past the step that writes a log.
func stepEnded(r *vocab.Run, name string) bool {
	if r.Result.Terminal() {
		return true
	}
	s, ok := steps.Parse(name)
	switch {
	case !ok:
		return true // no step writes it: nothing to wait for
	case s.Gate != "":
		for _, g := range r.Gates {
			if g.Kind == s.Gate {
				return g.Status != vocab.GateRunning
			}
		}
		return false
	}
	return r.Phase.Rank() > s.Phase.Rank()
}
