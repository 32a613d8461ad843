// Package runview renders runs as the JSON the API answers and webhooks
// send: one shape, one place.
package runview

import (
	"strconv"
	"time"

	"sando.dev/sando/internal/vocab"
)

// Gate is one gate of a run view.
type Gate struct {
	Kind       string  `json:"kind"`
	Status     *string `json:"status"` // null while the gate runs
	LogRef     *string `json:"log_ref"`
	StartedAt  *string `json:"started_at"`  // null until it starts; a gate blocked before it started never does
	FinishedAt *string `json:"finished_at"` // null until it ends
	Tests      *Tests  `json:"tests"`       // null unless the gate wrote its JUnit report
}

// Tests counts a gate's test cases, from the JUnit report it wrote.
type Tests struct {
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
}

// Run is the run view: GET /runs/{id}, and the body of a webhook.
type Run struct {
	RunID          int64        `json:"run_id"`
	Pipeline       string       `json:"pipeline"`
	SHA            *string      `json:"sha"`
	Ref            *string      `json:"ref"`
	Version        *string      `json:"version"`
	Phase          vocab.Phase  `json:"phase"`
	Result         vocab.Result `json:"result"`
	StartedAt      string       `json:"started_at"`
	FinishedAt     *string      `json:"finished_at"`
	FailureSummary *string      `json:"failure_summary"`
	Gates          []Gate       `json:"gates"`
	Phases         []Phase      `json:"phases"`
	// ReusedFrom names the passed run whose result a run settled by
	// reuse: tree carries; null otherwise.
	ReusedFrom *int64 `json:"reused_from"`
}

// Phase is one phase the run entered: when, for how long, on which worker
// (so an operator knows where a staged artifact is), and its step's log.
type Phase struct {
	Phase      vocab.Phase `json:"phase"`
	StartedAt  *string     `json:"started_at"`
	FinishedAt *string     `json:"finished_at"` // null while the run is in it
	Worker     *string     `json:"worker"`
	LogRef     *string     `json:"log_ref"` // null for gating: each gate has its own
}

// Phases renders the phases a run entered, in order.
func Phases(ps []vocab.PhaseRun) []Phase {
	out := make([]Phase, len(ps))
	for i, p := range ps {
		out[i] = Phase{Phase: p.Phase, StartedAt: Time(p.StartedAt), FinishedAt: Time(p.FinishedAt),
			Worker: Nullable(p.Worker), LogRef: Nullable(p.LogRef)}
	}
	return out
}

// Summary is a run in GET /runs: the run view plus its URL.
type Summary struct {
	Run
	URL string `json:"url"`
}

// Deployed is a pipeline's last passed run in GET /state and
// GET /pipelines, with its tier's gates for that version.
type Deployed struct {
	RunID      int64   `json:"run_id"`
	SHA        string  `json:"sha"`
	Version    string  `json:"version"`
	FinishedAt *string `json:"finished_at"`
	Gates      []Gate  `json:"gates"`
}

// Build is a pipeline's newest run in GET /state and GET /pipelines,
// with how long it has taken so far (or took).
type Build struct {
	RunID          int64        `json:"run_id"`
	SHA            *string      `json:"sha"`
	Version        *string      `json:"version"`
	Phase          vocab.Phase  `json:"phase"`
	Result         vocab.Result `json:"result"`
	FailureSummary *string      `json:"failure_summary"`
	ElapsedS       int64        `json:"elapsed_s"`
}

// State is the body of GET /state: what is deployed and what is
// building; either is null while the pipeline has no such run.
type State struct {
	Deployed *Deployed `json:"deployed"`
	Build    *Build    `json:"build"`
}

// Time renders t in run.TimeLayout, or null for the zero time (not yet).
func Time(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(vocab.TimeLayout)
	return &s
}

// Nullable renders s, or null for the empty string (unknown yet).
func Nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// FailureSummary renders failure_summary: null unless the run failed or
// aborted.
func FailureSummary(r *vocab.Run) *string {
	if r.Result != vocab.ResultFailed && r.Result != vocab.ResultAborted {
		return nil
	}
	return &r.FailureSummary
}

// Gates renders a run's gates, in order.
func Gates(gates []vocab.Gate) []Gate {
	out := make([]Gate, len(gates))
	for i, g := range gates {
		out[i] = Gate{
			Kind: g.Kind, Status: Nullable(string(g.Status)), LogRef: Nullable(g.LogRef),
			StartedAt: Time(g.StartedAt), FinishedAt: Time(g.FinishedAt),
		}
		if g.Tests != nil {
			out[i].Tests = &Tests{Passed: g.Tests.Passed, Failed: g.Tests.Failed, Skipped: g.Tests.Skipped}
		}
	}
	return out
}

// Of renders r as the run view.
func Of(r *vocab.Run) Run {
	started := ""
	if s := Time(r.StartedAt); s != nil {
		started = *s
	}
	return Run{
		RunID: r.ID, Pipeline: r.Pipeline, SHA: Nullable(r.SHA), Ref: Nullable(r.Ref), Version: Nullable(r.Version),
		Phase: r.Phase, Result: r.Result, StartedAt: started, FinishedAt: Time(r.FinishedAt),
		FailureSummary: FailureSummary(r), Gates: Gates(r.Gates), Phases: Phases(r.Phases),
		ReusedFrom: reusedFrom(r),
	}
}

// reusedFrom is the view's reused_from: the run whose gates a tree-reused
// run carries, or null.
// reusedFrom is the view's reused_from: the run a tree-reused run took
// its gates from, or null.
func reusedFrom(r *vocab.Run) *int64 {
	if r.ReusedFrom == 0 {
		return nil
	}
	return &r.ReusedFrom
}

// SummaryOf renders r as an entry of GET /runs: the run view and its URL.
func SummaryOf(r *vocab.Run) Summary {
	return Summary{Run: Of(r), URL: "/runs/" + strconv.FormatInt(r.ID, 10)}
}
