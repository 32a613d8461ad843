package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/metrics"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/vocab"
)

// The poll of a finished run against a static Gin route serving the same
// bytes: the handler chain's own cost, with no network (the bench's poll
// benchmark measures it over loopback).
func BenchmarkGetFinishedRun(b *testing.B) {
	mr := miniredis.RunT(b)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	b.Cleanup(func() { _ = rdb.Close() })
	set, err := pipeline.NewSet(&pipeline.Pipeline{Name: "p"})
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{Redis: rdb, Pipelines: func() *pipeline.Set { return set }, Metrics: metrics.New()}
	h := s.Handler()
	v, err := s.render(&vocab.Run{ID: 1, Phase: vocab.PhaseDone, Result: vocab.ResultPassed, StartedAt: time.Now(), FinishedAt: time.Now()})
	if err != nil {
		b.Fatal(err)
	}

	static := gin.New()
	static.GET("/runs/:id", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", v.body) })

	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"sando", h}, {"static", static}} {
		// 64 goroutines, as the bench's 64 keep-alive connections: a lock
		// on the path shows up only under contention.
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/runs/1", nil)
				for pb.Next() {
					w := httptest.NewRecorder()
					tc.h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Error(w.Code, w.Body.String())
						return
					}
				}
			})
		})
	}
}
