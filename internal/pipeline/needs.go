package pipeline

import (
	"fmt"
	"slices"
	"strings"
)

// checkNeeds validates a gate's own needs list against every kind in the
// file. It returns the list as given, nil when empty.
func checkNeeds(g *rawGate, kinds map[string]bool) ([]string, string) {
	if g.Needs == nil || len(*g.Needs) == 0 {
		return nil, ""
	}
	needs := *g.Needs
	for j, n := range needs {
		switch {
		case n == g.Kind:
			return nil, fmt.Sprintf("%q is the gate itself", n)
		case !kinds[n]:
			return nil, fmt.Sprintf("%q is not a gate", n)
		case slices.Contains(needs[:j], n):
			return nil, fmt.Sprintf("%q is listed twice", n)
		}
	}
	return slices.Clone(needs), ""
}

// findCycle returns a cycle among the gates' needs as "a → b → a" (a needs
// b, which needs a) and the index of the gate it is reported at, or "" when
// there is none. The search walks gates and needs in file order, so a file
// always yields the same cycle. It is reported at the first gate on it, in
// file order, whose need on the cycle names a later gate: every cycle has
// one (an absent needs only names the gate before), and it is a needs the
// author wrote, usually the one to fix.
func findCycle(gates []Gate) (int, string) {
	index := make(map[string]int, len(gates))
	for i, g := range gates {
		index[g.Kind] = i
	}
	const (
		unseen = iota
		onPath
		finished
	)
	state := make([]int, len(gates))
	var path []int
	var cycle []int
	var visit func(i int) bool
	visit = func(i int) bool {
		state[i] = onPath
		path = append(path, i)
		for _, n := range gates[i].Needs {
			j := index[n]
			switch state[j] {
			case onPath:
				cycle = slices.Clone(path[slices.Index(path, j):])
				return true
			case unseen:
				if visit(j) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		state[i] = finished
		return false
	}
	for i := range gates {
		if state[i] == unseen && visit(i) {
			break
		}
	}
	if cycle == nil {
		return 0, ""
	}
	// cycle[k] needs cycle[k+1], and the last needs the first.
	start := -1
	for k, i := range cycle {
		if next := cycle[(k+1)%len(cycle)]; next > i && (start < 0 || i < cycle[start]) {
			start = k
		}
	}
	kinds := make([]string, 0, len(cycle)+1)
	for k := range cycle {
		kinds = append(kinds, gates[cycle[(start+k)%len(cycle)]].Kind)
	}
	kinds = append(kinds, kinds[0])
	return cycle[start], strings.Join(kinds, " → ")
}

// GateByKind returns the gate of that kind and whether there is one.
func (p *Pipeline) GateByKind(kind string) (Gate, bool) {
	for _, g := range p.Gates {
		if g.Kind == kind {
			return g, true
		}
	}
	return Gate{}, false
}

// Roots returns the gates that need none, in file order: the ones to start
// once staging is done. A validated pipeline with gates has at least one.
func (p *Pipeline) Roots() []Gate {
	return p.gatesWhere(func(g Gate) bool { return len(g.Needs) == 0 })
}

// Dependents returns the gates that name kind in their needs, in file order.
func (p *Pipeline) Dependents(kind string) []Gate {
	return p.gatesWhere(func(g Gate) bool { return slices.Contains(g.Needs, kind) })
}

// Ready returns the gates that may start now, in file order: those not
// passed and not started whose every need has passed. passed and started
// are sets of kinds (a nil map is empty); a passed gate counts as started.
// With nothing passed or started it returns Roots.
func (p *Pipeline) Ready(passed, started map[string]bool) []Gate {
	return p.gatesWhere(func(g Gate) bool {
		return !passed[g.Kind] && !started[g.Kind] && allPassed(g.Needs, passed, "")
	})
}

// Unblocked is the join a gate task asks once gate kind has passed: the
// gates that need kind and whose every other need is in passed (kind
// itself counts as passed whether or not the map holds it), in file order.
// Those gates cannot have started before kind passed, so no started set is
// needed. Two gates passing at once may both report a gate that needs
// them both; the caller enqueues it under one deterministic task id so it
// runs once.
func (p *Pipeline) Unblocked(kind string, passed map[string]bool) []Gate {
	return p.gatesWhere(func(g Gate) bool {
		return slices.Contains(g.Needs, kind) && allPassed(g.Needs, passed, kind)
	})
}

func allPassed(needs []string, passed map[string]bool, also string) bool {
	for _, n := range needs {
		if n != also && !passed[n] {
			return false
		}
	}
	return true
}

func (p *Pipeline) gatesWhere(keep func(Gate) bool) []Gate {
	var out []Gate
	for _, g := range p.Gates {
		if keep(g) {
			out = append(out, g)
		}
	}
	return out
}
