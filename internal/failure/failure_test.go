package failure

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// The testdata/*.txt files are real output captured once from the tools
// named in testdata/README.md, so the expectations follow what compilers and
// test runners really print, not what we think they print.
func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func TestCompileRealOutput(t *testing.T) {
	t.Parallel()
	// go_long.txt: Go reports an undefined identifier made of 400 × "é世";
	// the headline keeps MaxLen-1 runes and adds "…".
	longPrefix := "./main.go:4:6: undefined: "
	longBody := []rune(strings.Repeat("é世", 400))
	longWant := longPrefix + string(longBody[:MaxLen-1-utf8.RuneCountInString(longPrefix)]) + "…"

	tests := []struct {
		desc, file, want string
	}{
		{"go build: first of three errors, # header skipped", "go.txt", "./main.go:6:14: undefined: x"},
		{"go command error without file position", "gonomod.txt", "go: go.mod file not found in current directory or any parent directory; see 'go help modules'"},
		{"gcc: warnings before the error", "gcc.txt", "warn.c:6:16: error: ‘undeclared_var’ undeclared (first use in this function)"},
		{"gcc: ANSI colours and erase-line codes", "gcc_color.txt", "warn.c:6:16: error: ‘undeclared_var’ undeclared (first use in this function)"},
		{"gcc: fatal error", "gcc_fatal.txt", "fatal.c:1:10: fatal error: nope.h: No such file or directory"},
		{"ld: undefined reference beats context line and later collect2", "gcc_link.txt", "link.c:(.text+0x5): undefined reference to `missing_fn'"},
		{"ld: missing library", "gcc_ldlib.txt", "/usr/bin/ld: cannot find -lnosuchlib: No such file or directory"},
		{"cargo: error[E0063] before could-not-compile", "rustc.txt", "error[E0063]: missing field `y` in initializer of `Point`"},
		{"cargo: dependency warnings before the error", "rustc_warn.txt", "error[E0063]: missing field `y` in initializer of `Point`"},
		{"cargo --color=always", "rustc_color.txt", "error[E0063]: missing field `y` in initializer of `Point`"},
		{"cargo on a tty: CRLF, \\r progress bar, erase-line", "cargo_tty.txt", "error[E0063]: missing field `y` in initializer of `Point`"},
		{"clang: error with caret lines and count after it", "clang.txt", "bad.c:5:17: error: use of undeclared identifier 'undeclared_var'"},
		{"clang link: undefined reference beats clang's linker summary", "clang_link.txt", "link.c:(.text+0x10): undefined reference to `missing_fn'"},
		{"javac: lint warnings before the error", "javac.txt", "Main.java:10: error: incompatible types: String cannot be converted to int"},
		{"tsc --pretty false", "tsc.txt", "src/a.ts(1,7): error TS2322: Type 'string' is not assignable to type 'number'."},
		{"tsc --pretty (coloured)", "tsc_pretty.txt", "src/a.ts:1:7 - error TS2322: Type 'string' is not assignable to type 'number'."},
		{"python SyntaxError", "python_syntax.txt", "SyntaxError: invalid syntax"},
		{"python traceback: final exception line", "python_traceback.txt", "json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"},
		{"generic Error: line", "node_error.txt", "Error: boom: config missing"},
		{"no matching line: last three lines", "make.txt", "copying 12 files | ls: cannot access '/nonexistent-dir': No such file or directory | make: *** [Makefile:4: all] Error 2"},
		{"very long line cut without splitting runes", "go_long.txt", longWant},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			got := Compile(readTestdata(t, tc.file))
			require.Equal(t, tc.want, got)
			require.LessOrEqual(t, utf8.RuneCountInString(got), MaxLen)
		})
	}
}

func TestCompileSynthetic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc, in, want string
	}{
		{"empty", "", ""},
		{"blank and colour-only lines", "\n  \t\n\x1b[0m\n\r\n", ""},
		{"specific beats earlier generic", "Error: build step failed\nfoo.c:3:5: error: bad\n", "foo.c:3:5: error: bad"},
		{"first generic when nothing specific", "note: x\nstep ERROR: one\nstep Error: two\n", "step ERROR: one"},
		{"line-leading error: is specific (rustc style)", "step Error: one\nerror: two\n", "error: two"},
		{"generic needs a word boundary", "-Werror:x\nTypeerror:y\nlast\n", "-Werror:x | Typeerror:y | last"},
		{"warning lines never match", "warning: error: nope\nfoo.c:1:1: warning: error: nope\n/usr/bin/ld: warning: error: nope\n", "warning: error: nope | foo.c:1:1: warning: error: nope | /usr/bin/ld: warning: error: nope"},
		{"go informational lines are not errors", "go: downloading example.com/m v1.0.0\ndone\n", "go: downloading example.com/m v1.0.0 | done"},
		{"t.Log line without column is not a Go error", "    x_test.go:13: got 1\nok\n", "x_test.go:13: got 1 | ok"},
		{"fallback keeps only the last three lines", "a\nb\n\nc\n\t\nd  \n", "b | c | d"},
		{"tabs inside kept, ends trimmed", "\tfoo.c:1:2: error:\tbad\t\n", "foo.c:1:2: error:\tbad"},
		{"progress bar: text after the last \\r", "Building 10%\rBuilding 99%\r\x1b[Kerror[E0599]: no method\r\n", "error[E0599]: no method"},
		{"OSC 8 hyperlink keeps its text", "a.c:1:1: error: bad [\x1b]8;;https://gcc.gnu.org/x\x1b\\-Wfoo\x1b]8;;\x1b\\]\n", "a.c:1:1: error: bad [-Wfoo]"},
		{"other escapes and control bytes dropped", "\x1b(B\x1b7a.c:1:1: error: \x00b\x07a\x7fd\n", "a.c:1:1: error: bad"},
		{"backspace overstrike", "error: bo_\bld\n", "error: bold"},
		{"invalid UTF-8 replaced", "error: \xff\xfe!\n", "error: \uFFFD\uFFFD!"},
		{"clang linker summary loses to undefined reference", "/usr/bin/ld: /tmp/a.o: in function `main':\na.c:(.text+0x5): undefined reference to `f'\nclang: error: linker command failed with exit code 1 (use -v to see invocation)\n", "a.c:(.text+0x5): undefined reference to `f'"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, Compile([]byte(tc.in)))
		})
	}
}

// An error past the 4 MiB scan window is not searched for, but the fallback
// still reports the real last lines.
func TestCompileScanLimit(t *testing.T) {
	t.Parallel()
	filler := strings.Repeat("compiling something\n", scanLimit/20+1)
	out := []byte(filler + "a.go:1:1: undefined: x\ntail 1\ntail 2\n")
	require.Greater(t, len(out), scanLimit)
	require.Equal(t, "a.go:1:1: undefined: x | tail 1 | tail 2", Compile(out))

	// A huge last line is cut like any other, and cheaply.
	huge := []byte("start\n" + strings.Repeat("x", 8<<20))
	got := Compile(huge)
	require.Equal(t, MaxLen, utf8.RuneCountInString(got))
	require.True(t, strings.HasPrefix(got, "start | xxx"))
	require.True(t, strings.HasSuffix(got, "x…"))
}

func TestGateRealOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc, kind, file, want string
	}{
		{"go test: --- FAIL before FAIL lines", "test", "gotest.txt", "test: TestAdd: calc_test.go:13: Add(2, 3) = -1, want 5"},
		{"go test -v: log line before --- FAIL", "test", "gotest_v.txt", "test: TestAdd: calc_test.go:13: Add(2, 3) = -1, want 5"},
		{"go test panic", "test", "gotest_panic.txt", "test: TestNil: p_test.go:7: panic: assignment to entry in nil map [recovered, repanicked]"},
		{"go test that does not build", "test", "gotest_build.txt", "test: ./x_test.go:5:32: undefined: missing"},
		{"pytest: FAILED summary beats earlier AssertionError", "test", "pytest.txt", "test: FAILED tests/test_calc.py::test_add - assert -1 == 5"},
		{"TAP from node --test", "test", "node_tap.txt", "test: not ok 2 - subtracts: a.test.js:4:1: Expected values to be strictly equal: 2 !== 1"},
		{"node --test spec reporter ✖", "test", "node_spec.txt", "test: ✖ subtracts: a.test.js:4:1: AssertionError [ERR_ASSERTION]: Expected values to be strictly equal: 2 !== 1"},
		{"jest: ● title, message and frame beat the earlier FAIL file line", "test", "jest.txt", "test: calc › adds: calc.test.js:4:42: expect(received).toBe(expected) // Object.is equality; Expected: 5; Received: -1"},
		{"cargo test", "test", "cargo_test.txt", "test: tests::adds panicked at src/lib.rs:16:9: assertion `left == right` failed; left: -1; right: 5"},
		{"compile gate reuses compiler patterns", "build", "rustc_color.txt", "build: error[E0063]: missing field `y` in initializer of `Point`"},
		{"make: the recipe's complaint, not make's Error 2", "lint", "make.txt", "lint: ls: cannot access '/nonexistent-dir': No such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, Gate(tc.kind, readTestdata(t, tc.file), "exit status 1"))
		})
	}
}

func TestGateSynthetic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc, kind, in, fallback, want string
	}{
		{"empty output", "test", "", "exit status 1", "test: exit status 1"},
		{"bare FAIL says nothing", "test", "FAIL\n", "exit status 1", "test: exit status 1"},
		{"FAIL pkg line", "test", "ok  \ta\t0.1s\nFAIL\tsando/x [setup failed]\nFAIL\n", "exit status 1", "test: FAIL\tsando/x [setup failed]"},
		{"pytest-like text", "test", "tests/a.py F\nE   AssertionError: 1 != 2\nFAILED tests/a.py::test_y - AssertionError: 1 != 2\n", "x", "test: FAILED tests/a.py::test_y - AssertionError: 1 != 2"},
		{"AssertionError alone", "test", "collected 1\nAssertionError\n", "x", "test: AssertionError"},
		{"TAP subtest", "test", "TAP version 13\n    not ok 1 - inner\nnot ok 1 - outer\n", "x", "test: not ok 1 - inner"},
		{"✗ marker", "e2e", "  ✓ loads\n  ✗ saves\n", "x", "e2e: ✗ saves"},
		{"✘ marker", "e2e", "✘ saves\n", "x", "e2e: ✘ saves"},
		{"jest suite line", "test", "● calc › adds\n", "x", "test: calc › adds"},
		{"go panic without test name", "test", "starting\npanic: boom\n\ngoroutine 1 [running]:\n", "x", "test: panic: boom"},
		{"generic error line", "lint", "checking\nError: 3 problems\n", "exit status 1", "lint: Error: 3 problems"},
		{"empty fallback uses last lines", "fmt", "a.go\nb.go\n", "", "fmt: a.go | b.go"},
		{"everything empty: just the kind", "fmt", "", "", "fmt"},
		{"empty kind: no prefix", "", "--- FAIL: TestX (0.01s)\n", "", "--- FAIL: TestX (0.01s)"},
		{"kind and fallback made one line", "a\nb", "", "exit\nstatus 1", "a b: exit status 1"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, Gate(tc.kind, []byte(tc.in), tc.fallback))
		})
	}
}

// A script's last word is read at the real end of its output, past the
// 4 MiB that are searched for failures.
func TestGateLastWordOfHugeOutput(t *testing.T) {
	t.Parallel()
	filler := strings.Repeat("checking something\n", scanLimit/19+1)
	out := []byte(filler + "smoke: GET /api/users returned 503\n")
	require.Greater(t, len(out), scanLimit)
	require.Equal(t, "smoke: smoke: GET /api/users returned 503", Gate("smoke", out, "exit status 1"))
}

func TestGateCutsWholeSummary(t *testing.T) {
	t.Parallel()
	got := Gate("test", []byte("--- FAIL: "+strings.Repeat("ü", 700)), "")
	require.Equal(t, MaxLen, utf8.RuneCountInString(got))
	require.Equal(t, "test: --- FAIL: "+strings.Repeat("ü", MaxLen-17)+"…", got)
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc, in, want string
	}{
		{"empty", "", ""},
		{"exactly MaxLen runes kept", strings.Repeat("世", MaxLen), strings.Repeat("世", MaxLen)},
		{"one over is cut", strings.Repeat("a", MaxLen+1), strings.Repeat("a", MaxLen-1) + "…"},
		{"multi-byte runes not split", strings.Repeat("🙂", MaxLen+5), strings.Repeat("🙂", MaxLen-1) + "…"},
		{"bytes vs runes: 600 runes in 1800 bytes kept", strings.Repeat("€", MaxLen), strings.Repeat("€", MaxLen)},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			got := Truncate(tc.in)
			require.Equal(t, tc.want, got)
			require.True(t, utf8.ValidString(got))
		})
	}
}

// BenchmarkCompileNoMatch is the worst common case: a long log in which no
// line matches, so every line of the 4 MiB window is checked.
func BenchmarkCompileNoMatch(b *testing.B) {
	out := []byte(strings.Repeat("   Compiling serde v1.0.0 (registry)\n", 100000))
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		Compile(out)
	}
}

// BenchmarkGateNoMatch: a 4 MiB gate log in which no family and no rule
// finds anything, so every family reads every line.
func BenchmarkGateNoMatch(b *testing.B) {
	out := []byte(strings.Repeat("ok  \texample.com/pkg/sub\t0.012s\n", scanLimit/32))
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		Gate("test", out, "exit status 1")
	}
}
