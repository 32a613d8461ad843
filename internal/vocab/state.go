package vocab

// The run state machine, in one place. runstore's Lua scripts enforce it
// (they receive the allowed "from" phases computed here), so a late or
// redelivered write can never move a run backwards or out of a terminal
// result.
//
//	queued → fetching → compiling → staging → gating ─┐
//	   └────────┴───────────┴──────────┴─────────┴────┴→ done
//	                                   (passed | failed | aborted)
//
// Re-entering the current phase is allowed: a phase task redelivered after
// a crash sets its own phase again before redoing its work.

var phaseOrder = []Phase{PhaseQueued, PhaseFetching, PhaseCompiling, PhaseStaging, PhaseGating}

// Rank is the phase's position in the chain; done ranks last, unknown -1.
func (p Phase) Rank() int {
	for i, q := range phaseOrder {
		if p == q {
			return i
		}
	}
	if p == PhaseDone {
		return len(phaseOrder)
	}
	return -1
}

// Valid reports whether p is a phase of the vocabulary.
func (p Phase) Valid() bool { return p.Rank() >= 0 }

// AdvanceFrom lists the phases a building run may be in for a write of
// phase to to apply: every phase up to and including to. Done is never a
// target here: only a terminal write ends a run.
func AdvanceFrom(to Phase) []Phase {
	r := to.Rank()
	if r < 0 || to == PhaseDone {
		return nil
	}
	return append([]Phase(nil), phaseOrder[:r+1]...)
}

// CanAdvance reports whether a building run in phase from may move to to.
func CanAdvance(from, to Phase) bool {
	for _, p := range AdvanceFrom(to) {
		if p == from {
			return true
		}
	}
	return false
}

// Terminal reports whether r is a final result: nothing moves it again.
func (r Result) Terminal() bool {
	return r == ResultPassed || r == ResultFailed || r == ResultAborted
}

// Valid reports whether r is a result of the vocabulary.
func (r Result) Valid() bool { return r == ResultBuilding || r.Terminal() }
