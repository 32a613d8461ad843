package httpapi

import (
	"time"

	"sando/run"
)

// The JSON shapes of the API, as the spec and openapi.yaml give them.

type gateView struct {
	Kind   string  `json:"kind"`
	Status *string `json:"status"` // null while the gate runs
	LogRef *string `json:"log_ref"`
}

type runView struct {
	RunID          int64      `json:"run_id"`
	SHA            *string    `json:"sha"`
	Ref            *string    `json:"ref"`
	Version        *string    `json:"version"`
	Phase          run.Phase  `json:"phase"`
	Result         run.Result `json:"result"`
	StartedAt      string     `json:"started_at"`
	FinishedAt     *string    `json:"finished_at"`
	FailureSummary *string    `json:"failure_summary"`
	Gates          []gateView `json:"gates"`
}

// runSummary is a run in GET /runs: the run view plus its URL.
type runSummary struct {
	runView
	URL string `json:"url"`
}

type deployedView struct {
	RunID      int64      `json:"run_id"`
	SHA        string     `json:"sha"`
	Version    string     `json:"version"`
	FinishedAt *string    `json:"finished_at"`
	Gates      []gateView `json:"gates"`
}

type buildView struct {
	RunID          int64      `json:"run_id"`
	SHA            *string    `json:"sha"`
	Version        *string    `json:"version"`
	Phase          run.Phase  `json:"phase"`
	Result         run.Result `json:"result"`
	FailureSummary *string    `json:"failure_summary"`
	ElapsedS       int64      `json:"elapsed_s"`
}

type stateView struct {
	Deployed *deployedView `json:"deployed"`
	Build    *buildView    `json:"build"`
}

const apiTime = "2006-01-02T15:04:05.000Z07:00"

func timeStr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(apiTime)
	return &s
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// summaryPtr: failure_summary is null unless the run failed or aborted.
func summaryPtr(r *run.Run) *string {
	if r.Result != run.ResultFailed && r.Result != run.ResultAborted {
		return nil
	}
	return &r.FailureSummary
}

func gateViews(gates []run.Gate) []gateView {
	out := make([]gateView, len(gates))
	for i, g := range gates {
		out[i] = gateView{Kind: g.Kind, Status: nullable(string(g.Status)), LogRef: nullable(g.LogRef)}
	}
	return out
}

func viewOf(r *run.Run) runView {
	started := ""
	if s := timeStr(r.StartedAt); s != nil {
		started = *s
	}
	return runView{
		RunID: r.ID, SHA: nullable(r.SHA), Ref: nullable(r.Ref), Version: nullable(r.Version),
		Phase: r.Phase, Result: r.Result, StartedAt: started, FinishedAt: timeStr(r.FinishedAt),
		FailureSummary: summaryPtr(r), Gates: gateViews(r.Gates),
	}
}

func summaryOf(r *run.Run) runSummary {
	return runSummary{runView: viewOf(r), URL: "/runs/" + itoa(r.ID)}
}
