package pages

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"sando.dev/sando/internal/vocab"
)

// Status is a result or a gate's status as a page shows it: always as a
// word, never as a colour alone (Class picks the colour, Mark a glyph that
// screen readers skip).
type Status struct {
	Word, Class, Mark string
}

// StatusOf maps a run's result, a phase's state or a gate's status.
func StatusOf(word string) Status {
	switch word {
	case string(vocab.ResultPassed):
		return Status{Word: word, Class: "passed", Mark: "✓"}
	case string(vocab.ResultFailed):
		return Status{Word: word, Class: "failed", Mark: "✗"}
	case string(vocab.ResultAborted), string(vocab.GateBlocked):
		return Status{Word: word, Class: "muted", Mark: "–"}
	case "", "running", string(vocab.ResultBuilding):
		return Status{Word: cmpOr(word, "running"), Class: "building", Mark: "●"}
	}
	return Status{Word: word, Class: "muted", Mark: "·"}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Dashboard is GET /: every pipeline with its latest runs.
type Dashboard struct {
	Pipelines []PipelineRow
	CanWrite  bool
}

// PipelineRow is one pipeline on the dashboard.
type PipelineRow struct {
	Name, Branch string
	RebuildURL   string
	BadgeURL     string
	Runs         []RunRow // newest first
}

// RunRow is one run in a list.
type RunRow struct {
	ID       int64
	URL      string
	Status   Status
	Phase    string
	Elapsed  string
	Summary  string // the failure summary, for a failed or aborted run
	SHA      string // short
	Started  Time
	Building bool
}

// NewPipelineRow makes a pipeline's row from its newest runs.
func NewPipelineRow(name, branch string, runs []*vocab.Run, now time.Time) PipelineRow {
	p := PipelineRow{Name: name, Branch: branch, RebuildURL: "/pipelines/" + name + "/rebuild",
		BadgeURL: "/pipelines/" + name + "/badge.svg"}
	for _, r := range runs {
		p.Runs = append(p.Runs, newRunRow(r, now))
	}
	return p
}

func newRunRow(r *vocab.Run, now time.Time) RunRow {
	return RunRow{
		ID: r.ID, URL: runURL(r.ID), Status: StatusOf(string(r.Result)), Phase: string(r.Phase),
		Elapsed: Duration(r.Elapsed(now)), Summary: r.FailureSummary, SHA: short(r.SHA),
		Started: TimeOf(r.StartedAt), Building: !r.Result.Terminal(),
	}
}

func runURL(id int64) string { return "/runs/" + strconv.FormatInt(id, 10) }

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// Time is an instant for a <time> element: machine-readable and shown.
type Time struct {
	ISO, Text string
}

// TimeOf formats t; the zero time is the zero Time (shown as nothing).
func TimeOf(t time.Time) Time {
	if t.IsZero() {
		return Time{}
	}
	t = t.UTC()
	return Time{ISO: t.Format(time.RFC3339), Text: t.Format("2006-01-02 15:04:05 UTC")}
}

// Duration is d as a person reads it: 340ms, 12.3s, 4m12s.
func Duration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// RunPage is a run's page.
type RunPage struct {
	ID       int64
	URL      string
	Pipeline string
	SHA      string
	Ref      string
	Version  string
	Status   Status
	Phase    string
	Summary  string
	Started  Time
	Finished Time
	Elapsed  string
	Building bool
	// Steps are the phases, then the gates, each with its place on the
	// timeline (see Step).
	Steps []Step
	Logs  []Log
	// FailedLog is the id of the log section of the step that failed, for
	// the summary's link ("" when none failed or it has no log).
	FailedLog string
	// JSONETag is the ETag of the run's JSON view, which sando.js
	// long-polls with If-None-Match.
	JSONETag string
	// CanWrite shows the cancel and rebuild buttons.
	CanWrite   bool
	CancelURL  string
	RebuildURL string
}

// Step is one row of the timeline: a phase or a gate, when it started
// (Offset, from the run's start) and how long it took. X and W place its
// bar on a 0–100 scale of the run's whole time, so what ran in parallel
// shows as overlapping bars.
type Step struct {
	Name     string
	Kind     string // "phase" or "gate"
	Status   Status
	Worker   string
	Offset   string
	Duration string
	X, W     string // SVG attributes: percent of the run's time
	LogID    string // the id of its log section, "" without a log
}

// Log is one step's log as the page shows it: its tail, and where the
// whole of it is.
type Log struct {
	Step string // "compile", "gate-unit"
	Ref  string // the log_ref
	// Tail is the end of the log; Skipped is how many bytes come before it
	// (0: the page shows it whole). Size is the stored length.
	Tail          string
	Skipped, Size int64
	// Live: the step is running; sando.js follows the log from Size.
	Live bool
}

// ID is the log section's element id.
func (l Log) ID() string { return "log-" + l.Step }

// URL is the whole log.
func (l Log) URL() string { return "/logs/" + l.Ref }

// FollowURL streams what is written after what the page shows.
func (l Log) FollowURL() string {
	return "/logs/" + l.Ref + "?follow=1&from=" + strconv.FormatInt(l.Size, 10)
}

// NewRunPage makes a run's page from the run and its steps' logs.
func NewRunPage(r *vocab.Run, now time.Time, logs []Log) RunPage {
	p := RunPage{
		ID: r.ID, URL: runURL(r.ID), Pipeline: r.Pipeline, SHA: r.SHA, Ref: r.Ref, Version: r.Version,
		Status: StatusOf(string(r.Result)), Phase: string(r.Phase), Summary: r.FailureSummary,
		Started: TimeOf(r.StartedAt), Finished: TimeOf(r.FinishedAt), Elapsed: Duration(r.Elapsed(now)),
		Building: !r.Result.Terminal(), Logs: logs,
		CancelURL: runURL(r.ID) + "/cancel", RebuildURL: "/pipelines/" + r.Pipeline + "/rebuild",
	}
	p.Steps = timeline(r, now, logs)
	if r.Result == vocab.ResultFailed {
		p.FailedLog = failedLog(r.FailureSummary, p.Steps)
	}
	return p
}

// failedLog is the log section of the step the summary is about: the
// failed gate it names ("unit: …"), else the first failed gate, else the
// failed phase.
func failedLog(summary string, steps []Step) string {
	var gate, phase string
	for _, s := range steps {
		if s.Status.Word != string(vocab.GateFailed) || s.LogID == "" {
			continue
		}
		switch {
		case s.Kind == "gate" && strings.HasPrefix(summary, s.Name+":"):
			return s.LogID
		case s.Kind == "gate" && gate == "":
			gate = s.LogID
		case s.Kind == "phase":
			phase = s.LogID
		}
	}
	return cmpOr(gate, phase)
}

// timeline places each phase and gate on the run's time.
func timeline(r *vocab.Run, now time.Time, logs []Log) []Step {
	end := r.FinishedAt
	if end.IsZero() {
		end = now
	}
	total := end.Sub(r.StartedAt)
	hasLog := map[string]bool{}
	for _, l := range logs {
		hasLog[l.Ref] = true
	}
	place := func(s *Step, start, finish time.Time, ref string) {
		if hasLog[ref] && ref != "" {
			s.LogID = Log{Step: StepOf(ref)}.ID()
		}
		if start.IsZero() {
			return
		}
		stop := finish
		if stop.IsZero() {
			stop = end
		}
		s.Offset = "+" + Duration(start.Sub(r.StartedAt))
		s.Duration = Duration(stop.Sub(start))
		if total <= 0 {
			s.X, s.W = "0", "100"
			return
		}
		x := max(0, min(100, 100*float64(start.Sub(r.StartedAt))/float64(total)))
		w := max(0.5, min(100-x, 100*float64(stop.Sub(start))/float64(total)))
		s.X, s.W = strconv.FormatFloat(x, 'f', 2, 64), strconv.FormatFloat(w, 'f', 2, 64)
	}
	var out []Step
	for i, ph := range r.Phases {
		st := "passed"
		last := i == len(r.Phases)-1
		switch {
		case last && !r.Result.Terminal():
			st = "running"
		case last && r.Result == vocab.ResultFailed && ph.Phase != vocab.PhaseGating:
			st = "failed"
		case last && r.Result == vocab.ResultAborted:
			st = "aborted"
		case ph.Phase == vocab.PhaseGating:
			st = string(r.Result) // the gates say which
		}
		s := Step{Name: string(ph.Phase), Kind: "phase", Status: StatusOf(st), Worker: ph.Worker}
		place(&s, ph.StartedAt, ph.FinishedAt, ph.LogRef)
		out = append(out, s)
	}
	for _, g := range r.Gates {
		s := Step{Name: g.Kind, Kind: "gate", Status: StatusOf(string(g.Status))}
		place(&s, g.StartedAt, g.FinishedAt, g.LogRef)
		out = append(out, s)
	}
	return out
}

// StepOf is the step of a log_ref: "17/gate-unit.log" → "gate-unit".
func StepOf(ref string) string { return strings.TrimSuffix(path.Base(ref), ".log") }
