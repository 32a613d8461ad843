package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/lifecycle"
	"sando.dev/sando/runstore"
)

// problem is an RFC 7807 body. Every error the API answers is one.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// apiError is an error that already knows its status and words.
type apiError struct {
	status int
	detail string
}

func (e *apiError) Error() string { return e.detail }

func badRequest(detail string) error { return &apiError{http.StatusBadRequest, detail} }
func notFound(detail string) error   { return &apiError{http.StatusNotFound, detail} }
func conflict(detail string) error   { return &apiError{http.StatusConflict, detail} }

// errUnavailable marks a failure to reach Redis (or asynq through it).
var errUnavailable = errors.New("the run store (Redis) is unreachable; retry shortly")

// statusOf is the one place that maps errors to HTTP status codes.
func statusOf(err error) (int, string) {
	var ae *apiError
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.detail
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "request body is over 64 KiB"
	case errors.Is(err, runstore.ErrNotFound):
		return http.StatusNotFound, "no run with that id"
	case errors.Is(err, runstore.ErrIdempotencyConflict):
		return http.StatusUnprocessableEntity,
			"this Idempotency-Key was used with a different request body; use a new key"
	case errors.Is(err, errUnavailable), errors.Is(err, lifecycle.ErrNotEnqueued), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, redis.ErrClosed), errors.As(err, &ne), redisNotServing(err):
		return http.StatusServiceUnavailable, errUnavailable.Error()
	}
	return http.StatusInternalServerError, "internal error"
}

// redisNotServing: Redis answered but cannot serve yet (loading its data
// after a restart, a cluster or failover in progress), or no connection
// to it was free in time.
func redisNotServing(err error) bool {
	return redis.IsLoadingError(err) || redis.IsClusterDownError(err) || redis.IsTryAgainError(err) ||
		redis.IsMasterDownError(err) || redis.IsReadOnlyError(err) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted)
}

// abort answers err as problem+json and stops the handler chain.
func (s *Server) abort(c *gin.Context, err error) {
	if errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil {
		c.Abort() // the client is gone: nobody to answer, nothing to log
		return
	}
	status, detail := statusOf(err)
	if status >= 500 {
		s.Logger.Error("request failed", "method", c.Request.Method, "route", c.FullPath(), "status", status, "err", err)
	}
	if status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "1")
	}
	writeProblem(c, status, detail)
}

func writeProblem(c *gin.Context, status int, detail string) {
	c.Header("Content-Type", "application/problem+json")
	c.AbortWithStatusJSON(status, newProblem(status, detail))
}

func newProblem(status int, detail string) problem {
	return problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
}

// WriteUnavailable answers what every route answers while Redis is away
// (503, Retry-After, problem+json), for handlers outside Gin's chain such
// as Asynqmon's.
func WriteUnavailable(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(newProblem(http.StatusServiceUnavailable, errUnavailable.Error()))
}
