package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err, "the Prometheus text parser must accept /metrics")
	return families
}

// hasSeries reports whether family has a series with all the given labels.
func hasSeries(f *dto.MetricFamily, labels map[string]string) bool {
	if f == nil {
		return false
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		ok := true
		for k, v := range labels {
			if got[k] != v {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// After a green and a red run, /metrics of the all-in-one process carries
// every metric operators graph, with the right labels.
func TestMetricsAfterGreenAndRedRuns(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{embedded: true, pipeline: `build: echo built
gates:
  - kind: unit
    run: test "$SANDO_RUN_ID" = 1
`})
	require.Equal(t, "passed", s.waitTerminal(s.rebuild(""))["result"])
	require.Equal(t, "failed", s.waitTerminal(s.rebuild(""))["result"])
	s.get("/runs/1")

	want := []struct {
		family string
		labels map[string]string
	}{
		{"sando_runs_started_total", map[string]string{"pipeline": "default"}},
		{"sando_runs_finished_total", map[string]string{"pipeline": "default", "result": "passed"}},
		{"sando_runs_finished_total", map[string]string{"pipeline": "default", "result": "failed"}},
		{"sando_runs_building", nil},
		{"sando_runs_superseded_total", map[string]string{"pipeline": "default"}},
		{"sando_runs_canceled_total", map[string]string{"pipeline": "default"}},
		{"sando_phase_duration_seconds", map[string]string{"phase": "compiling", "outcome": "ok"}},
		{"sando_phase_duration_seconds", map[string]string{"phase": "gating", "outcome": "failed"}},
		{"sando_gate_duration_seconds", map[string]string{"kind": "unit", "status": "passed"}},
		{"sando_gate_duration_seconds", map[string]string{"kind": "unit", "status": "failed"}},
		{"sando_http_request_duration_seconds", map[string]string{"route": "/runs/:id", "method": "GET", "status": "200"}},
		{"sando_http_request_duration_seconds", map[string]string{"route": "/rebuild", "method": "POST", "status": "202"}},
		{"sando_longpoll_waiters", nil},
		{"asynq_queue_size", map[string]string{"queue": "fetch"}},
		{"asynq_tasks_enqueued_total", map[string]string{"queue": diskQueue(t, s.dataDir), "state": "archived"}},
	}
	// A worker counts a run right after its terminal write: scrape until
	// the last one is in.
	var f map[string]*dto.MetricFamily
	missing := func() string {
		f = scrape(t, s.base+"/metrics")
		for _, c := range want {
			if !hasSeries(f[c.family], c.labels) {
				return fmt.Sprintf("%s%v", c.family, c.labels)
			}
		}
		return ""
	}
	require.Eventually(t, func() bool { return missing() == "" }, 5*time.Second, 50*time.Millisecond, "missing: %s", missing())
	started := f["sando_runs_started_total"].GetMetric()[0].GetCounter().GetValue()
	require.Equal(t, 2.0, started)
	require.Equal(t, 0.0, f["sando_runs_building"].GetMetric()[0].GetGauge().GetValue())
	checkDashboard(t, f)
}

// A separate worker serves its own /metrics and /healthz.
func TestWorkerOpsPort(t *testing.T) {
	t.Parallel()
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{workerAddr: addr, pipeline: "build: \"true\"\n"})
	require.Equal(t, "passed", s.waitTerminal(s.rebuild(""))["result"])
	var f map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		f = scrape(t, "http://"+addr+"/metrics")
		return hasSeries(f["sando_runs_finished_total"], map[string]string{"result": "passed"})
	}, 5*time.Second, 50*time.Millisecond)
	resp, err := http.Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.HasPrefix(fmt.Sprint(f["sando_phase_duration_seconds"].GetType()), "HISTOGRAM"))
}
