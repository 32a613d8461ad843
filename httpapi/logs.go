package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"sando/datadir"
	"sando/run"
	"sando/runwatch"
	"sando/steps"
)

// logs serves one step's log. Range requests work (http.ServeContent);
// ?follow=1 streams new bytes until the step ends.
func (s *Server) logs(c *gin.Context) {
	ref := strings.TrimPrefix(c.Param("ref"), "/")
	f, err := s.Layout.OpenLog(ref)
	if err != nil {
		s.abort(c, notFound("no log "+strconv.Quote(ref)))
		return
	}
	defer f.Close()
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.Header("X-Content-Type-Options", "nosniff")
	// A HEAD asks for the headers of the log as it is: it never streams.
	if follow := c.Query("follow"); (follow == "1" || follow == "true") && c.Request.Method == http.MethodGet {
		s.follow(c, ref, f)
		return
	}
	st, err := f.Stat()
	if err != nil {
		s.abort(c, err)
		return
	}
	http.ServeContent(&rangeProblems{ResponseWriter: c.Writer, c: c}, c.Request, "", st.ModTime(), f)
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
func stepEnded(r *run.Run, name string) bool {
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
				return g.Status != run.GateRunning
			}
		}
		return false
	}
	return r.Phase.Rank() > s.Phase.Rank()
}
