// Package monitoring mounts Asynqmon, asynq's web console, in Sando's Gin
// API at /monitoring/: the phase queues (fetch, and each data dir's
// disk:<id> queue for compile, stage and gates), the webhook deliveries,
// their tasks in every state, the workers and Redis.
//
// Asynqmon has no auth of its own, so Mount puts Sando's token in front of
// it, accepting it as a bearer token or as an HTTP Basic password (any user
// name), which lets a browser log in through its own prompt.
//
// No Prometheus server is configured (asynqmon's PrometheusAddress stays
// empty): the UI then hides its Metrics tab and /monitoring/api/metrics
// answers an error.
package monitoring

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"

	"sando.dev/sando/internal/httpapi"
)

// RootPath is where the console is served. Gin does not strip the prefix,
// so asynqmon is told the full path.
const RootPath = "/monitoring"

// methods are those asynqmon's router uses (its API has GET, POST and
// DELETE routes; HEAD for the static files). Other methods get Gin's 405.
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete}

// Options configure Mount.
type Options struct {
	// Redis is asynq's connection (asynqmon opens its own clients on it).
	Redis asynq.RedisConnOpt
	// Token, when set, is required as "Authorization: Bearer <token>" or as
	// the password of HTTP Basic auth.
	Token string
	// ReadOnly hides the console's destructive buttons and answers 405 to
	// every non-GET API call.
	ReadOnly bool
	// Ping, when set, tells a Redis outage from Asynqmon's other errors,
	// so its API answers 503 with Retry-After while Redis is away.
	Ping   func(context.Context) error
	Logger *slog.Logger
}

// Mount routes /monitoring and /monitoring/* on r to Asynqmon. The returned
// Closer closes Asynqmon's Redis clients; call it when the API stops.
func Mount(r *gin.Engine, o Options) (io.Closer, error) {
	if o.Redis == nil {
		return nil, errors.New("monitoring: no Redis connection")
	}
	log := cmp.Or(o.Logger, slog.Default())
	h, err := newHandler(asynqmon.Options{RootPath: RootPath, RedisConnOpt: o.Redis, ReadOnly: o.ReadOnly})
	if err != nil {
		return nil, err
	}
	serve := gin.WrapH(unavailable(h, o.Ping))
	g := r.Group(RootPath, auth(o.Token))
	for _, m := range methods {
		g.Handle(m, "", serve)
		g.Handle(m, "/*any", serve)
	}
	log.Info("asynqmon mounted", "path", RootPath+"/", "read_only", o.ReadOnly, "token", o.Token != "")
	return h, nil
}

// newHandler turns asynqmon.New's panics (an unsupported connection type)
// into an error.
func newHandler(opts asynqmon.Options) (h *asynqmon.HTTPHandler, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("monitoring: %v", p)
		}
	}()
	return asynqmon.New(opts), nil
}

// auth lets a request through when token is empty or the request carries
// it (bearer or Basic password, compared in constant time); otherwise 401
// with a Basic challenge, so a browser prompts for it.
func auth(token string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if token == "" || httpapi.TokenMatches(c.Request, token) {
			c.Next()
			return
		}
		c.Header("WWW-Authenticate", `Basic realm="sando"`)
		c.Header("Content-Type", "application/problem+json")
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{
			"type": "about:blank", "title": http.StatusText(http.StatusUnauthorized), "status": http.StatusUnauthorized,
			"detail": "the monitoring console needs the API token: as a bearer token, or as the Basic password with any user name",
		})
	}
}
