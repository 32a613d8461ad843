// Package httpapi is Sando's HTTP API on Gin. It enqueues and reads; it
// never builds. The contract is the README and the OpenAPI document
// (openapi.json); errors are problem+json, mapped in one place (problem.go).
package httpapi

import (
	"cmp"
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/lifecycle"
	"sando.dev/sando/internal/metrics"
	"sando.dev/sando/internal/pages"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/runwatch"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/runstore"
)

// Server holds what the handlers need. Nothing is fished out of the Gin
// context.
type Server struct {
	// Redis holds every pipeline's runs.
	Redis redis.UniversalClient
	// Pipelines is the set in force (pipeline.Registry.Current). Each
	// request takes it once, so a reload never splits a request between
	// two sets.
	Pipelines func() *pipeline.Set
	// Fleet says which pipeline a run id belongs to; nil: the fleet on Redis.
	Fleet *runstore.Fleet
	// Queue takes each new run's first step.
	Queue steps.Enqueuer
	// Canceler reaches the running task of a canceled or superseded run
	// (the Inspector); nil leaves that to the phase, which watches its run.
	Canceler lifecycle.Canceler
	Layout   datadir.Layout
	// Ping checks Redis for /readyz.
	Ping   func(context.Context) error
	Logger *slog.Logger
	// Token guards mutating routes; ReadToken, when set, guards reads too.
	Token, ReadToken string
	// Watch wakes long-poll waiters when a run changes; nil disables
	// holding requests (?wait= then answers at once).
	Watch *runwatch.Hub
	// Draining, once done, ends held long-polls with their current state
	// so a shutdown does not wait for them.
	Draining context.Context
	// Metrics records requests and run counts; nil records nothing.
	Metrics *metrics.Metrics
	// NoSupersede keeps older building runs alive on /rebuild
	// (SANDO_SUPERSEDE=0, for benchmarks).
	NoSupersede bool
	// Extra mounts more routes (Asynqmon) on the engine.
	Extra func(*gin.Engine)
	Now   func() time.Time

	pages  *pages.Renderer
	cache  *viewCache
	reads  *reads
	owners *lru.Cache[int64, string] // run id → its pipeline (see pipeOf)
	cat    atomic.Pointer[catalog]   // the last set opened (see catalog)
}

// NewHTTPServer is the net/http server every Sando listener runs:
// request headers must arrive within 10 s, so a slow client cannot hold a
// connection forever, and stay under 64 KiB. The benchmark's bare Gin
// baselines run on it too, so they differ from the API by handlers only.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
}

// maxBody is the largest request body accepted (413 past it).
const maxBody = 64 << 10

// Handler builds the Gin engine with every route of the API.
func (s *Server) Handler() http.Handler {
	s.Logger = cmp.Or(s.Logger, slog.Default())
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Fleet == nil && s.Redis != nil {
		s.Fleet = runstore.NewFleet(s.Redis)
	}
	pg, err := pages.New()
	if err != nil {
		panic(err) // embedded templates that do not parse: a broken build, caught by every test
	}
	s.pages = pg
	s.cache = newViewCache(4096)
	s.reads = newReads()
	s.owners, _ = lru.New[int64, string](1 << 16) // an error only for a size <= 0
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true // handlers' c.Done() follows the request
	r.Use(s.observe, s.recoverer(), s.limitBody)

	write := r.Group("/", s.sameOrigin(), s.auth(s.Token))
	read := r.Group("/", s.auth(s.ReadToken, s.Token)) // the write token grants every read
	write.POST("/rebuild", s.rebuild)
	write.POST("/pipelines/:name/rebuild", s.rebuild)
	write.POST("/runs/:id/cancel", s.cancel)
	write.POST(`/pipelines/:name/cache\:clear`, s.clearCache) // a literal colon, escaped for Gin
	get(read, "/", s.index)
	get(read, "/pipelines", s.listPipelines)
	get(read, "/pipelines/:name", s.getPipeline)
	get(read, "/pipelines/:name/runs", s.listRuns)
	get(read, "/pipelines/:name/state", s.state)
	get(read, "/pipelines/:name/badge.svg", s.badge)
	get(read, "/runs/:id", s.getRun)
	get(read, "/runs", s.listRuns)
	get(read, "/state", s.state)
	get(read, "/logs/*ref", s.logs)
	get(r, "/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	get(r, "/readyz", s.readyz)
	get(r, "/openapi.json", s.openapi)
	get(r, "/assets/:name", s.asset) // the pages' CSS and JS: nothing secret
	get(r, "/metrics", gin.WrapH(s.Metrics.Handler()))
	if s.Extra != nil {
		s.Extra(r)
	}
	r.NoRoute(func(c *gin.Context) { writeProblem(c, http.StatusNotFound, "no such route: "+c.Request.URL.Path) })
	r.NoMethod(func(c *gin.Context) {
		writeProblem(c, http.StatusMethodNotAllowed, c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	return r
}

// get mounts h for GET and for HEAD: HEAD works wherever GET does (load
// balancers probe with it). The handler runs as for a GET; net/http sends
// the status and headers and drops the body.
func get(r gin.IRoutes, path string, h gin.HandlerFunc) {
	r.GET(path, h)
	r.HEAD(path, h)
}

// observe times every request by route pattern (never the raw path, to
// keep label cardinality bounded).
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	s.Metrics.HTTP(route, c.Request.Method, c.Writer.Status(), time.Since(start))
}

// auth is the bearer-token check: the request must carry token, or one of
// also (each compared in constant time). An empty token lets everything
// through.
func (s *Server) auth(token string, also ...string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if token == "" || TokenMatches(c.Request, token) {
			c.Next()
			return
		}
		for _, t := range also {
			if t != "" && TokenMatches(c.Request, t) {
				c.Next()
				return
			}
		}
		if prefersHTML(c.GetHeader("Accept")) {
			c.Header("WWW-Authenticate", `Basic realm="sando"`) // a browser asks for the token then
		} else {
			c.Header("WWW-Authenticate", `Bearer realm="sando"`)
		}
		writeProblem(c, http.StatusUnauthorized, "missing or wrong bearer token")
	}
}

// TokenMatches compares a request's bearer token (or HTTP Basic password,
// which a browser can send) with token in constant time.
func TokenMatches(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		_, got, ok = r.BasicAuth()
	}
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// limitBody makes every body reader fail past maxBody (413 via statusOf)
// and refuses a declared oversize body before reading it.
func (s *Server) limitBody(c *gin.Context) {
	if c.Request.ContentLength > maxBody {
		writeProblem(c, http.StatusRequestEntityTooLarge, "request body is over 64 KiB")
		return
	}
	if c.Request.Body != http.NoBody { // a GET has none: nothing to limit
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxBody)
	}
	c.Next()
}

// recoverer answers a panic with a 500 problem instead of Gin's bare 500
// and keeps the process up.
func (s *Server) recoverer() gin.HandlerFunc {
	return gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, err any) {
		s.Logger.Error("panic in handler", "route", c.FullPath(), "panic", err)
		writeProblem(c, http.StatusInternalServerError, "internal error")
	})
}

func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c, time.Second)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		s.abort(c, errUnavailable)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}
