// Package vocab holds Sando's domain vocabulary: a run, its phases, results
// and gates, and the one state machine that says which writes are allowed.
// It imports only the standard library so every other package can share it.
package vocab

import (
	"sort"
	"time"
)

// TimeLayout is how Sando writes a time, in Redis and in the API alike:
// RFC 3339 in UTC with milliseconds, so runs that end within one second
// stay ordered, and a stored time is served as it was stored.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Phase is where a run is in the chain fetch → compile → stage → gate.
type Phase string

// The phases, in the order a run enters them.
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

// The results: building, then one of the three terminal ones.
const (
	ResultBuilding Result = "building"
	ResultPassed   Result = "passed"
	ResultFailed   Result = "failed"
	ResultAborted  Result = "aborted"
)

// GateStatus is empty while a gate is in flight (rendered as JSON null).
type GateStatus string

// The statuses of a gate.
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
	// Tests counts the test cases of the gate's JUnit report; nil when the
	// gate has no report: none configured, or none written.
	Tests *Tests `json:"-"`
}

// Tests counts a gate's test cases by outcome (an error counts as failed).
type Tests struct {
	Passed, Failed, Skipped int
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
	// Disk and Worker are where the latest step ran: its worker's data dir
	// id and name.
	Disk, Worker string
	// Phases are the phases the run has entered, in order.
	Phases []PhaseRun
	// ReusedFrom, for a run settled by reuse: tree, is the passed run
	// whose gates and version it carries; 0 otherwise.
	ReusedFrom int64
	// ProgressAt is the last sign of life: a phase start or a running
	// phase's heartbeat. The janitor fails runs whose progress stopped.
	ProgressAt time.Time
}

// PhaseRun is one phase a run entered: when, on which worker, and the
// log of its step (none for gating: each gate has its own).
type PhaseRun struct {
	Phase      Phase
	StartedAt  time.Time
	FinishedAt time.Time // the next phase's start, or the run's end; zero while in it
	Worker     string
	LogRef     string
}

// SortPhases puts phases in chain order and ends each where the next
// begins, the last where the run finished (zero while building).
func SortPhases(ps []PhaseRun, finished time.Time) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Phase.Rank() < ps[j].Phase.Rank() })
	for i := range ps {
		if i+1 < len(ps) {
			ps[i].FinishedAt = ps[i+1].StartedAt
		} else {
			ps[i].FinishedAt = finished
		}
	}
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
