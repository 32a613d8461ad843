package pipeline

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// specGates is the example of the SPEC's pipeline file: smoke needs unit
// (no needs: the gate before), lint needs none, e2e needs unit and lint.
const specGates = `repo: /srv/app
build: make
gates:
  - {kind: unit, run: go test ./...}
  - {kind: smoke, run: ./smoke.sh}
  - {kind: lint, run: make lint, needs: []}
  - {kind: e2e, run: ./e2e.sh, needs: [unit, lint]}
`

func specPipeline(t *testing.T) *Pipeline {
	t.Helper()
	p, err := Parse("sando.yaml", []byte(specGates), "")
	require.NoError(t, err)
	return p
}

func kinds(gates []Gate) []string {
	var out []string
	for _, g := range gates {
		out = append(out, g.Kind)
	}
	return out
}

func set(kinds ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range kinds {
		m[k] = true
	}
	return m
}

func TestNeedsResolved(t *testing.T) {
	t.Parallel()
	p := specPipeline(t)
	var needs [][]string
	for _, g := range p.Gates {
		needs = append(needs, g.Needs)
	}
	require.Equal(t, [][]string{nil, {"unit"}, nil, {"unit", "lint"}}, needs)
}

func TestGateByKind(t *testing.T) {
	t.Parallel()
	p := specPipeline(t)
	g, ok := p.GateByKind("lint")
	require.True(t, ok)
	require.Equal(t, "make lint", g.Run)
	_, ok = p.GateByKind("nope")
	require.False(t, ok)
	_, ok = (&Pipeline{}).GateByKind("unit")
	require.False(t, ok)
}

func TestRootsAndDependents(t *testing.T) {
	t.Parallel()
	p := specPipeline(t)
	require.Equal(t, []string{"unit", "lint"}, kinds(p.Roots()))
	require.Empty(t, (&Pipeline{}).Roots())

	tests := []struct {
		kind string
		want []string
	}{
		{"unit", []string{"smoke", "e2e"}},
		{"lint", []string{"e2e"}},
		{"smoke", nil},
		{"e2e", nil},
		{"nope", nil},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, kinds(p.Dependents(tt.kind)), tt.kind)
	}
}

func TestReady(t *testing.T) {
	t.Parallel()
	p := specPipeline(t)
	tests := []struct {
		desc            string
		passed, started map[string]bool
		want            []string
	}{
		{"nothing yet: the roots", nil, nil, []string{"unit", "lint"}},
		{"roots running", nil, set("unit", "lint"), nil},
		{"unit passed, lint running", set("unit"), set("unit", "lint"), []string{"smoke"}},
		{"a passed gate counts as started", set("unit", "lint"), nil, []string{"smoke", "e2e"}},
		{"smoke running", set("unit", "lint"), set("smoke"), []string{"e2e"}},
		{"all passed", set("unit", "smoke", "lint", "e2e"), nil, nil},
		{"started but not passed blocks its dependents", nil, set("unit"), []string{"lint"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, kinds(p.Ready(tt.passed, tt.started)))
		})
	}
}

func TestUnblocked(t *testing.T) {
	t.Parallel()
	p := specPipeline(t)
	tests := []struct {
		desc   string
		kind   string
		passed map[string]bool
		want   []string
	}{
		{"unit first: e2e still waits for lint", "unit", nil, []string{"smoke"}},
		{"unit counts as passed though the map holds it", "unit", set("unit"), []string{"smoke"}},
		{"lint after unit: e2e joins", "lint", set("unit"), []string{"e2e"}},
		{"unit after lint: both, in file order", "unit", set("lint"), []string{"smoke", "e2e"}},
		{"lint first", "lint", nil, nil},
		{"a leaf", "e2e", set("unit", "smoke", "lint"), nil},
		{"not a gate", "nope", set("unit", "lint"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, kinds(p.Unblocked(tt.kind, tt.passed)))
		})
	}
}

// A file without needs runs its gates one after another, as before needs.
func TestNoNeedsIsAChain(t *testing.T) {
	t.Parallel()
	p, err := Parse("sando.yaml", []byte("repo: /srv/app\nbuild: make\ngates:\n"+
		"  - {kind: a, run: x}\n  - {kind: b, run: y}\n  - {kind: c, run: z}\n"), "")
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, kinds(p.Roots()))
	passed := map[string]bool{}
	var order []string
	for ready := p.Roots(); len(ready) > 0; {
		require.Len(t, ready, 1)
		order = append(order, ready[0].Kind)
		passed[ready[0].Kind] = true
		ready = p.Unblocked(ready[0].Kind, passed)
	}
	require.Equal(t, []string{"a", "b", "c"}, order)
}

// The same file gives the same cycle error every time, whatever the map
// iteration order inside.
func TestCycleDeterministic(t *testing.T) {
	t.Parallel()
	yaml := "repo: /srv/app\nbuild: make\ngates:\n" +
		"  - {kind: a, run: x, needs: [d, c]}\n  - {kind: b, run: x, needs: [a]}\n" +
		"  - {kind: c, run: x, needs: [b]}\n  - {kind: d, run: x, needs: [c]}\n"
	for range 50 {
		_, err := Parse("sando.yaml", []byte(yaml), "")
		require.EqualError(t, err, "sando.yaml: gates[0].needs: cycle a → d → c → b → a")
	}
}
