package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fullYAML sets every field of a pipeline file.
const fullYAML = `name: app
repo: https://example.com/app.git
branch: release/1.2
version_file: Cargo.toml
build: cargo build --release
stage: cp target/release/app "$SANDO_STAGE_DIR/"
gates:
  - kind: unit
    run: cargo test
    timeout: 90s
    report: target/junit.xml
  - kind: smoke
    run: ./scripts/smoke.sh
  - kind: lint
    run: make lint
    needs: []
  - kind: e2e
    run: ./scripts/e2e.sh
    needs: [unit, lint]
    timeout: 1500ms
    report: "reports/*.xml"
tier: vm_1
timeouts: {fetch: 1m, compile: 1h}
env:
  CARGO_TERM_COLOR: never
  _X1: "1"
webhooks: [https://ci.example.com/a, https://ci.example.com/b]
reuse: tree
`

var defaultTimeouts = Timeouts{Fetch: 2 * time.Minute, Compile: 30 * time.Minute, Stage: 5 * time.Minute}

func TestParseGood(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want Pipeline
	}{
		{
			name: "minimal gets defaults",
			yaml: "repo: https://example.com/app.git\nbuild: make\n",
			want: Pipeline{Name: "default", Repo: "https://example.com/app.git", Branch: "main",
				Build: "make", Tier: "host", Timeouts: defaultTimeouts},
		},
		{
			name: "full",
			yaml: fullYAML,
			want: Pipeline{Name: "app", Repo: "https://example.com/app.git", Branch: "release/1.2",
				VersionFile: "Cargo.toml", Build: "cargo build --release",
				Stage: `cp target/release/app "$SANDO_STAGE_DIR/"`, Tier: "vm_1",
				Gates: []Gate{
					{Kind: "unit", Run: "cargo test", Timeout: 90 * time.Second, Report: "target/junit.xml"},
					{Kind: "smoke", Run: "./scripts/smoke.sh", Timeout: 10 * time.Minute, Needs: []string{"unit"}},
					{Kind: "lint", Run: "make lint", Timeout: 10 * time.Minute},
					{Kind: "e2e", Run: "./scripts/e2e.sh", Timeout: 1500 * time.Millisecond, Needs: []string{"unit", "lint"},
						Report: "reports/*.xml"},
				},
				Timeouts: Timeouts{Fetch: time.Minute, Compile: time.Hour, Stage: 5 * time.Minute},
				Env:      map[string]string{"CARGO_TERM_COLOR": "never", "_X1": "1"},
				Webhooks: []string{"https://ci.example.com/a", "https://ci.example.com/b"}, Reuse: "tree"},
		},
		{
			name: "scp-like repo kept",
			yaml: "repo: git@github.com:org/app.git\nbuild: make\n",
			want: Pipeline{Name: "default", Repo: "git@github.com:org/app.git", Branch: "main",
				Build: "make", Tier: "host", Timeouts: defaultTimeouts},
		},
		{
			name: "relative local repo resolved against base dir",
			yaml: "repo: ../src/app\nbuild: make\ngates: []\nenv: {}\n",
			want: Pipeline{Name: "default", Repo: "/etc/src/app", Branch: "main",
				Build: "make", Tier: "host", Timeouts: defaultTimeouts},
		},
		{
			name: "empty lists are absent",
			yaml: "repo: /srv/app\nbuild: make\nwebhooks: []\ngates:\n  - {kind: a, run: x, needs: []}\n",
			want: Pipeline{Name: "default", Repo: "/srv/app", Branch: "main",
				Build: "make", Tier: "host", Timeouts: defaultTimeouts,
				Gates: []Gate{{Kind: "a", Run: "x", Timeout: 10 * time.Minute}}},
		},
		{
			name: "needs null is absent, a forward need is fine",
			yaml: "repo: /srv/app\nbuild: make\ngates:\n  - {kind: a, run: x, needs: null}\n" +
				"  - {kind: b, run: y, needs: [c]}\n  - {kind: c, run: z, needs: []}\n  - {kind: d, run: w, needs: ~}\n",
			want: Pipeline{Name: "default", Repo: "/srv/app", Branch: "main",
				Build: "make", Tier: "host", Timeouts: defaultTimeouts,
				Gates: []Gate{
					{Kind: "a", Run: "x", Timeout: 10 * time.Minute},
					{Kind: "b", Run: "y", Timeout: 10 * time.Minute, Needs: []string{"c"}},
					{Kind: "c", Run: "z", Timeout: 10 * time.Minute},
					{Kind: "d", Run: "w", Timeout: 10 * time.Minute, Needs: []string{"c"}},
				}},
		},
		{
			name: "leading comment and document marker",
			yaml: "# header\n---\nrepo: /srv/app\nbuild: make\n---\n",
			want: Pipeline{Name: "default", Repo: "/srv/app", Branch: "main",
				Build: "make", Tier: "host", Timeouts: defaultTimeouts},
		},
		{
			name: "absolute local repo cleaned",
			yaml: "repo: /srv//app/\nbuild: make\n",
			want: Pipeline{Name: "default", Repo: "/srv/app", Branch: "main",
				Build: "make", Tier: "host", Timeouts: defaultTimeouts},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse("sando.yaml", []byte(tt.yaml), "/etc/sando")
			require.NoError(t, err)
			require.Equal(t, tt.want, *p)
		})
	}
}

func TestParseBad(t *testing.T) {
	t.Parallel()
	const head = "repo: https://example.com/app.git\nbuild: make\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"missing build", "repo: x\n", "sando.yaml: build: required"},
		{"blank build", "repo: x\nbuild: '  '\n", "sando.yaml: build: required"},
		{"missing repo", "build: make\n", "sando.yaml: repo: required"},
		{"empty file", "", "sando.yaml: repo: required"},
		{"bad duration", head + "gates:\n  - {kind: a, run: x}\n  - kind: b\n    run: y\n    timeout: ten minutes\n",
			`sando.yaml: gates[1].timeout: "ten minutes" is not a duration (e.g. 10m, 90s)`},
		{"integer duration", head + "timeouts:\n  compile: 30\n",
			"sando.yaml: timeouts.compile: 30 has no unit; add one (e.g. 10m, 90s)"},
		{"quoted integer duration", head + "gates:\n  - {kind: a, run: x, timeout: '5'}\n",
			`sando.yaml: gates[0].timeout: "5" has no unit; add one (e.g. 10m, 90s)`},
		{"zero duration", head + "timeouts: {stage: 0s}\n", `sando.yaml: timeouts.stage: "0s" must be greater than 0`},
		{"unknown key", "repo: x\nname: a\nbulid: make\n", `sando.yaml: unknown field "bulid" (line 3)`},
		{"unknown gate key", head + "gates:\n  - kind: a\n    rnu: x\n", `sando.yaml: gates[0]: unknown field "rnu" (line 5)`},
		{"duplicate gate kind", head + "gates:\n  - {kind: unit, run: a}\n  - {kind: smoke, run: b}\n  - {kind: unit, run: c}\n",
			`sando.yaml: gates[2].kind: duplicate kind "unit" (also gates[0])`},
		{"bad kind chars", head + "gates:\n  - {kind: Unit Tests, run: a}\n",
			`sando.yaml: gates[0].kind: "Unit Tests" must match [a-z0-9][a-z0-9_-]{0,31}`},
		{"missing kind", head + "gates:\n  - {run: a}\n", "sando.yaml: gates[0].kind: required"},
		{"missing run", head + "gates:\n  - {kind: a}\n", "sando.yaml: gates[0].run: required"},
		{"bad branch ref", head + "branch: a..b\n", `sando.yaml: branch: ref "a..b": contains ".."`},
		{"branch option", head + "branch: --upload-pack=x\n", `sando.yaml: branch: ref "--upload-pack=x": starts with "-"`},
		{"env SANDO_ key", head + "env:\n  SANDO_STAGE_DIR: /tmp\n",
			"sando.yaml: env.SANDO_STAGE_DIR: names starting with SANDO_ are reserved"},
		{"webhook not a URL", head + "webhooks:\n  - https://ci.example.com/hook\n  - ci.example.com/hook\n",
			`sando.yaml: webhooks[1]: "ci.example.com/hook" is not an http:// or https:// URL`},
		{"env bad key", head + "env:\n  A-B: x\n", `sando.yaml: env["A-B"]: name must match [A-Za-z_][A-Za-z0-9_]*`},
		{"empty gates entry", head + "gates:\n  - {kind: a, run: x}\n  -\n", "sando.yaml: gates[1]: empty entry"},
		{"repo starting with dash", "repo: --upload-pack=evil\nbuild: make\n",
			`sando.yaml: repo: "--upload-pack=evil" must not start with "-"`},
		{"repo with newline", "repo: \"a\\nb\"\nbuild: make\n", `sando.yaml: repo: "a\nb" contains a control character`},
		{"repo with NUL", "repo: \"a\\0b\"\nbuild: make\n", `sando.yaml: repo: "a\x00b" contains a control character`},
		{"bad name", "name: My App\n" + head, `sando.yaml: name: "My App" must match [a-z0-9][a-z0-9_.-]{0,62}`},
		{"bad tier", head + "tier: .vm\n", `sando.yaml: tier: ".vm" must match [a-z0-9][a-z0-9_-]{0,31}`},
		{"version_file escapes", head + "version_file: ../VERSION\n",
			`sando.yaml: version_file: "../VERSION" must be a relative path inside the repository`},
		{"wrong type", head + "stage: [a, b]\n", "sando.yaml: stage: sequence was used where string is expected (line 3)"},
		{"gates not a list", head + "gates: {kind: a}\n", "sando.yaml: gates: mapping was used where sequence is expected (line 3)"},
		{"duplicate key", head + "build: again\n", `sando.yaml: mapping key "build" already defined at [2:1] (line 3)`},
		{"tag where a list is expected", head + "gates: !x 0\n", "sando.yaml: the YAML decoder crashed on it " +
			"(runtime error: invalid memory address or nil pointer dereference); a tag such as !x where a list is expected is a known cause"},
		{"two documents", head + "---\n" + head, "sando.yaml: contains more than one YAML document (line 3)"},
		{"first problem in field order wins", "repo: -x\n", `sando.yaml: repo: "-x" must not start with "-"`},
		{"reuse unknown", head + "reuse: commit\n", `sando.yaml: reuse: "commit" is not a reuse mode (the one mode is "tree")`},
		{"reuse wrong type", head + "reuse: [tree]\n", "sando.yaml: reuse: sequence was used where string is expected (line 3)"},
		{"report escapes", head + "gates:\n  - {kind: a, run: x, report: ../junit.xml}\n",
			`sando.yaml: gates[0].report: "../junit.xml" must be a relative path inside the repository`},
		{"report absolute", head + "gates:\n  - {kind: a, run: x, report: /tmp/junit.xml}\n",
			`sando.yaml: gates[0].report: "/tmp/junit.xml" must be a relative path inside the repository`},
		{"report bad glob", head + "gates:\n  - {kind: a, run: x, report: \"out/[a.xml\"}\n",
			`sando.yaml: gates[0].report: "out/[a.xml" is not a valid glob (syntax error in pattern)`},
		{"report control char", head + "gates:\n  - {kind: a, run: x, report: \"a\\tb.xml\"}\n",
			`sando.yaml: gates[0].report: "a\tb.xml" contains a control character`},
		{"needs not a list", head + "gates:\n  - {kind: a, run: x}\n  - {kind: b, run: y, needs: a}\n",
			"sando.yaml: gates[1].needs: string was used where sequence is expected (line 5)"},
		{"needs unknown", head + "gates:\n  - {kind: a, run: x}\n  - {kind: b, run: y}\n  - {kind: c, run: z, needs: [a, nope]}\n",
			`sando.yaml: gates[2].needs: "nope" is not a gate`},
		{"needs null entry", head + "gates:\n  - {kind: a, run: x}\n  - {kind: b, run: y, needs: [a, null]}\n",
			`sando.yaml: gates[1].needs: "" is not a gate`},
		{"needs itself", head + "gates:\n  - {kind: lint, run: x}\n  - {kind: unit, run: y, needs: [lint, unit]}\n",
			`sando.yaml: gates[1].needs: "unit" is the gate itself`},
		{"needs twice", head + "gates:\n  - {kind: a, run: x}\n  - {kind: b, run: y, needs: [a, a]}\n",
			`sando.yaml: gates[1].needs: "a" is listed twice`},
		{"needs checked in gate order", head + "gates:\n  - {kind: a, run: x, needs: [nope]}\n  - {kind: b}\n",
			`sando.yaml: gates[0].needs: "nope" is not a gate`},
		{"gate problem before a later gate's cycle", head + "gates:\n  - {kind: a, run: x, needs: [b]}\n  - {kind: b, run: y}\n  - {kind: c}\n",
			"sando.yaml: gates[2].run: required"},
		{"cycle of two", head + "gates:\n  - {kind: unit, run: x, needs: [e2e]}\n  - {kind: e2e, run: y, needs: [unit]}\n",
			"sando.yaml: gates[0].needs: cycle unit → e2e → unit"},
		{"cycle through an absent needs", head + "gates:\n  - {kind: a, run: x, needs: [c]}\n  - {kind: b, run: y}\n  - {kind: c, run: z}\n",
			"sando.yaml: gates[0].needs: cycle a → c → b → a"},
		{"cycle reported at its forward need", head + "gates:\n  - {kind: a, run: x, needs: []}\n  - {kind: b, run: y, needs: [d]}\n" +
			"  - {kind: c, run: z, needs: [b]}\n  - {kind: d, run: w, needs: [a, c]}\n",
			"sando.yaml: gates[1].needs: cycle b → d → c → b"},
		{"first cycle in file order", head + "gates:\n  - {kind: a, run: x, needs: []}\n  - {kind: b, run: y, needs: [c]}\n" +
			"  - {kind: c, run: z, needs: [b]}\n  - {kind: d, run: w, needs: [e]}\n  - {kind: e, run: v, needs: [d]}\n",
			"sando.yaml: gates[1].needs: cycle b → c → b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("sando.yaml", []byte(tt.yaml), "/etc/sando")
			requireError(t, err, "sando.yaml", tt.want)
		})
	}
}

// requireError checks err's text and that it is an *Error about file.
func requireError(t *testing.T, err error, file, want string) {
	t.Helper()
	require.EqualError(t, err, want)
	var pe *Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, file, pe.File)
}

func TestErrorFields(t *testing.T) {
	t.Parallel()
	_, err := Parse("p.yaml", []byte("repo: x\nbuild: b\ntimeouts: {fetch: 5}\n"), "")
	var pe *Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, Error{File: "p.yaml", Field: "timeouts.fetch",
		Problem: "5 has no unit; add one (e.g. 10m, 90s)"}, *pe)

	_, err = Parse("p.yaml", []byte("repo: x\nbuild: [b]\n"), "")
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "build", pe.Field)
	require.Equal(t, 2, pe.Line)
	require.Error(t, errors.Unwrap(pe), "decoder error stays reachable")
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sando.yaml")
	require.NoError(t, os.WriteFile(path, []byte("repo: ./app\nbuild: make\n"), 0o600))

	p, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "app"), p.Repo)

	missing := filepath.Join(dir, "nope.yaml")
	_, err = Load(missing)
	require.EqualError(t, err, missing+": no such file or directory")
	require.ErrorIs(t, err, os.ErrNotExist)

	big := filepath.Join(dir, "big.yaml")
	require.NoError(t, os.WriteFile(big, make([]byte, maxFileSize+1), 0o600))
	_, err = Load(big)
	require.EqualError(t, err, big+": larger than 1 MiB")
}

func TestGate(t *testing.T) {
	t.Parallel()
	p := &Pipeline{Gates: []Gate{{Kind: "unit"}, {Kind: "smoke"}}}
	g, ok := p.Gate(1)
	require.True(t, ok)
	require.Equal(t, "smoke", g.Kind)
	for _, i := range []int{-1, 2} {
		_, ok = p.Gate(i)
		require.False(t, ok)
	}
}
