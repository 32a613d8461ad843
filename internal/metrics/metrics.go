// Package metrics is Sando's Prometheus instrumentation: runs, phases,
// gates, HTTP requests, long-poll waiters and asynq's queues. Every method
// is safe on a nil *Metrics, so code under test can run without it.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds one process's collectors in its own registry.
type Metrics struct {
	reg           *prometheus.Registry
	runsStarted   *prometheus.CounterVec
	runsFinished  *prometheus.CounterVec
	superseded    *prometheus.CounterVec
	canceled      *prometheus.CounterVec
	phaseDuration *prometheus.HistogramVec
	gateDuration  *prometheus.HistogramVec
	httpDuration  *prometheus.HistogramVec
	// httpObs caches httpDuration's observer per httpKey: a request's
	// observation is then one map load, not a label hash, lookup and
	// strconv per request (it was about 13% of a finished run's poll).
	httpObs sync.Map // httpKey → prometheus.Observer
}

// httpKey is one series of httpDuration.
type httpKey struct {
	route, method string
	status        int
}

// Buckets from 50 ms (a no-op phase) to about 1 h (a long compile).
var durationBuckets = prometheus.ExponentialBucketsRange(0.05, 3600, 16)

// New makes the collectors, with Go runtime and process metrics.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		runsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sando_runs_started_total", Help: "Runs created by POST /rebuild, by pipeline.",
		}, []string{"pipeline"}),
		runsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sando_runs_finished_total", Help: "Runs that reached a terminal result, by pipeline and result.",
		}, []string{"pipeline", "result"}),
		superseded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sando_runs_superseded_total", Help: "Building runs aborted by a newer /rebuild, by pipeline.",
		}, []string{"pipeline"}),
		canceled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sando_runs_canceled_total", Help: "Building runs aborted by POST /runs/{id}/cancel, by pipeline.",
		}, []string{"pipeline"}),
		phaseDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sando_phase_duration_seconds", Help: "Time a phase task ran, by phase and outcome.",
			Buckets: durationBuckets,
		}, []string{"phase", "outcome"}),
		gateDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sando_gate_duration_seconds", Help: "Time a gate's command ran, by gate kind and status.",
			Buckets: durationBuckets,
		}, []string{"kind", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sando_http_request_duration_seconds", Help: "API request time, by route, method and status.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method", "status"}),
	}
	m.reg.MustRegister(m.runsStarted, m.runsFinished, m.superseded, m.canceled,
		m.phaseDuration, m.gateDuration, m.httpDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Register adds more collectors (queue metrics, gauges read at scrape).
func (m *Metrics) Register(cs ...prometheus.Collector) {
	if m != nil {
		m.reg.MustRegister(cs...)
	}
}

// GaugeFunc adds a gauge read at scrape time.
func (m *Metrics) GaugeFunc(name, help string, fn func() float64) {
	m.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// RunStarted counts a new run.
func (m *Metrics) RunStarted(pipeline string) {
	if m != nil {
		m.runsStarted.WithLabelValues(pipeline).Inc()
	}
}

// RunFinished counts a terminal write that won.
func (m *Metrics) RunFinished(pipeline, result string) {
	if m != nil {
		m.runsFinished.WithLabelValues(pipeline, result).Inc()
	}
}

// Pipelines makes the per-pipeline run counters of these pipelines exist
// at zero, so a dashboard sees every pipeline (and a rate over it) before
// its first run.
func (m *Metrics) Pipelines(names []string) {
	if m == nil {
		return
	}
	for _, n := range names {
		m.runsStarted.WithLabelValues(n)
		m.superseded.WithLabelValues(n)
		m.canceled.WithLabelValues(n)
	}
}

// Superseded counts runs aborted by a newer rebuild. Their finish is
// counted by RunFinished, like every other terminal write.
func (m *Metrics) Superseded(pipeline string, n int) {
	if m != nil && n > 0 {
		m.superseded.WithLabelValues(pipeline).Add(float64(n))
	}
}

// Canceled counts a canceled run. Its finish is counted by RunFinished,
// like every other terminal write.
func (m *Metrics) Canceled(pipeline string) {
	if m != nil {
		m.canceled.WithLabelValues(pipeline).Inc()
	}
}

// Phase records how long a phase task ran and how it ended ("ok",
// "failed", "retry", "canceled").
func (m *Metrics) Phase(phase, outcome string, d time.Duration) {
	if m != nil {
		m.phaseDuration.WithLabelValues(phase, outcome).Observe(d.Seconds())
	}
}

// Gate records how long a gate's command ran and its status.
func (m *Metrics) Gate(kind, status string, d time.Duration) {
	if m != nil {
		m.gateDuration.WithLabelValues(kind, status).Observe(d.Seconds())
	}
}

// HTTP records one API request. route is the route pattern, never the
// raw path, and a method outside HTTP's own is counted as "other": a
// client's made-up paths and methods add no series.
func (m *Metrics) HTTP(route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	k := httpKey{route, knownMethod(method), status}
	o, ok := m.httpObs.Load(k)
	if !ok {
		o, _ = m.httpObs.LoadOrStore(k, m.httpDuration.WithLabelValues(k.route, k.method, strconv.Itoa(status)))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}

// knownMethod is method if HTTP defines it, else "other".
func knownMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}
