package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"sando.dev/sando/internal/logstore"
	"sando.dev/sando/internal/pages"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// dashboardRuns is how many of each pipeline's runs GET / shows.
const dashboardRuns = 5

// tailBytes is how much of each step's log a run's page shows; the page
// links the whole log, so a 10,000-line log costs the page 16 KiB.
const tailBytes = 16 << 10

// canWrite reports whether the request may cancel and rebuild, so a page
// shows those buttons: without SANDO_TOKEN anyone may; with it, a request
// carrying it (a browser: as the Basic password).
func (s *Server) canWrite(c *gin.Context) bool {
	return s.Token == "" || TokenMatches(c.Request, s.Token)
}

// sendHTML answers a page, with Vary: the body depends on Accept.
func (s *Server) sendHTML(c *gin.Context, body []byte) {
	h := c.Writer.Header()
	h.Set("Vary", "Accept")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", pages.CSP)
	h.Set("Referrer-Policy", "same-origin")
	sendTagged(c, "text/html; charset=utf-8", body)
}

// sendTagged answers body with a strong ETag over its bytes (so a page's
// never equals its URL's JSON view's), or 304 when If-None-Match names it.
func sendTagged(c *gin.Context, contentType string, body []byte) {
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	h := c.Writer.Header()
	h.Set("ETag", etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if etagMatches(c.GetHeader("If-None-Match"), etag) {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, contentType, body)
}

// dashboardHTML answers GET / for a browser: every pipeline with its
// newest runs, read in two pipelined Redis round trips in all.
func (s *Server) dashboardHTML(c *gin.Context) {
	pipes := s.catalog().all()
	stores := make([]*runstore.Store, len(pipes))
	for i, p := range pipes {
		stores[i] = p.store
	}
	recent, err := runstore.Recent(c, s.Redis, stores, dashboardRuns)
	if err != nil {
		s.abort(c, err)
		return
	}
	d := pages.Dashboard{CanWrite: s.canWrite(c)}
	now := s.Now()
	for i, p := range pipes {
		d.Pipelines = append(d.Pipelines, pages.NewPipelineRow(p.def.Name, p.def.Branch, recent[i], now))
	}
	body, err := s.pages.Dashboard(d)
	if err != nil {
		s.abort(c, err)
		return
	}
	s.sendHTML(c, body)
}

// runHTML answers GET /runs/{id} for a browser. The page carries the JSON
// view's ETag, which its script long-polls with.
func (s *Server) runHTML(c *gin.Context, id int64) {
	p, err := s.pipeOf(c, s.catalog(), id)
	if err != nil {
		s.abort(c, err)
		return
	}
	r, err := p.store.Get(c, id)
	if err != nil {
		s.abort(c, err)
		return
	}
	v, err := s.render(r)
	if err != nil {
		s.abort(c, err)
		return
	}
	logs, err := s.logTails(c, p, r)
	if err != nil {
		s.abort(c, err)
		return
	}
	page := pages.NewRunPage(r, s.Now(), logs)
	page.JSONETag, page.CanWrite = v.etag, s.canWrite(c)
	body, err := s.pages.Run(page)
	if err != nil {
		s.abort(c, err)
		return
	}
	s.sendHTML(c, body)
}

// logTails is the tail of each step's log the run has, phases first.
func (s *Server) logTails(ctx context.Context, p *pipe, r *vocab.Run) ([]pages.Log, error) {
	var refs []string
	for _, ph := range r.Phases {
		if ph.LogRef != "" {
			refs = append(refs, ph.LogRef)
		}
	}
	for _, g := range r.Gates {
		if g.LogRef != "" {
			refs = append(refs, g.LogRef)
		}
	}
	var out []pages.Log
	for _, ref := range refs {
		l, ok, err := s.logTail(ctx, p, r, ref)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, l)
		}
	}
	return out, nil
}

// logTail reads the last tailBytes of one log, from its first whole line;
// ok is false for a log not written yet.
func (s *Server) logTail(ctx context.Context, p *pipe, r *vocab.Run, ref string) (l pages.Log, ok bool, err error) {
	step := pages.StepOf(ref)
	l = pages.Log{Step: step, Ref: ref, Live: !stepEnded(r, step)}
	var src io.ReaderAt
	var size int64
	switch lg, err := logstore.Open(ctx, s.Redis, p.store.Keys().Log(r.ID, step)); {
	case err == nil:
		src, size = lg, lg.Size
	case errors.Is(err, logstore.ErrNotFound): // a run from before logs went to Redis
		f, ferr := s.Layout.OpenLog(ref)
		if ferr != nil {
			return l, false, nil
		}
		defer f.Close()
		st, ferr := f.Stat()
		if ferr != nil {
			return l, false, nil
		}
		src, size = f, st.Size()
	default:
		return l, false, err
	}
	from := max(0, size-tailBytes)
	buf := make([]byte, size-from)
	n, err := src.ReadAt(buf, from)
	if err != nil && !errors.Is(err, io.EOF) {
		return l, false, err
	}
	buf = buf[:n]
	if from > 0 { // start at a whole line
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf, from = buf[i+1:], from+int64(i+1)
		}
	}
	l.Tail = strings.ToValidUTF8(string(buf), "\uFFFD")
	l.Skipped, l.Size = from, from+int64(len(buf))
	return l, true, nil
}

// badge answers GET /pipelines/{name}/badge.svg: the newest run that
// passed or failed. Cache headers suit a README: a minute's max-age (so
// GitHub's image proxy refreshes it soon) and an ETag to revalidate.
func (s *Server) badge(c *gin.Context) {
	p, err := s.catalog().named(c.Param("name"))
	if err != nil {
		s.abort(c, err)
		return
	}
	result, err := newestSettled(c, p.store)
	if err != nil {
		s.abort(c, err)
		return
	}
	scope := "public"
	if s.ReadToken != "" {
		scope = "private" // a shared cache must not hand it to a client without the token
	}
	c.Header("Cache-Control", scope+", max-age=60, must-revalidate")
	sendTagged(c, "image/svg+xml; charset=utf-8", pages.Badge(p.def.Name, result))
}

// newestSettled is the result of the newest run that passed or failed,
// paging back past aborted and building runs.
func newestSettled(ctx context.Context, st *runstore.Store) (string, error) {
	var before int64
	for {
		runs, err := st.List(ctx, before, 50)
		if err != nil {
			return "", err
		}
		for _, r := range runs {
			if r.Result == vocab.ResultPassed || r.Result == vocab.ResultFailed {
				return string(r.Result), nil
			}
		}
		if len(runs) < 50 {
			return pages.BadgeNone, nil
		}
		before = runs[len(runs)-1].ID
	}
}

// asset serves the pages' stylesheet and script.
func (s *Server) asset(c *gin.Context) {
	if !s.pages.ServeAsset(c.Writer, c.Request, c.Param("name")) {
		writeProblem(c, http.StatusNotFound, "no asset "+c.Param("name"))
	}
}

// sameOrigin refuses a mutation a browser sends from another site
// (net/http's CrossOriginProtection: Sec-Fetch-Site, else Origin against
// Host). A browser would otherwise send it with its cached Basic
// credentials, or with none to a loopback Sando without SANDO_TOKEN. CI
// clients send neither header and pass.
func (s *Server) sameOrigin() gin.HandlerFunc {
	cop := http.NewCrossOriginProtection()
	return func(c *gin.Context) {
		if err := cop.Check(c.Request); err != nil {
			writeProblem(c, http.StatusForbidden, "cross-origin request refused: "+err.Error())
			return
		}
		c.Next()
	}
}
