package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"sando/runstore"
	"sando/runview"
)

// maxIdemKey bounds the Idempotency-Key header (it becomes a Redis key).
const maxIdemKey = 255

func idempotencyKey(c *gin.Context) (string, error) {
	k := c.GetHeader("Idempotency-Key")
	if len(k) > maxIdemKey {
		return "", badRequest("Idempotency-Key: longer than 255 characters")
	}
	for _, r := range k {
		if r < 0x21 || r > 0x7e {
			return "", badRequest("Idempotency-Key: only visible ASCII characters are allowed")
		}
	}
	return k, nil
}

func (s *Server) rebuild(c *gin.Context) {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		s.abort(c, err)
		return
	}
	req, err := decodeRebuild(body)
	if err != nil {
		s.abort(c, err)
		return
	}
	key, err := idempotencyKey(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	created, err := s.Life.Start(c, runstore.CreateRequest{
		SHA: req.SHA, Ref: req.Ref, NoSupersede: s.NoSupersede,
		IdempotencyKey: key, Fingerprint: "sha=" + req.SHA + "\x00ref=" + req.Ref,
	})
	if err != nil {
		s.abort(c, err)
		return
	}
	if created.Replayed {
		c.Header("Idempotent-Replayed", "true")
	}
	superseded := make([]int64, 0, len(created.Superseded))
	for _, old := range created.Superseded {
		superseded = append(superseded, old.ID)
	}
	url := "/runs/" + strconv.FormatInt(created.ID, 10)
	c.Header("Location", url)
	c.JSON(http.StatusAccepted, gin.H{"run_id": created.ID, "url": url, "superseded": superseded})
}

func parseID(c *gin.Context) (int64, error) {
	raw := c.Param("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequest(fmt.Sprintf("run id %q is not a positive integer", raw))
	}
	return id, nil
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == etag || t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

func (s *Server) listRuns(c *gin.Context) {
	limit, err := intParam(c, "limit", 20, 1, 100)
	if err != nil {
		s.abort(c, err)
		return
	}
	before, err := intParam(c, "before", 0, 1, 1<<62)
	if err != nil {
		s.abort(c, err)
		return
	}
	runs, err := s.Store.List(c, int64(before), limit)
	if err != nil {
		s.abort(c, err)
		return
	}
	out := make([]runview.Summary, len(runs))
	for i, r := range runs {
		out[i] = runview.SummaryOf(r)
	}
	var next *string
	if len(runs) == limit && runs[len(runs)-1].ID > 1 {
		n := fmt.Sprintf("/runs?before=%d&limit=%d", runs[len(runs)-1].ID, limit)
		next = &n
	}
	c.JSON(http.StatusOK, gin.H{"runs": out, "next": next})
}

func intParam(c *gin.Context, name string, def, lo, hi int) (int, error) {
	raw, ok := c.GetQuery(name)
	if !ok {
		return def, nil
	}
	v, err := strconv.Atoi(raw)
	if err != nil || v < lo || v > hi {
		return 0, badRequest(fmt.Sprintf("%s=%q: want an integer from %d to %d", name, raw, lo, hi))
	}
	return v, nil
}

func (s *Server) cancel(c *gin.Context) {
	id, err := parseID(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	r, won, err := s.Life.Cancel(c, id)
	if err != nil {
		s.abort(c, err)
		return
	}
	if !won {
		s.abort(c, conflict(fmt.Sprintf("run %d is already %s", id, r.Result)))
		return
	}
	v, err := s.render(r)
	if err != nil {
		s.abort(c, err)
		return
	}
	c.Header("ETag", v.etag)
	c.Data(http.StatusOK, "application/json", v.body)
}

func (s *Server) state(c *gin.Context) {
	var out runview.State
	last, err := s.Store.LastPassed(c)
	switch {
	case err == nil:
		gates, err := s.Store.TierGates(c, s.Pipeline.Tier, last.Version)
		if err != nil {
			s.abort(c, err)
			return
		}
		out.Deployed = &runview.Deployed{
			RunID: last.ID, SHA: last.SHA, Version: last.Version,
			FinishedAt: runview.Time(last.FinishedAt), Gates: runview.Gates(gates),
		}
	case !errors.Is(err, runstore.ErrNotFound):
		s.abort(c, err)
		return
	}
	latest, err := s.Store.Latest(c)
	switch {
	case err == nil:
		b := runview.Build{
			RunID: latest.ID, SHA: runview.Nullable(latest.SHA), Version: runview.Nullable(latest.Version),
			Phase: latest.Phase, Result: latest.Result, FailureSummary: runview.FailureSummary(latest),
			ElapsedS: int64(latest.Elapsed(s.Now()) / time.Second),
		}
		out.Build = &b
	case !errors.Is(err, runstore.ErrNotFound):
		s.abort(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}
