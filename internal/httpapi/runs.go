package httpapi

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/runview"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
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
	req, err := decodeRebuildFrom(c.ContentType(), body)
	if err != nil {
		s.abort(c, err)
		return
	}
	key, err := idempotencyKey(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	p, err := rebuildPipe(s.catalog(), c.Param("name"), req.Pipeline)
	if err != nil {
		s.abort(c, err)
		return
	}
	def, err := pipeline.Marshal(p.def) // the definition travels with the run
	if err != nil {
		s.abort(c, err)
		return
	}
	created, err := p.life.Start(c, runstore.CreateRequest{
		SHA: req.SHA, Ref: req.Ref, Definition: def, NoSupersede: s.NoSupersede,
		IdempotencyKey: key, Fingerprint: "pipeline=" + p.def.Name + "\x00sha=" + req.SHA + "\x00ref=" + req.Ref,
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
	if prefersHTML(c.GetHeader("Accept")) { // a page's form: on to the new run's page
		c.Redirect(http.StatusSeeOther, url)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"run_id": created.ID, "url": url, "superseded": superseded})
}

// rebuildPipe is the pipeline a rebuild is for: the one its path names
// (unknown: 404), else the one its body names (unknown: 400), else the
// only one there is.
func rebuildPipe(cat *catalog, path, body string) (*pipe, error) {
	switch {
	case path != "" && body != "" && body != path:
		return nil, badRequest(fmt.Sprintf("pipeline: the body names %q, the path %q", body, path))
	case path != "":
		return cat.named(path)
	case body != "":
		if p, ok := cat.pipes[body]; ok {
			return p, nil
		}
		return nil, badRequest(fmt.Sprintf("pipeline: %q is not a pipeline of this server (the pipelines: %s)", body, cat.names()))
	}
	return cat.only(`name one in the body, {"pipeline": "<name>"}, or POST /pipelines/<name>/rebuild`)
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

// listRuns answers GET /runs and GET /pipelines/{name}/runs: one
// pipeline's runs, or with several pipelines and none named, every
// pipeline's merged, newest first. Run ids are unique and increasing across
// the deployment, so ?before= pages through the merge as through one list.
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
	cat := s.catalog()
	chosen, err := cat.chosen(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	pipes := cat.all()
	if chosen != nil {
		pipes = []*pipe{chosen}
	}
	var runs []*vocab.Run
	for _, p := range pipes {
		rs, err := p.store.List(c, int64(before), limit)
		if err != nil {
			s.abort(c, err)
			return
		}
		runs = append(runs, rs...)
	}
	if len(pipes) > 1 {
		slices.SortFunc(runs, func(a, b *vocab.Run) int { return cmp.Compare(b.ID, a.ID) })
		runs = runs[:min(len(runs), limit)]
	}
	out := make([]runview.Summary, len(runs))
	for i, r := range runs {
		out[i] = runview.SummaryOf(r)
	}
	var next *string
	if len(runs) == limit && runs[len(runs)-1].ID > 1 {
		n := fmt.Sprintf("%s?before=%d&limit=%d", c.Request.URL.Path, runs[len(runs)-1].ID, limit)
		if q := c.Query("pipeline"); q != "" {
			n += "&pipeline=" + q // a known name: URL-safe
		}
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
	p, err := s.pipeOf(c, s.catalog(), id)
	if err != nil {
		s.abort(c, err)
		return
	}
	r, won, err := p.life.Cancel(c, id)
	if err != nil {
		s.abort(c, err)
		return
	}
	if !won {
		s.abort(c, conflict(fmt.Sprintf("run %d is already %s", id, r.Result)))
		return
	}
	if prefersHTML(c.GetHeader("Accept")) { // a page's form: back to the run's page
		c.Redirect(http.StatusSeeOther, "/runs/"+strconv.FormatInt(id, 10))
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

// state answers GET /state and GET /pipelines/{name}/state.
func (s *Server) state(c *gin.Context) {
	cat := s.catalog()
	p, err := cat.chosen(c)
	if err == nil && p == nil {
		p, err = cat.only("name one with ?pipeline=<name>, or GET /pipelines/<name>/state")
	}
	if err != nil {
		s.abort(c, err)
		return
	}
	out, err := s.stateOf(c, p)
	if err != nil {
		s.abort(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}

// stateOf is a pipeline's /state: its last passed run with its tier's
// gates, and its newest run.
func (s *Server) stateOf(ctx context.Context, p *pipe) (runview.State, error) {
	states, err := s.statesOf(ctx, []*pipe{p})
	if err != nil {
		return runview.State{}, err
	}
	return states[0], nil
}

// statesOf is stateOf of each pipeline, read in three round trips in all
// (runstore.Deployments), so listing fifty pipelines costs no more.
func (s *Server) statesOf(ctx context.Context, ps []*pipe) ([]runview.State, error) {
	stores := make([]*runstore.Store, len(ps))
	tiers := make([]string, len(ps))
	for i, p := range ps {
		stores[i], tiers[i] = p.store, p.def.Tier
	}
	ds, err := runstore.Deployments(ctx, s.Redis, stores, tiers)
	if err != nil {
		return nil, err
	}
	out := make([]runview.State, len(ps))
	for i, d := range ds {
		if last := d.LastPassed; last != nil {
			out[i].Deployed = &runview.Deployed{
				RunID: last.ID, SHA: last.SHA, Version: last.Version,
				FinishedAt: runview.Time(last.FinishedAt), Gates: runview.Gates(d.TierGates),
			}
		}
		if latest := d.Latest; latest != nil {
			out[i].Build = &runview.Build{
				RunID: latest.ID, SHA: runview.Nullable(latest.SHA), Version: runview.Nullable(latest.Version),
				Phase: latest.Phase, Result: latest.Result, FailureSummary: runview.FailureSummary(latest),
				ElapsedS: int64(latest.Elapsed(s.Now()) / time.Second),
			}
		}
	}
	return out, nil
}
