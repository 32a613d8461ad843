package pages

import (
	"encoding/xml"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/vocab"
)

var t0 = time.Date(2026, 6, 13, 0, 0, 0, 0, time.UTC)

// redRun is a failed run whose unit gate failed while lint ran alongside.
func redRun() *vocab.Run {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	return &vocab.Run{
		ID: 17, Pipeline: "app", SHA: strings.Repeat("9f", 20), Version: "0.10.2",
		Phase: vocab.PhaseDone, Result: vocab.ResultFailed, StartedAt: at(0), FinishedAt: at(100),
		FailureSummary: `unit: TestAdd: <script>alert("x")</script>`,
		Phases: []vocab.PhaseRun{
			{Phase: vocab.PhaseFetching, StartedAt: at(0), FinishedAt: at(10), LogRef: "17/fetch.log"},
			{Phase: vocab.PhaseCompiling, StartedAt: at(10), FinishedAt: at(60), LogRef: "17/compile.log"},
			{Phase: vocab.PhaseGating, StartedAt: at(60), FinishedAt: at(100)},
		},
		Gates: []vocab.Gate{
			{Kind: "lint", Status: vocab.GatePassed, LogRef: "17/gate-lint.log", StartedAt: at(60), FinishedAt: at(80)},
			{Kind: "unit", Status: vocab.GateFailed, LogRef: "17/gate-unit.log", StartedAt: at(60), FinishedAt: at(100)},
		},
	}
}

func TestRunPage(t *testing.T) {
	t.Parallel()
	r, err := New()
	require.NoError(t, err)
	logs := []Log{{Step: "compile", Ref: "17/compile.log", Tail: "line 9999\nline 10000\n", Skipped: 500_000, Size: 500_020},
		{Step: "gate-unit", Ref: "17/gate-unit.log", Tail: "--- FAIL: TestAdd\n", Size: 18}}
	p := NewRunPage(redRun(), t0.Add(time.Hour), logs)
	p.CanWrite = true
	b, err := r.Run(p)
	require.NoError(t, err)
	page := string(b)
	require.Contains(t, page, `unit: TestAdd: &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`, "the summary is escaped")
	require.Less(t, strings.Index(page, `id="summary"`), strings.Index(page, `id="timeline"`), "the summary leads")
	require.Contains(t, page, "✗</span> Run #17 failed", "the result in words")
	require.Contains(t, page, "500000 bytes before it are not shown")
	require.Contains(t, page, `href="/logs/17/compile.log"`)
	require.Contains(t, page, `href="#log-gate-unit">(its log)</a>`, "the summary links the failed gate's log")
	require.NotContains(t, page, "Cancel run", "a finished run has nothing to cancel")
	require.Contains(t, page, `name="sha" value="`+strings.Repeat("9f", 20)+`"`)
	for _, landmark := range []string{"<main", "<nav", "<header", "<footer", `lang="en"`, `name="viewport"`} {
		require.Contains(t, page, landmark)
	}
	noInline(t, page)
}

// The CSP allows no inline script or style, so the templates have none.
func noInline(t *testing.T, page string) {
	t.Helper()
	require.NotRegexp(t, `\sstyle=`, page)
	require.NotRegexp(t, `<script>|<script [^>]*>[^<]`, page)
	require.NotRegexp(t, `\son[a-z]+=`, page)
}

// The timeline puts each step on the run's time: lint and unit overlap.
func TestTimeline(t *testing.T) {
	t.Parallel()
	steps := NewRunPage(redRun(), t0, nil).Steps
	byName := map[string]Step{}
	for _, s := range steps {
		byName[s.Name] = s
	}
	require.Len(t, steps, 5)
	num := func(s string) float64 { v, err := strconv.ParseFloat(s, 64); require.NoError(t, err); return v }
	require.Equal(t, 60.0, num(byName["lint"].X))
	require.Equal(t, 20.0, num(byName["lint"].W))
	require.Equal(t, 60.0, num(byName["unit"].X))
	require.Equal(t, 40.0, num(byName["unit"].W))
	require.Equal(t, "50.0s", byName["compiling"].Duration)
	require.Equal(t, "+10.0s", byName["compiling"].Offset)
	require.Equal(t, "failed", byName["gating"].Status.Word)
	require.Equal(t, "passed", byName["compiling"].Status.Word)

	building := redRun()
	building.Result, building.Phase, building.FinishedAt, building.Gates = vocab.ResultBuilding, vocab.PhaseCompiling, time.Time{}, nil
	building.Phases = building.Phases[:2]
	building.Phases[1].FinishedAt = time.Time{}
	steps = NewRunPage(building, t0.Add(20*time.Second), nil).Steps
	require.Equal(t, "running", steps[1].Status.Word)
	require.Equal(t, "10.0s", steps[1].Duration, "a running step lasts until now")
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	r, err := New()
	require.NoError(t, err)
	row := NewPipelineRow("app", "main", []*vocab.Run{redRun()}, t0)
	b, err := r.Dashboard(Dashboard{Pipelines: []PipelineRow{row}})
	require.NoError(t, err)
	page := string(b)
	require.Contains(t, page, `href="/runs/17"`)
	require.Contains(t, page, "phase done")
	require.Contains(t, page, "took 1m40s")
	require.Contains(t, page, "&lt;script&gt;")
	require.NotContains(t, page, "<form", "no buttons for a request that may not write")
	noInline(t, page)
}

func TestBadge(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ result, want, colour string }{
		{BadgePassed, "passed", "#4c1"}, {BadgeFailed, "failed", "#e05d44"}, {BadgeNone, "none", "#9f9f9f"}, {"aborted", "none", "#9f9f9f"},
	} {
		svg := string(Badge(`a&b<c>`, c.result))
		require.NoError(t, xml.Unmarshal([]byte(svg), new(struct{})), "well-formed: %s", svg)
		require.Contains(t, svg, `aria-label="a&amp;b&lt;c&gt;: `+c.want+`"`)
		require.Contains(t, svg, `fill="`+c.colour+`"`)
		w := regexp.MustCompile(`^<svg [^>]*width="(\d+)"`).FindStringSubmatch(svg)
		require.Len(t, w, 2)
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 340 * time.Millisecond: "340ms", 12300 * time.Millisecond: "12.3s", 252 * time.Second: "4m12s",
	} {
		require.Equal(t, want, Duration(d))
	}
}
