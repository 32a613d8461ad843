package httpapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"sando.dev/sando/internal/lifecycle"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/runview"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// pipe is one pipeline with the store and the lifecycle of its runs.
type pipe struct {
	def   *pipeline.Pipeline
	store *runstore.Store
	life  *lifecycle.Lifecycle
}

// open is the one place a pipeline's store and lifecycle are made.
func (s *Server) open(p *pipeline.Pipeline) *pipe {
	store := runstore.New(s.Redis, p.Name, runstore.WithWebhooks(len(p.Webhooks) > 0))
	return &pipe{def: p, store: store, life: &lifecycle.Lifecycle{
		Store: store, Pipeline: p, Queue: s.Queue, Canceler: s.Canceler, Metrics: s.Metrics, Logger: s.Logger,
	}}
}

// catalog is a pipeline Set with every pipeline in it opened. A request
// takes one (Server.catalog) and makes every look-up in it, so a reload in
// the middle of a request changes nothing the request sees.
type catalog struct {
	set   *pipeline.Set
	pipes map[string]*pipe
}

// catalog is the set in force, opened. It is opened again only when the
// set changed (a reload): a request normally makes nothing here.
func (s *Server) catalog() *catalog {
	set := s.Pipelines()
	if c := s.cat.Load(); c != nil && c.set == set {
		return c
	}
	c := &catalog{set: set, pipes: make(map[string]*pipe, set.Len())}
	for _, name := range set.Names() {
		p, _ := set.Get(name)
		c.pipes[name] = s.open(p)
	}
	s.cat.Store(c) // racing requests may each open it once: harmless
	return c
}

// all lists the pipelines, sorted by name.
func (c *catalog) all() []*pipe {
	out := make([]*pipe, 0, len(c.pipes))
	for _, name := range c.set.Names() {
		out = append(out, c.pipes[name])
	}
	return out
}

// names is the pipelines' names for a problem's detail: "a, b".
func (c *catalog) names() string { return strings.Join(c.set.Names(), ", ") }

// named is the pipeline a path or query names; an unknown name is 404.
func (c *catalog) named(name string) (*pipe, error) {
	if p, ok := c.pipes[name]; ok {
		return p, nil
	}
	return nil, notFound(fmt.Sprintf("no pipeline %q (the pipelines: %s)", name, c.names()))
}

// only is the pipeline a route without a name acts on: the one there is.
// With several, the request must name one; how is what says.
func (c *catalog) only(how string) (*pipe, error) {
	if len(c.pipes) == 1 {
		return c.all()[0], nil
	}
	return nil, badRequest(fmt.Sprintf("this server has %d pipelines (%s): %s", len(c.pipes), c.names(), how))
}

// chosen is the pipeline a read names in its path (/pipelines/{name}/…)
// or its ?pipeline=, or nil for none; an unknown name is 404, and a path
// and a query naming two pipelines is 400.
func (c *catalog) chosen(g *gin.Context) (*pipe, error) {
	path, query := g.Param("name"), g.Query("pipeline")
	if path != "" && query != "" && path != query {
		return nil, badRequest(fmt.Sprintf("the path names pipeline %q and ?pipeline= %q", path, query))
	}
	if name := cmp.Or(path, query); name != "" {
		return c.named(name)
	}
	return nil, nil
}

// pipeOf is the pipeline run id belongs to. The fleet's index says which
// (remembered: a run never changes pipeline); for a run the index lacks,
// made before there was one and not yet adopted, each configured pipeline
// is asked. A run of a pipeline since taken out of the files stays
// readable and cancelable, with the definition it carries.
func (s *Server) pipeOf(ctx context.Context, c *catalog, id int64) (*pipe, error) {
	name, ok := s.owners.Get(id)
	if !ok {
		var err error
		name, err = s.Fleet.PipelineOf(ctx, id)
		switch {
		case errors.Is(err, runstore.ErrNotFound):
			if name, err = probe(ctx, c, id); err != nil {
				return nil, err
			}
		case err != nil:
			return nil, err
		}
		s.owners.Add(id, name)
	}
	if p, ok := c.pipes[name]; ok {
		return p, nil
	}
	p := s.open(&pipeline.Pipeline{Name: name})
	r, err := p.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if def, err := pipeline.Unmarshal([]byte(r.Definition)); err == nil {
		p = s.open(def)
	}
	return p, nil
}

// runOf reads run id from its pipeline's store.
func (s *Server) runOf(ctx context.Context, c *catalog, id int64) (*vocab.Run, error) {
	p, err := s.pipeOf(ctx, c, id)
	if err != nil {
		return nil, err
	}
	return p.store.Get(ctx, id)
}

// probe finds the configured pipeline that has run id, or ErrNotFound.
func probe(ctx context.Context, c *catalog, id int64) (string, error) {
	for _, p := range c.all() {
		_, err := p.store.Result(ctx, id)
		switch {
		case err == nil:
			return p.def.Name, nil
		case !errors.Is(err, runstore.ErrNotFound):
			return "", err
		}
	}
	return "", runstore.ErrNotFound
}

// pipelineItem is one pipeline in GET /pipelines: its name and branch,
// with its /state.
type pipelineItem struct {
	Name   string `json:"name"`
	Branch string `json:"branch"`
	Tier   string `json:"tier"`
	URL    string `json:"url"`
	runview.State
}

func (s *Server) item(ctx context.Context, p *pipe) (pipelineItem, error) {
	st, err := s.stateOf(ctx, p)
	return itemOf(p, st), err
}

func itemOf(p *pipe, st runview.State) pipelineItem {
	return pipelineItem{Name: p.def.Name, Branch: p.def.Branch, Tier: p.def.Tier,
		URL: "/pipelines/" + p.def.Name, State: st}
}

// listPipelines answers GET /pipelines, and GET / for a client that does
// not prefer HTML.
func (s *Server) listPipelines(c *gin.Context) {
	ps := s.catalog().all()
	states, err := s.statesOf(c, ps)
	if err != nil {
		s.abort(c, err)
		return
	}
	items := make([]pipelineItem, len(ps))
	for i, p := range ps {
		items[i] = itemOf(p, states[i])
	}
	c.JSON(http.StatusOK, gin.H{"pipelines": items})
}

// index answers GET /. Its body depends on Accept (Vary says so): a
// browser gets the dashboard, any other client GET /pipelines' JSON.
func (s *Server) index(c *gin.Context) {
	c.Header("Vary", "Accept")
	if prefersHTML(c.GetHeader("Accept")) {
		s.dashboardHTML(c)
		return
	}
	s.listPipelines(c)
}

func (s *Server) getPipeline(c *gin.Context) {
	p, err := s.catalog().named(c.Param("name"))
	if err != nil {
		s.abort(c, err)
		return
	}
	it, err := s.item(c, p)
	if err != nil {
		s.abort(c, err)
		return
	}
	c.JSON(http.StatusOK, it)
}

// CountBuilding is how many runs of the configured pipelines are building
// (one SCARD each), for the sando_runs_building gauge.
func (s *Server) CountBuilding(ctx context.Context) (int64, error) {
	var n int64
	for _, p := range s.catalog().all() {
		k, err := p.store.CountBuilding(ctx)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

// clearCache answers POST /pipelines/{name}/cache:clear: the pipeline's
// cache generation moves on, and every worker wipes its slots of an older
// one before a run takes them (and its tidy removes those no run takes),
// so the clear reaches every data dir through Redis alone.
func (s *Server) clearCache(c *gin.Context) {
	p, err := s.catalog().named(c.Param("name"))
	if err != nil {
		s.abort(c, err)
		return
	}
	gen, err := p.store.ClearCache(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{
		"pipeline": p.def.Name, "generation": gen,
		"detail": "every worker wipes this pipeline's cache slots before a run takes them next; runs building now keep theirs",
	})
}
