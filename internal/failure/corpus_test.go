package failure

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The gate corpus: real output of real test runners and tools, each kept in
// testdata/corpus/<name>.txt with the headline a person needs from it.
//
// Entries with a command were captured by running it (go test -run
// TestGateCorpus -capture) on the project in testdata/src/<dir>; entries
// marked live run it again in every test where the tool is on the machine,
// so the corpus cannot drift from what today's tools print. Entries without
// a command come from the tools' own repositories (testdata/README.md names
// each source and version). Nobody writes an output by hand.
var capture = flag.Bool("capture", false, "re-capture testdata/corpus from the tools on this machine")

type corpusCase struct {
	name string // testdata/corpus/<name>.txt
	dir  string // testdata/src/<dir>, copied to a temporary directory
	tool string // the program that must be on PATH to capture or run live
	cmd  string // sh -c, in the copy; empty: a fetched fixture
	live bool   // run again in every test where tool is on PATH
	want string // the headline Gate gives, without the "check: " prefix
}

// js names the directory with node_modules holding jest, vitest and mocha
// when capturing; they are not installed where the tests run.
const jsBin = `"$HL_JS/node_modules/.bin/`

var corpus = []corpusCase{
	{name: "go_test", dir: "gotest", tool: "go", cmd: "go test ./...", live: true,
		want: "TestAdd: calc_test.go:8: Add(1, 2) = 3, want 4"},
	{name: "go_test_v", dir: "gotest", tool: "go", cmd: "go test -v ./...", live: true,
		want: "TestAdd: calc_test.go:8: Add(1, 2) = 3, want 4"},
	{name: "go_test_json", dir: "gotest", tool: "go", cmd: "go test -json ./...", live: true,
		want: "TestAdd: calc_test.go:8: Add(1, 2) = 3, want 4"},
	{name: "go_subtest", dir: "gosub", tool: "go", cmd: "go test ./...", live: true,
		want: `TestUpper/b: sub_test.go:12: ToUpper("b") = "B", want "X"`},
	{name: "go_subtest_v", dir: "gosub", tool: "go", cmd: "go test -v ./...", live: true,
		want: `TestUpper/b: sub_test.go:12: ToUpper("b") = "B", want "X"`},
	{name: "go_panic", dir: "gopanic", tool: "go", cmd: "go test ./...", live: true,
		want: "TestNil: p_test.go:7: panic: assignment to entry in nil map [recovered, repanicked]"},
	{name: "go_panic_json", dir: "gopanic", tool: "go", cmd: "go test -json ./...", live: true,
		want: "TestNil: p_test.go:7: panic: assignment to entry in nil map [recovered, repanicked]"},
	{name: "go_timeout", dir: "gotimeout", tool: "go", cmd: "go test -timeout 1s ./...", live: true,
		want: "TestSlow: slow_test.go:9: panic: test timed out after 1s"},
	{name: "go_build_failed", dir: "gobuild", tool: "go", cmd: "go test ./...", live: true,
		want: "./two_test.go:6:14: undefined: missing"},
	{name: "go_build_failed_json", dir: "gobuild", tool: "go", cmd: "go test -json ./...", live: true,
		want: "./two_test.go:6:14: undefined: missing"},
	{name: "cargo_assert_eq", dir: "cargo_eq", tool: "cargo", cmd: "cargo test --color never", live: true,
		want: "tests::adds panicked at src/lib.rs:9:9: assertion `left == right` failed: one plus two; left: 3; right: 4"},
	{name: "cargo_panic", dir: "cargo_panic", tool: "cargo", cmd: "cargo test --color never", live: true,
		want: "tests::adds panicked at src/lib.rs:9:9: one plus two"},
	{name: "unittest", dir: "unittest", tool: "python3", cmd: "python3 -m unittest", live: true,
		want: "test_add: AssertionError: 3 != 4"},
	{name: "unittest_v", dir: "unittest", tool: "python3", cmd: "python3 -m unittest -v", live: true,
		want: "test_add: AssertionError: 3 != 4"},
	{name: "unittest_error", dir: "unittest_error", tool: "python3", cmd: "python3 -m unittest", live: true,
		want: "test_port: KeyError: 'port'"},
	{name: "pytest", dir: "pytest", tool: "/usr/bin/python3", cmd: "/usr/bin/python3 -m pytest -p no:cacheprovider tests",
		want: "FAILED tests/test_calc.py::test_add - assert 3 == 4"},
	{name: "pytest_q", dir: "pytest", tool: "/usr/bin/python3", cmd: "/usr/bin/python3 -m pytest -p no:cacheprovider -q -rN tests",
		want: "test_add: tests/test_calc.py:8: assert 3 == 4"},
	{name: "node_test", dir: "node", tool: "node", cmd: "node --test", live: true,
		want: "not ok 2 - adds numbers: calc.test.js:7:1: Expected values to be strictly equal: 3 !== 4"},
	{name: "node_test_spec", dir: "node", tool: "node", cmd: "node --test --test-reporter=spec", live: true,
		want: "✖ adds numbers: calc.test.js:7:1: AssertionError [ERR_ASSERTION]: Expected values to be strictly equal: 3 !== 4"},
	{name: "jest", dir: "jest", tool: "node", cmd: jsBin + `jest" --ci`,
		want: "calc › adds numbers: calc.test.js:5:50: expect(received).toBe(expected) // Object.is equality; Expected: 4; Received: 3"},
	{name: "vitest", dir: "vitest", tool: "node", cmd: jsBin + `vitest" run`,
		want: "calc.test.js > calc > adds numbers: calc.test.js:7:50: AssertionError: expected 3 to be 4 // Object.is equality"},
	{name: "mocha", dir: "mocha", tool: "node", cmd: jsBin + `mocha"`,
		want: "calc adds numbers: test/calc.test.js:7:37: AssertionError [ERR_ASSERTION]: Expected values to be strictly equal: 3 !== 4"},
	{name: "make_selftest", dir: "make_selftest", tool: "make", cmd: "make check", live: true,
		want: "vector 2: FAIL: digest mismatch (got 1a47e90b, want 12345678)"},
	{name: "make_cc", dir: "make_cc", tool: "make", cmd: "make", live: true,
		want: "main.c:1:25: error: ‘undeclared’ undeclared (first use in this function)"},
	{name: "shell_smoke", dir: "shell", tool: "sh", cmd: "./smoke.sh", live: true,
		want: "smoke: GET /api/users returned 503"},
	{name: "java_assert", dir: "java", tool: "javac", cmd: "javac Main.java && java -ea Main", live: true,
		want: `Main.java:5: Exception in thread "main" java.lang.AssertionError: add(1, 2) = 3, want 4`},
	{name: "junit4", dir: "junit4", tool: "javac",
		cmd:  "javac -cp /usr/share/java/junit4.jar CalcTest.java && java -cp /usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar:. org.junit.runner.JUnitCore CalcTest",
		want: "addsNumbers(CalcTest): CalcTest.java:12: java.lang.AssertionError: expected:<4> but was:<3>"},
	{name: "surefire", dir: "surefire", tool: "mvn", cmd: "mvn -o -B -Dmaven.repo.local=/usr/share/maven-repo test",
		want: "CalcTest.addsNumbers:14 expected:<4> but was:<3>"},
	// From nextest's repository (site/src/outputs), see testdata/README.md.
	{name: "nextest_flaky",
		want: "test_flaky_mod_2 panicked at tests/basic.rs:53:9: Failed because attempt 1 % 2 != 0"},
	{name: "nextest_leak_fail",
		want: "fixture-project::basic test_subprocess_doesnt_exit_leak_fail: LEAK-FAIL: test failed: exited with code 0, but leaked handles"},
}

func corpusPath(name string) string { return filepath.Join("testdata", "corpus", name+".txt") }

// runCase runs c's command on a copy of its project and returns what it
// printed (stdout and stderr in one stream, as a gate's log has them).
func runCase(t *testing.T, c corpusCase) []byte {
	t.Helper()
	_, out := runIn(t, c)
	return out
}

// runCaseIn is runCase for a command whose files matter: it returns the
// directory the command ran in.
func runCaseIn(t *testing.T, c corpusCase) string {
	t.Helper()
	dir, _ := runIn(t, c)
	return dir
}

func runIn(t *testing.T, c corpusCase) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "src", c.dir))))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", c.cmd)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local", "NO_COLOR=1",
		"CARGO_TERM_COLOR=never", "CARGO_TARGET_DIR="+filepath.Join(dir, "target"))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the case must fail: %s", out)
	return dir, out
}

func available(c corpusCase) bool {
	if _, err := exec.LookPath(c.tool); err != nil {
		return false
	}
	return !strings.Contains(c.cmd, "$HL_JS") || os.Getenv("HL_JS") != ""
}

// TestGateCorpus checks every stored output gives its headline, prints the
// score, and fails on any miss.
func TestGateCorpus(t *testing.T) {
	if *capture {
		for _, c := range corpus {
			if c.cmd == "" || !available(c) {
				t.Logf("not captured: %s (%s not here)", c.name, c.tool)
				continue
			}
			require.NoError(t, os.WriteFile(corpusPath(c.name), runCase(t, c), 0o644))
		}
	}
	matched := 0
	for _, c := range corpus {
		out, err := os.ReadFile(corpusPath(c.name))
		require.NoError(t, err)
		got := Gate("check", out, "exit status 1")
		if got == "check: "+c.want {
			matched++
		} else {
			t.Errorf("%s:\n got: %s\nwant: check: %s", c.name, got, c.want)
		}
	}
	t.Logf("gate corpus: %d of %d match", matched, len(corpus))
	fmt.Printf("failure summary gate corpus: %d of %d match\n", matched, len(corpus))
}

// TestGateCorpusLive runs the live entries again with today's tools.
func TestGateCorpusLive(t *testing.T) {
	t.Parallel()
	for _, c := range corpus {
		if !c.live {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if !available(c) {
				t.Skipf("%s is not on this machine", c.tool)
			}
			require.Equal(t, "check: "+c.want, Gate("check", runCase(t, c), "exit status 1"))
		})
	}
}
