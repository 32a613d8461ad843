package e2e

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// dashboardPath is the Grafana dashboard operators import (deploy/).
const dashboardPath = "../deploy/grafana/sando.json"

var (
	metricName = regexp.MustCompile(`\b(?:sando|asynq)_[a-z_]+\b`)
	byLabels   = regexp.MustCompile(`\bby \(([^)]*)\)`)
	matchers   = regexp.MustCompile(`\{([^}]*)\}`)
	matcherKey = regexp.MustCompile(`([a-z_]+)\s*(?:=~|!~|!=|=)`)
)

// checkDashboard: the dashboard is JSON Grafana can import, and every
// query names metrics that families (a scrape of Sando) has, grouped and
// filtered by labels those metrics carry. A renamed metric or label
// breaks this test, not an operator's graph.
func checkDashboard(t *testing.T, families map[string]*dto.MetricFamily) {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)
	var d struct {
		Title  string
		Panels []struct {
			Title   string
			Type    string
			Targets []struct{ Expr string }
		}
	}
	require.NoError(t, json.Unmarshal(b, &d), "the dashboard must parse")
	require.NotEmpty(t, d.Title)
	queries := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			queries++
			names := metricName.FindAllString(tg.Expr, -1)
			require.NotEmpty(t, names, "panel %q: %q names no Sando metric", p.Title, tg.Expr)
			labels := map[string]bool{"le": true}
			for _, n := range names {
				f := familyOf(families, n)
				require.NotNil(t, f, "panel %q: %s is not a metric Sando exposes", p.Title, n)
				for _, m := range f.GetMetric() {
					for _, lp := range m.GetLabel() {
						labels[lp.GetName()] = true
					}
				}
			}
			var used []string
			for _, m := range byLabels.FindAllStringSubmatch(tg.Expr, -1) {
				for l := range strings.SplitSeq(m[1], ",") {
					used = append(used, strings.TrimSpace(l))
				}
			}
			for _, m := range matchers.FindAllStringSubmatch(tg.Expr, -1) {
				for _, k := range matcherKey.FindAllStringSubmatch(m[1], -1) {
					used = append(used, k[1])
				}
			}
			for _, l := range used {
				require.True(t, labels[l], "panel %q: label %q is on none of %v", p.Title, l, names)
			}
		}
	}
	require.Greater(t, queries, 10)
}

// familyOf finds the family a query's series name belongs to: a histogram's
// _bucket, _sum and _count series are its own family's.
func familyOf(families map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	if f := families[name]; f != nil {
		return f
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f := families[base]; f != nil && slices.Contains([]dto.MetricType{dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY}, f.GetType()) {
				return f
			}
		}
	}
	return nil
}
