package metrics

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Each request lands in its route, method and status's series, the cached
// observer included, and a made-up method adds no series of its own.
func TestHTTPSeries(t *testing.T) {
	m := New()
	m.HTTP("/runs/:id", http.MethodGet, 200, time.Millisecond)
	m.HTTP("/runs/:id", http.MethodGet, 200, time.Millisecond) // the cached observer
	m.HTTP("/runs/:id", http.MethodGet, 304, time.Millisecond)
	m.HTTP("unmatched", "BREW", 405, time.Millisecond)
	m.HTTP("unmatched", "PROPFIND-"+strings.Repeat("x", 10), 405, time.Millisecond)

	want := map[[3]string]uint64{
		{"/runs/:id", "GET", "200"}:   2,
		{"/runs/:id", "GET", "304"}:   1,
		{"unmatched", "other", "405"}: 2,
	}
	ch := make(chan prometheus.Metric, 16)
	m.httpDuration.Collect(ch)
	if n := len(ch); n != len(want) {
		t.Fatalf("%d series, want %d", n, len(want))
	}
	for labels, count := range want {
		h, err := m.httpDuration.GetMetricWithLabelValues(labels[:]...)
		if err != nil {
			t.Fatal(err)
		}
		var d dto.Metric
		if err := h.(prometheus.Metric).Write(&d); err != nil {
			t.Fatal(err)
		}
		if got := d.GetHistogram().GetSampleCount(); got != count {
			t.Errorf("%v: %d requests, want %d", labels, got, count)
		}
	}
}

// A nil *Metrics records nothing and does not panic.
func TestNilMetrics(_ *testing.T) {
	var m *Metrics
	m.HTTP("/", http.MethodGet, 200, time.Millisecond)
	m.RunStarted("p")
}
