// Package run holds Sando's domain vocabulary: a run, its phases, results
// and gates, and the one state machine that says which writes are allowed.
// It imports only the standard library so every other package can share it.
package run

import "time"

// Phase is where a run is in the chain fetch → compile → stage → gate.
type Phase string

const (
	PhaseQueued    Phase = "queued"
	PhaseFetching  Phase = "fetching"
	PhaseCompiling Phase = "compiling"
	PhaseStaging   Phase = "staging"
	PhaseGating    Phase = "gating"
	PhaseDone      Phase = "done"
)

// Result is building until exactly one terminal write settles the run.
type Result string

const (
	ResultBuilding Result = "building"
	ResultPassed   Result = "passed"
	ResultFailed   Result = "failed"
	ResultAborted  Result = "aborted"
)

// GateStatus is empty while a gate is in flight (rendered as JSON null).
type GateStatus string

const (
	GateRunning GateStatus = ""
	GatePassed  GateStatus = "passed"
	GateFailed  GateStatus = "failed"
	// GateBlocked marks a gate that never ran because an earlier one failed.
	GateBlocked GateStatus = "blocked"
)

// Summaries the API promises word for word.
const (
	SummarySuperseded = "superseded by a newer /rebuild"
	SummaryCanceled   = "canceled"
)

// Gate is the latest status of one gate kind in one run.
type Gate struct {
	Kind   string     `json:"kind"`
	Status GateStatus `json:"status"`
	LogRef string     `json:"log_ref"`
	// RunID is the run that recorded this status; set for per-tier results.
	RunID int64 `json:"-"`
	// StartedAt and FinishedAt are zero until the gate starts and ends; a
	// gate blocked before it started has neither.
	StartedAt, FinishedAt time.Time
}

// Run is one rebuild of the pipeline.
type Run struct {
	ID             int64
	SHA            string // requested sha (maybe abbreviated) until fetched, then the full 40-hex
	Ref            string // requested branch or tag, empty when a sha was asked for
	Version        string // empty until read from the worktree
	Phase          Phase
	Result         Result
	StartedAt      time.Time
	FinishedAt     time.Time // zero while building
	FailureSummary string
	Gates          []Gate // sorted by kind
	TaskID         string // the asynq task of the phase now running, for cancel
	Pipeline       string // the pipeline's name; empty for runs made before pipelines were named in runs
	// Definition is the pipeline as the run is built with it, as
	// pipeline.Marshal wrote it at the trigger; empty for runs made before
	// definitions travelled with runs.
	Definition string
	// ProgressAt is the last sign of life: a phase start or a running
	// phase's heartbeat. The janitor fails runs whose progress stopped.
	ProgressAt time.Time
}

// Elapsed is the time from start to finish, or to now while building.
// It is never negative: a clock step backwards or a missing start gives 0.
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
