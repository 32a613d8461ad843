package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// srcOf reads a project of package failure's corpus (real failing tests).
func srcOf(t *testing.T, files map[string]string, dir string, names ...string) {
	t.Helper()
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join("..", "internal", "failure", "testdata", "src", dir, name))
		require.NoError(t, err)
		files[name] = string(b)
	}
}

// Red gates of real test runners, run through Sando: the run view names
// the failing test, its message and where it failed, and a gate's JUnit
// report gives its counts.
func TestFailureSummariesOfRealRunners(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"ok.test.js": "const test = require('node:test');\n\ntest('passes', () => {});\n",
	}
	srcOf(t, files, "gotest", "go.mod", "calc.go", "calc_test.go")
	srcOf(t, files, "unittest", "calc.py", "test_calc.py")
	srcOf(t, files, "node", "calc.test.js")
	proj := newProject(t, files)
	const junit = "mkdir -p reports && node --test --test-reporter=junit --test-reporter-destination="
	s := startStack(t, proj, stackOpts{pipelines: map[string]string{
		"gotest.yaml":   "build: \"true\"\ngates:\n  - kind: unit\n    run: go test ./...\n    timeout: 2m\n",
		"unittest.yaml": "build: \"true\"\ngates:\n  - kind: check\n    run: python3 -m unittest\n",
		"junit.yaml": "build: \"true\"\ngates:\n" +
			"  - kind: ok\n    run: " + junit + "reports/ok.xml ok.test.js\n    report: reports/ok.xml\n" +
			"  - kind: js\n    run: " + junit + "reports/js.xml calc.test.js\n    report: \"reports/j*.xml\"\n" +
			"  - kind: plain\n    run: \"true\"\n    needs: []\n",
	}})

	goRun := s.rebuild(`{"pipeline":"gotest"}`)
	pyRun := s.rebuild(`{"pipeline":"unittest"}`)
	jsRun := s.rebuild(`{"pipeline":"junit"}`)

	m := s.waitTerminal(goRun)
	require.Equal(t, "failed", m["result"], "view: %v", m)
	require.Equal(t, "unit: TestAdd: calc_test.go:8: Add(1, 2) = 3, want 4", m["failure_summary"])

	m = s.waitTerminal(pyRun)
	require.Equal(t, "failed", m["result"], "view: %v", m)
	require.Equal(t, "check: test_add: AssertionError: 3 != 4", m["failure_summary"])

	m = s.waitTerminal(jsRun)
	require.Equal(t, "failed", m["result"], "view: %v", m)
	require.Equal(t, "js: test.adds numbers: Expected values to be strictly equal:3 !== 4",
		m["failure_summary"], "the first failure of the gate's report")
	tests := map[string]any{}
	for _, g := range m["gates"].([]any) {
		g := g.(map[string]any)
		tests[g["kind"].(string)] = g["tests"]
	}
	require.Equal(t, map[string]any{
		"js":    map[string]any{"passed": 1.0, "failed": 1.0, "skipped": 0.0},
		"ok":    map[string]any{"passed": 1.0, "failed": 0.0, "skipped": 0.0},
		"plain": nil, // no report: configured
	}, tests)
}
