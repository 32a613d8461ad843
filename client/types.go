package client

import (
	"encoding/json"
	"time"
)

// Phase is where a run is: queued, fetching, compiling, staging, gating,
// then done.
type Phase string

// The phases of a run, in order.
const (
	PhaseQueued    Phase = "queued"
	PhaseFetching  Phase = "fetching"
	PhaseCompiling Phase = "compiling"
	PhaseStaging   Phase = "staging"
	PhaseGating    Phase = "gating"
	PhaseDone      Phase = "done"
)

// Result is building until the run ends passed, failed or aborted.
type Result string

// The results of a run.
const (
	ResultBuilding Result = "building"
	ResultPassed   Result = "passed"
	ResultFailed   Result = "failed"
	ResultAborted  Result = "aborted"
)

// Terminal reports whether r is final: a run with it never changes again.
func (r Result) Terminal() bool {
	return r == ResultPassed || r == ResultFailed || r == ResultAborted
}

// Gate is one gate of a run. Status is "" while the gate runs, then
// "passed", "failed" or "blocked" (an earlier gate failed).
type Gate struct {
	Kind   string `json:"kind"`
	Status string `json:"status"`
	LogRef string `json:"log_ref"` // for Client.Logs, e.g. "7/gate-unit.log"
	// StartedAt and FinishedAt are zero until the gate starts and ends
	// (a gate blocked before it started has neither).
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// Run is the view of one run (GET /runs/{id}). JSON nulls are zero values.
type Run struct {
	ID             int64     `json:"run_id"`
	Pipeline       string    `json:"pipeline"` // the pipeline the run belongs to
	SHA            string    `json:"sha"`      // as asked (maybe abbreviated) until fetched, then 40 hex
	Ref            string    `json:"ref"`
	Version        string    `json:"version"`
	Phase          Phase     `json:"phase"`
	Result         Result    `json:"result"`
	StartedAt      time.Time `json:"started_at"`
	FinishedAt     time.Time `json:"finished_at"` // zero while building
	FailureSummary string    `json:"failure_summary"`
	Gates          []Gate    `json:"gates"`         // sorted by kind; a gate appears when it starts
	URL            string    `json:"url,omitempty"` // set in List

	// ETag is the view's strong entity tag, for Wait.
	ETag string `json:"-"`
	// Raw is the JSON the server sent (unset for the runs of List).
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON accepts null and "" for the times.
func (r *Run) UnmarshalJSON(b []byte) error {
	type plain Run
	aux := struct {
		*plain
		StartedAt  *string `json:"started_at"`
		FinishedAt *string `json:"finished_at"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	var err error
	if r.StartedAt, err = parseTime(aux.StartedAt); err != nil {
		return err
	}
	r.FinishedAt, err = parseTime(aux.FinishedAt)
	return err
}

func parseTime(s *string) (time.Time, error) {
	if s == nil || *s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, *s)
}

// Elapsed is the time from start to finish, or to now while building
// (never negative, whatever the clocks say).
func (r *Run) Elapsed(now time.Time) time.Duration {
	if r.StartedAt.IsZero() {
		return 0
	}
	end := now
	if !r.FinishedAt.IsZero() {
		end = r.FinishedAt
	}
	return max(end.Sub(r.StartedAt), 0)
}

// RebuildRequest asks for a run. SHA (7 to 40 hex) or Ref (branch or tag)
// picks the commit; neither builds the pipeline's branch.
type RebuildRequest struct {
	SHA string `json:"sha,omitempty"`
	Ref string `json:"ref,omitempty"`
	// Pipeline names the pipeline to build: needed when the server has
	// several, optional with one. A name the server lacks is a 400.
	Pipeline string `json:"pipeline,omitempty"`
	// IdempotencyKey makes a repeated request (same key, same Pipeline, SHA
	// and Ref, within 24 h) answer the same run. Empty: Rebuild makes a random one,
	// so its own retries never start a second run.
	IdempotencyKey string `json:"-"`
	// NoIdempotencyKey sends no Idempotency-Key at all (IdempotencyKey is
	// then ignored): the server keeps no key for the run, so a retried
	// request may start a second one. For callers that measure the bare
	// trigger, as the bench does.
	NoIdempotencyKey bool `json:"-"`
}

// Rebuilt is the answer to a rebuild.
type Rebuilt struct {
	RunID      int64   `json:"run_id"`
	URL        string  `json:"url"` // relative to the server, e.g. "/runs/7"
	Superseded []int64 `json:"superseded"`
	// Replayed is true when the key had already started this run.
	Replayed       bool   `json:"-"`
	IdempotencyKey string `json:"-"` // the key sent
}

// RunList is a page of runs, newest first.
type RunList struct {
	Runs []Run `json:"runs"`
	// Next is the path of the next page ("" on the last one).
	Next string          `json:"next"`
	Raw  json.RawMessage `json:"-"`
}

// ListOptions pages through runs.
type ListOptions struct {
	Limit  int   // 0: the server's default (20); at most 100
	Before int64 // only runs older than this id; 0: from the newest
	// Pipeline lists only that pipeline's runs; "": every pipeline's,
	// newest first. An unknown name is a 404.
	Pipeline string
}

// StateOptions picks whose state State returns.
type StateOptions struct {
	// Pipeline is needed when the server has several pipelines (else a
	// 400); "" with one. An unknown name is a 404.
	Pipeline string
}

// Pipeline is one pipeline the server builds, with its state.
type Pipeline struct {
	Name     string    `json:"name"`
	Branch   string    `json:"branch"` // built when a rebuild names no SHA or Ref
	Tier     string    `json:"tier"`
	URL      string    `json:"url"`      // e.g. "/pipelines/app"
	Build    *Build    `json:"build"`    // its newest run; nil if none
	Deployed *Deployed `json:"deployed"` // its last passed run; nil if none
}

// State is GET /state: what is deployed and what builds.
type State struct {
	Deployed *Deployed       `json:"deployed"` // the last passed run; nil if none
	Build    *Build          `json:"build"`    // the newest run; nil if none
	Raw      json.RawMessage `json:"-"`
}

// Deployed is the last run that passed, with its tier's gates.
type Deployed struct {
	RunID      int64     `json:"run_id"`
	SHA        string    `json:"sha"`
	Version    string    `json:"version"`
	FinishedAt time.Time `json:"finished_at"`
	Gates      []Gate    `json:"gates"`
}

// Build is the newest run in short.
type Build struct {
	RunID          int64  `json:"run_id"`
	SHA            string `json:"sha"`
	Version        string `json:"version"`
	Phase          Phase  `json:"phase"`
	Result         Result `json:"result"`
	FailureSummary string `json:"failure_summary"`
	ElapsedS       int64  `json:"elapsed_s"`
}
