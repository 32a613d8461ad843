package failure

import (
	"regexp"
	"strings"
)

// Every pattern is matched against a cleaned, trimmed line (see cleanLine),
// so "^" means "first visible character", whatever indentation or colour the
// tool added.

// compilerLine: lines that name a compiler or linker error precisely.
var compilerLine = rules{
	// rustc/cargo: "error[E0063]: ...", "error: could not compile ...";
	// cargo prints the summary after the real error, so output order suffices.
	{"error", `^error(?:\[[A-Z]*\d+\])?: `},
	// gcc, clang, javac: "foo.c:3:5: error:", "foo.c:3: error:",
	// "Main.java:3: error:", "foo.c:1:10: fatal error:".
	{"error: ", `^(?:[A-Za-z]:)?[^:\s][^:]*:\d+(?::\d+)?: (?:fatal )?error: `},
	// "gcc: fatal error: no input files", Go's runtime "fatal error: ...".
	{"fatal error: ", `\bfatal error: `},
	// Go has no "error" word: "./main.go:12:2: undefined: x". A column is
	// required so that t.Log lines ("x_test.go:13: ...") do not match.
	{".go:", `^(?:[A-Za-z]:)?[^:\s][^:]*\.go:\d+:\d+: \S`},
	// tsc "src/a.ts(3,5): error TS2322: ..." and MSVC "a.c(3): error C2065: ...".
	{"): ", `^.+\(\d+(?:,\d+)*\): (?:fatal )?error [A-Z]*\d+: `},
	// tsc 5+ / --pretty: "src/a.ts:3:5 - error TS2322: ...".
	{" - error TS", `^.+:\d+:\d+ - error TS\d+: `},
	// GNU ld and macOS ld; "collect2: error: ld returned 1 exit status" is
	// only generic, so the earlier specific line wins over it.
	{"undefined reference to ", ``},
	{"multiple definition of ", ``},
	{"Undefined symbols for architecture ", `^Undefined symbols`},
	// Linker lines such as "/usr/bin/ld: cannot find -lfoo" (but see
	// ldContext for the "in function" lines that only give context).
	{"ld", `^(?:\S*/)?(?:ld|ld\.\w+|lld|ld64(?:\.\w+)?|mold)(?:\.exe)?: `},
	// Python: the last line of a traceback, "SyntaxError: invalid syntax",
	// "json.decoder.JSONDecodeError: ...". A bare "Error: x" stays generic.
	{"Error: ", `^(?:[A-Za-z_]\w*\.)*[A-Z]\w*Error: `},
	{"Exception: ", `^(?:[A-Za-z_]\w*\.)*[A-Z]\w*Exception: `},
}.compile()

// ldContext: "/usr/bin/ld: /tmp/x.o: in function `main':" precedes the real
// "undefined reference" line and must not win over it.
var ldContext = regexp.MustCompile(`^(?:\S*/)?(?:ld|ld\.\w+|lld|ld64(?:\.\w+)?|mold)(?:\.exe)?: .*: in function .*:$`)

// genericError: a last resort for Compile and Gate.
var genericError = rules{
	{"error:", `\berror:`},
	{"Error:", `\bError:`},
	{"ERROR:", `\bERROR:`},
}.compile()

// goCommand: "go: cannot find main module", "go: go.mod file not found ...",
// but not the progress lines the go command prints on success.
var (
	goCommand = regexp.MustCompile(`^go: \S`)
	goInfo    = regexp.MustCompile(`^go: (?:downloading|finding|extracting|found|added|upgraded|downgraded|removed|creating|to add)\b`)
)

// warning: lines that report a warning never count, whatever they contain:
// "warning: ...", "foo.c:3:5: warning: ...", "/usr/bin/ld: warning: ...",
// "WARNING: ...". The literals are the three spellings tools use.
var warning = rules{
	{"warning", `^(?:\S*[:)]\s*)?warning\b`},
	{"Warning", `^(?:\S*[:)]\s*)?Warning\b`},
	{"WARNING", `^(?:\S*[:)]\s*)?WARNING\b`},
}.compile()

// testFailure: lines that name one failing test, or a crash, precisely.
var testFailure = rules{
	{"--- FAIL: ", `^--- FAIL: `},                    // go test
	{"panic: ", `^panic: `},                          // Go panic (also "test timed out")
	{"FAILED ", `^FAILED \S`},                        // pytest short summary
	{"ERROR ", `^ERROR \S`},                          // pytest collection error
	{"not ok", `^not ok\b`},                          // TAP (prove, node --test-reporter=tap)
	{"", `^[✗✘✕✖×]\s+\S`},                            // jest, node spec reporter, vitest, ...
	{"●", `^●\s+\S`},                                 // jest "● Suite › test"
	{" ... FAILED", `^test .+ \.\.\. FAILED$`},       // cargo test (libtest)
	{" panicked at ", `^thread '.*' .*panicked at `}, // Rust panic
}.compile()

// weakFailure: failure lines that say little on their own: "FAIL\tpkg 0.1s",
// jest's "FAIL ./a.test.js", an AssertionError without the test's name.
var weakFailure = rules{
	{"FAIL", `^FAIL(?::|\s)\s*\S`}, // a bare "FAIL" line says nothing: never used
	{"AssertionError", `\bAssertionError\b`},
}.compile()

// A rule is a regexp plus a literal that every match contains. Checking the
// literal first keeps the scan of a 4 MiB log fast: Go's regexp engines
// cost time proportional to pattern size on every line, while most lines of
// a log match nothing. An empty regexp means the literal alone decides.
type rule struct{ literal, pattern string }

type rules []rule

type compiledRule struct {
	literal string
	re      *regexp.Regexp
}

type matcher []compiledRule

func (rs rules) compile() matcher {
	m := make(matcher, len(rs))
	for i, r := range rs {
		m[i].literal = r.literal
		if r.pattern != "" {
			m[i].re = regexp.MustCompile(r.pattern)
		}
	}
	return m
}

// MatchString reports whether any rule matches line.
func (m matcher) MatchString(line string) bool {
	for _, r := range m {
		if strings.Contains(line, r.literal) && (r.re == nil || r.re.MatchString(line)) {
			return true
		}
	}
	return false
}

func isCompilerError(line string) bool {
	return compilerLine.MatchString(line) && !ldContext.MatchString(line)
}

func isGenericError(line string) bool {
	return genericError.MatchString(line) ||
		(goCommand.MatchString(line) && !goInfo.MatchString(line))
}
