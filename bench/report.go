package main

import (
	_ "embed"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// findings is the hand-written part of BENCHMARKS.md: what the profiles
// showed and what would close each gap. The program adds it under the
// measured tables.
//
//go:embed findings.md
var findings string

// value is one figure: a sample per repetition, reported as the median.
type value struct {
	Samples []float64
	Unit    string // ms, s, req/s, runs/s, chains/s, MiB, KiB, B, cmds, cmds/s
}

func (v value) Median() float64 { return median(v.Samples) }

func (v value) String() string {
	if len(v.Samples) == 0 {
		return "–"
	}
	s := fmtNum(v.Median(), v.Unit)
	if len(v.Samples) > 1 {
		lo, hi := slices.Min(v.Samples), slices.Max(v.Samples)
		if fmtNum(lo, v.Unit) != fmtNum(hi, v.Unit) {
			s += fmt.Sprintf(" (%s–%s)", fmtBare(lo, v.Unit), fmtBare(hi, v.Unit))
		}
	}
	return s
}

func fmtBare(x float64, unit string) string {
	switch {
	case math.IsNaN(x):
		return "–"
	case unit == "ms" && x >= 1000:
		return fmt.Sprintf("%.2f s", x/1000)
	case x >= 100 || x == math.Trunc(x) && x >= 10:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

func fmtNum(x float64, unit string) string {
	s := fmtBare(x, unit)
	if strings.HasSuffix(s, " s") || unit == "" {
		return s
	}
	return s + " " + unit
}

// line is one measure of Sando with its baselines from the same run.
type line struct {
	Bench   string
	Measure string
	Sando   value
	Bases   []base
}

type base struct {
	Name string
	V    value
}

type goal struct {
	Bench  string
	Text   string
	Met    bool
	Detail string
}

type report struct {
	Lines      []line
	Goals      []goal
	Notes      []string // measured facts that are not a Sando-vs-baseline figure
	Profile    string
	ProfileErr string
	Elapsed    time.Duration
}

func (r *report) add(l line) { r.Lines = append(r.Lines, l) }
func (r *report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}
func (r *report) goal(bench, text string, met bool, format string, args ...any) {
	r.Goals = append(r.Goals, goal{Bench: bench, Text: text, Met: met, Detail: fmt.Sprintf(format, args...)})
}

func ratio(a, b value) string {
	x, y := a.Median(), b.Median()
	if len(a.Samples) == 0 || len(b.Samples) == 0 || y == 0 || math.IsNaN(x) || math.IsNaN(y) {
		return "–"
	}
	r := x / y
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0f×", r)
	case r >= 0.1:
		return fmt.Sprintf("%.2f×", r)
	default:
		return fmt.Sprintf("%.3f×", r)
	}
}

func (r *report) table(md bool) string {
	var sb strings.Builder
	if md {
		sb.WriteString("| benchmark | measure | Sando | baseline (same run, same Redis) | baseline | Sando ÷ baseline |\n")
		sb.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	}
	prevBench := ""
	for _, l := range r.Lines {
		benchCell := l.Bench
		if benchCell == prevBench {
			benchCell = ""
		}
		prevBench = l.Bench
		rows := l.Bases
		if len(rows) == 0 {
			rows = []base{{}}
		}
		for i, b := range rows {
			measure, sando := l.Measure, l.Sando.String()
			if i > 0 {
				benchCell, measure, sando = "", "", ""
			}
			bv, rt := "", ""
			if b.Name != "" {
				bv, rt = b.V.String(), ratio(l.Sando, b.V)
			}
			if md {
				fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s |\n", benchCell, measure, sando, b.Name, bv, rt)
			} else {
				fmt.Fprintf(&sb, "%-22s %-44s %-22s %-44s %-22s %s\n", benchCell, measure, sando, b.Name, bv, rt)
			}
			benchCell = ""
		}
	}
	return sb.String()
}

func (r *report) goals(md bool) string {
	var sb strings.Builder
	if md {
		sb.WriteString("| benchmark | goal | met | measured |\n| --- | --- | --- | --- |\n")
	}
	for _, g := range r.Goals {
		met := "no"
		if g.Met {
			met = "yes"
		}
		if md {
			fmt.Fprintf(&sb, "| %s | %s | **%s** | %s |\n", g.Bench, g.Text, met, g.Detail)
		} else {
			fmt.Fprintf(&sb, "%-22s %-58s %-4s %s\n", g.Bench, g.Text, met, g.Detail)
		}
	}
	return sb.String()
}

func (b *bench) header() string {
	m := b.machine
	return fmt.Sprintf("%s; %d cores, %s, %.0f GiB RAM, Linux %s; %s; Redis %s (loopback, no persistence); git %s",
		m.Date.Format("2006-01-02 15:04 MST"), m.Cores, m.CPU, m.MemoryG, m.Kernel, m.Go, m.Redis, m.Git)
}

func (r *report) text(b *bench) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%s\n\n%s\n%s\n", b.header(), r.table(false), r.goals(false))
	for _, n := range r.Notes {
		fmt.Fprintf(&sb, "- %s\n", n)
	}
	if r.Profile != "" {
		fmt.Fprintf(&sb, "\n%s\n", r.Profile)
	}
	fmt.Fprintf(&sb, "\ntook %s\n", r.Elapsed.Round(time.Second))
	return sb.String()
}

func (r *report) markdown(b *bench) string {
	o := b.opt
	var sb strings.Builder
	sb.WriteString("# Benchmarks\n\n")
	sb.WriteString("Written by `make bench` (`go run ./bench`, [bench/](bench)); do not edit by hand: the\n")
	sb.WriteString("measured part is regenerated, the findings come from [bench/findings.md](bench/findings.md).\n\n")
	fmt.Fprintf(&sb, "**Machine:** %s.\n\n", b.header())
	fmt.Fprintf(&sb, "**Method:** the real `sando-api` and `sando-worker` binaries run as processes on a `redis-server` the bench starts "+
		"on a free loopback port (`SANDO_POLL_INTERVAL=%s`, `SANDO_CONCURRENCY=%d` per worker). The pipeline is a local git repository "+
		"with one commit and no-op phases: `build: \"true\"`, `stage: \"true\"`, one gate `\"true\"`, so a run is four asynq tasks "+
		"(fetch → compile → stage → gate), like the bare chain of four. Every run asks for that commit by full sha, as CI does. Sando and the floor "+
		"fetch through the same git cache (a mirror in the data dir, see gitfetch), so after each measurement's first run the commit is "+
		"there for both and a fetch is a checkout alone; a new commit would add a fetch into the mirror. Every figure is the median of its repetitions (%d; %d for the poll benchmark, which interleaves short windows), range in brackets, "+
		"next to baselines measured in the same run on the same Redis: bare asynq (in the bench process, its own queue), bare Gin (a "+
		"separate process, on the API's own net/http settings, `httpapi.NewHTTPServer`), `redis-benchmark`, and the floor: the same `git` fetch/checkout and commands run directly (Sando's own "+
		"`gitfetch` and `proc` packages) with no queue. Redis command counts are INFO commandstats deltas, which include the commands "+
		"Lua scripts run; the bench's own calls are subtracted. Throughput uses %d runs per repetition. Took %s.\n\n",
		o.PollInterval, o.Concurrency, o.Reps, o.PollReps, o.Runs, r.Elapsed.Round(time.Second))
	sb.WriteString("## Results\n\n")
	sb.WriteString(r.table(true))
	sb.WriteString("\n## Goals\n\n")
	sb.WriteString(r.goals(true))
	if len(r.Notes) > 0 {
		sb.WriteString("\n## Measured along the way\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&sb, "- %s\n", n)
		}
	}
	if r.Profile != "" || r.ProfileErr != "" {
		sb.WriteString("\n## Profile of the worst ratio (this run)\n\n")
		if r.ProfileErr != "" {
			fmt.Fprintf(&sb, "Profiling failed: %s\n", r.ProfileErr)
		}
		sb.WriteString(r.Profile)
		sb.WriteString("\n")
	}
	sb.WriteString("\n")
	sb.WriteString(strings.TrimSpace(findings))
	sb.WriteString("\n")
	return sb.String()
}

// ---------------------------------------------------------------- stats

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile is the nearest-rank percentile of sorted-or-not xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func sortSlice[T any](s []T, less func(a, b T) bool) {
	sort.Slice(s, func(i, j int) bool { return less(s[i], s[j]) })
}
