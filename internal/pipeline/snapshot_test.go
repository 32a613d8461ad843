package pipeline

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func fullPipeline(t *testing.T) *Pipeline {
	t.Helper()
	p, err := Parse("sando.yaml", []byte(fullYAML), "")
	require.NoError(t, err)
	return p
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	for _, yaml := range []string{fullYAML, "repo: ./app\nbuild: make\n", specGates} {
		p, err := Parse("sando.yaml", []byte(yaml), "/etc/sando")
		require.NoError(t, err)
		b, err := Marshal(p)
		require.NoError(t, err)
		got, err := Unmarshal(b)
		require.NoError(t, err)
		require.Equal(t, p, got)
		require.Equal(t, p.Hash(), got.Hash())
	}
}

// The format is what other processes read: pin it.
func TestSnapshotFormat(t *testing.T) {
	t.Parallel()
	b, err := Marshal(fullPipeline(t))
	require.NoError(t, err)
	require.JSONEq(t, `{
		"version": 1, "name": "app", "repo": "https://example.com/app.git", "branch": "release/1.2",
		"version_file": "Cargo.toml", "build": "cargo build --release",
		"stage": "cp target/release/app \"$SANDO_STAGE_DIR/\"",
		"gates": [
			{"kind": "unit", "run": "cargo test", "timeout": "1m30s", "needs": [], "report": "target/junit.xml"},
			{"kind": "smoke", "run": "./scripts/smoke.sh", "timeout": "10m0s", "needs": ["unit"], "report": ""},
			{"kind": "lint", "run": "make lint", "timeout": "10m0s", "needs": [], "report": ""},
			{"kind": "e2e", "run": "./scripts/e2e.sh", "timeout": "1.5s", "needs": ["unit", "lint"], "report": "reports/*.xml"}
		],
		"tier": "vm_1",
		"timeouts": {"fetch": "1m0s", "compile": "1h0m0s", "stage": "5m0s"},
		"env": {"CARGO_TERM_COLOR": "never", "_X1": "1"},
		"webhooks": ["https://ci.example.com/a", "https://ci.example.com/b"],
		"reuse": "tree"
	}`, string(b))
	require.True(t, strings.HasPrefix(string(b), `{"version":1,`))

	empty, err := Marshal(&Pipeline{Name: "x"})
	require.NoError(t, err)
	require.Contains(t, string(empty), `"gates":[]`)
	require.Contains(t, string(empty), `"env":{}`)
	require.Contains(t, string(empty), `"webhooks":[]`)
}

func TestHashStable(t *testing.T) {
	t.Parallel()
	a, b := fullPipeline(t), fullPipeline(t)
	require.Equal(t, a.Hash(), b.Hash())
	require.Len(t, a.Hash(), 64)

	// Env map order never matters: build the same map in two orders.
	a.Env = map[string]string{}
	b.Env = map[string]string{}
	for _, k := range []string{"A", "B", "C", "D", "E", "F", "G", "H"} {
		a.Env[k] = k
	}
	for _, k := range []string{"H", "G", "F", "E", "D", "C", "B", "A"} {
		b.Env[k] = k
	}
	for range 20 {
		require.Equal(t, a.Hash(), b.Hash())
	}

	// nil and empty are one definition.
	c, d := &Pipeline{Name: "x"}, &Pipeline{Name: "x", Env: map[string]string{}, Webhooks: []string{},
		Gates: []Gate{}}
	require.Equal(t, c.Hash(), d.Hash())
}

func TestHashChangesWithEveryField(t *testing.T) {
	t.Parallel()
	base := fullPipeline(t).Hash()
	tests := []struct {
		field  string
		change func(p *Pipeline)
	}{
		{"name", func(p *Pipeline) { p.Name = "app2" }},
		{"repo", func(p *Pipeline) { p.Repo = "https://example.com/other.git" }},
		{"branch", func(p *Pipeline) { p.Branch = "main" }},
		{"version_file", func(p *Pipeline) { p.VersionFile = "VERSION" }},
		{"build", func(p *Pipeline) { p.Build = "cargo build" }},
		{"stage", func(p *Pipeline) { p.Stage = "" }},
		{"tier", func(p *Pipeline) { p.Tier = "host" }},
		{"timeouts.fetch", func(p *Pipeline) { p.Timeouts.Fetch = 2 * time.Minute }},
		{"timeouts.compile", func(p *Pipeline) { p.Timeouts.Compile = 2 * time.Hour }},
		{"timeouts.stage", func(p *Pipeline) { p.Timeouts.Stage = time.Minute }},
		{"env value", func(p *Pipeline) { p.Env["_X1"] = "2" }},
		{"env key", func(p *Pipeline) { p.Env["D"] = "4" }},
		{"env gone", func(p *Pipeline) { p.Env = nil }},
		{"webhooks", func(p *Pipeline) { p.Webhooks = p.Webhooks[:1] }},
		{"webhook order", func(p *Pipeline) { p.Webhooks[0], p.Webhooks[1] = p.Webhooks[1], p.Webhooks[0] }},
		{"reuse", func(p *Pipeline) { p.Reuse = "" }},
		{"gate kind", func(p *Pipeline) { p.Gates[1].Kind = "smoke2" }},
		{"gate run", func(p *Pipeline) { p.Gates[0].Run = "cargo test --all" }},
		{"gate timeout", func(p *Pipeline) { p.Gates[0].Timeout = time.Minute }},
		{"gate needs", func(p *Pipeline) { p.Gates[3].Needs = []string{"unit"} }},
		{"gate needs order", func(p *Pipeline) { p.Gates[3].Needs = []string{"lint", "unit"} }},
		{"gate report", func(p *Pipeline) { p.Gates[0].Report = "" }},
		{"gate order", func(p *Pipeline) { p.Gates[0], p.Gates[1] = p.Gates[1], p.Gates[0] }},
		{"gate gone", func(p *Pipeline) { p.Gates = p.Gates[:3] }},
		{"a string moved between fields", func(p *Pipeline) { p.Build, p.Stage = p.Stage, p.Build }},
	}
	seen := map[string]string{base: "unchanged"}
	for _, tt := range tests {
		p := fullPipeline(t)
		tt.change(p)
		h := p.Hash()
		other, dup := seen[h]
		require.False(t, dup, "%s hashes like %s", tt.field, other)
		seen[h] = tt.field
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	t.Parallel()
	good, err := Marshal(fullPipeline(t))
	require.NoError(t, err)
	edit := func(f func(m map[string]any)) string {
		var m map[string]any
		require.NoError(t, json.Unmarshal(good, &m))
		f(m)
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return string(b)
	}
	gate := func(m map[string]any, i int) map[string]any { return m["gates"].([]any)[i].(map[string]any) }
	tests := []struct {
		desc, data, want string
	}{
		{"not JSON", "repo: x", "pipeline snapshot: not a pipeline snapshot: invalid character 'r' looking for beginning of value"},
		{"not an object", "[]", "pipeline snapshot: not a pipeline snapshot: json: cannot unmarshal array into Go value of type pipeline.snapshot"},
		{"trailing data", string(good) + "{}", "pipeline snapshot: not a pipeline snapshot: data after the object"},
		{"no version", edit(func(m map[string]any) { delete(m, "version") }),
			"pipeline snapshot: version: 0 is not a snapshot version this build reads (1)"},
		{"future version", edit(func(m map[string]any) { m["version"] = 2 }),
			"pipeline snapshot: version: 2 is not a snapshot version this build reads (1)"},
		{"unknown field", edit(func(m map[string]any) { m["secrets"] = "x" }),
			`pipeline snapshot: not a pipeline snapshot: json: unknown field "secrets"`},
		{"no name", edit(func(m map[string]any) { delete(m, "name") }), "pipeline snapshot: name: required"},
		{"no branch", edit(func(m map[string]any) { m["branch"] = "" }), "pipeline snapshot: branch: required"},
		{"no tier", edit(func(m map[string]any) { delete(m, "tier") }), "pipeline snapshot: tier: required"},
		{"no timeout", edit(func(m map[string]any) { delete(gate(m, 0), "timeout") }),
			`pipeline snapshot: gates[0].timeout: "" is not a duration (e.g. 10m, 90s)`},
		{"no stage timeout", edit(func(m map[string]any) { delete(m["timeouts"].(map[string]any), "stage") }),
			`pipeline snapshot: timeouts.stage: "" is not a duration (e.g. 10m, 90s)`},
		{"needs unknown", edit(func(m map[string]any) { gate(m, 3)["needs"] = []string{"nope"} }),
			`pipeline snapshot: gates[3].needs: "nope" is not a gate`},
		{"needs cycle", edit(func(m map[string]any) { gate(m, 0)["needs"] = []string{"e2e"} }),
			"pipeline snapshot: gates[0].needs: cycle unit → e2e → unit"},
		{"bad build", edit(func(m map[string]any) { m["build"] = " " }), "pipeline snapshot: build: required"},
		{"bad env", edit(func(m map[string]any) { m["env"] = map[string]string{"SANDO_TOKEN": "x"} }),
			"pipeline snapshot: env.SANDO_TOKEN: names starting with SANDO_ are reserved"},
		{"bad reuse", edit(func(m map[string]any) { m["reuse"] = "always" }),
			`pipeline snapshot: reuse: "always" is not a reuse mode (the one mode is "tree")`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			p, err := Unmarshal([]byte(tt.data))
			require.Nil(t, p)
			requireError(t, err, "pipeline snapshot", tt.want)
		})
	}
}

// A gate that lists no needs in a snapshot needs none: it is never read as
// "the gate before", which only a pipeline file means.
func TestUnmarshalNeedsExplicit(t *testing.T) {
	t.Parallel()
	p, err := Unmarshal([]byte(`{"version":1,"name":"a","repo":"/r","branch":"main","version_file":"",
		"build":"make","stage":"","tier":"host","timeouts":{"fetch":"1m0s","compile":"1m0s","stage":"1m0s"},
		"env":null,"webhooks":null,"reuse":"","gates":[
		{"kind":"a","run":"x","timeout":"1m0s","needs":[],"report":""},
		{"kind":"b","run":"y","timeout":"1m0s","report":""}]}`))
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, kinds(p.Roots()))
}
