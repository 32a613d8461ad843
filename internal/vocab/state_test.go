package vocab

import (
	"testing"
	"time"
)

func TestCanAdvance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		from, to Phase
		want     bool
	}{
		{PhaseQueued, PhaseFetching, true},
		{PhaseFetching, PhaseFetching, true}, // redelivered fetch
		{PhaseFetching, PhaseCompiling, true},
		{PhaseQueued, PhaseGating, true}, // phases may be skipped (no stage)
		{PhaseStaging, PhaseGating, true},
		{PhaseGating, PhaseCompiling, false}, // a late compile never moves a run back
		{PhaseCompiling, PhaseFetching, false},
		{PhaseDone, PhaseGating, false}, // finished runs never move
		{PhaseGating, PhaseDone, false}, // only terminal writes set done
		{PhaseQueued, Phase("bogus"), false},
		{Phase("bogus"), PhaseFetching, false},
	}
	for _, tt := range tests {
		if got := CanAdvance(tt.from, tt.to); got != tt.want {
			t.Errorf("CanAdvance(%q, %q) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestResultTerminal(t *testing.T) {
	t.Parallel()
	for r, want := range map[Result]bool{
		ResultBuilding: false, ResultPassed: true, ResultFailed: true, ResultAborted: true, "x": false,
	} {
		if r.Terminal() != want {
			t.Errorf("%q.Terminal() = %v", r, !want)
		}
	}
}

func TestElapsed(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 6, 13, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		desc string
		run  Run
		now  time.Time
		want time.Duration
	}{
		{"finished uses finish", Run{StartedAt: t0, FinishedAt: t0.Add(90 * time.Second)}, t0.Add(time.Hour), 90 * time.Second},
		{"building uses now", Run{StartedAt: t0}, t0.Add(312 * time.Second), 312 * time.Second},
		{"clock behind start is zero", Run{StartedAt: t0}, t0.Add(-time.Minute), 0},
		{"no start is zero", Run{}, t0, 0},
	}
	for _, tt := range tests {
		if got := tt.run.Elapsed(tt.now); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.desc, got, tt.want)
		}
	}
}
