package failure

import (
	"regexp"
	"strconv"
	"strings"
)

// A family reads the output of one kind of test runner. It returns the
// summary of the first failing test it recognises and the index of the
// line that anchors it, or at < 0 when the output holds none of its
// failures. Gate takes the family whose anchor comes first, so a make
// target that runs go test and then cargo test is summarised by the one
// that failed first.
type family func(ls []line) (summary string, at int)

var families = []family{goTest, rustPanic, unittest, pytestSection, tapNotOK, nodeSpec, jest, vitest, mocha, junit4, surefire, nextest, javaUncaught}

// firstFamily is the summary of the family whose anchor comes first.
func firstFamily(ls []line) (string, bool) {
	best, bestAt := "", -1
	for _, f := range families {
		if s, at := f(ls); at >= 0 && (bestAt < 0 || at < bestAt) && s != "" {
			best, bestAt = s, at
		}
	}
	return best, bestAt >= 0
}

// pattern is a regexp with literals one of which every match contains,
// checked first (like match.go's rules): most lines of a log match no
// family, and a substring search costs far less than a regexp.
type pattern struct {
	lits []string
	re   *regexp.Regexp
}

func mustPattern(lits []string, expr string) *pattern {
	return &pattern{lits: lits, re: regexp.MustCompile(expr)}
}

func (p *pattern) may(s string) bool {
	for _, l := range p.lits {
		if strings.Contains(s, l) {
			return true
		}
	}
	return false
}

func (p *pattern) MatchString(s string) bool { return p.may(s) && p.re.MatchString(s) }

func (p *pattern) FindStringSubmatch(s string) []string {
	if !p.may(s) {
		return nil
	}
	return p.re.FindStringSubmatch(s)
}

func indexOf(ls []line, from int, re *pattern) int {
	for i := from; i < len(ls); i++ {
		if re.MatchString(ls[i].text) {
			return i
		}
	}
	return -1
}

// --- go test ---------------------------------------------------------------

var (
	goFail    = mustPattern([]string{"--- FAIL: "}, `^--- FAIL: (\S+) \(`)
	goRun     = regexp.MustCompile(`^=== (?:RUN|NAME|CONT|PAUSE)\s+(\S+)$`)
	goLog     = regexp.MustCompile(`^[^\s:]+\.go:\d+: `) // t.Error: "calc_test.go:8: msg"
	goPanic   = mustPattern([]string{"panic: "}, `^panic: `)
	goTimeout = mustPattern([]string{"panic: test timed out"}, `^panic: test timed out after `)
	goFrame   = regexp.MustCompile(`([^\s/]+_test\.go:\d+) \+0x`) // a stack frame in a test file
	goPkgFail = regexp.MustCompile(`^FAIL\s`)
)

// goTest: "--- FAIL: TestAdd (0.00s)" with its t.Error line, under it
// (plain go test) or before it (-v, -json); the deepest failing subtest;
// a panic in a test, with the test file's frame; a test timeout, with the
// test that was running. A test package that does not build is left to the
// compiler-error rules.
func goTest(ls []line) (string, int) {
	first := indexOf(ls, 0, goFail)
	if t := indexOf(ls, 0, goTimeout); t >= 0 && (first < 0 || t < first) {
		return goTimedOut(ls, t), t
	}
	if first < 0 {
		return "", -1
	}
	// Descend into the failing subtests: their "--- FAIL" lines are in
	// the block of their parent's.
	at, name := first, goFail.FindStringSubmatch(ls[first].text)[1]
	for again := true; again; {
		again = false
		for j, l := range block(ls, at) {
			if m := goFail.FindStringSubmatch(l.text); m != nil && strings.HasPrefix(m[1], name+"/") {
				at, name, again = at+1+j, m[1], true
				break
			}
		}
	}
	if msg := goMessage(ls, at, name); msg != "" {
		return join(name, msg), first
	}
	if p := indexOf(ls, at+1, goPanic); p >= 0 {
		return join(name, goFrameAfter(ls, p), ls[p].text), first
	}
	return ls[first].text, first
}

// goMessage is the first t.Error line of test name: in the block under
// its "--- FAIL" line at, or (with -v) after its last "=== RUN" line.
func goMessage(ls []line, at int, name string) string {
	for _, l := range block(ls, at) {
		if goLog.MatchString(l.text) {
			return l.text
		}
	}
	run := -1
	for i := at - 1; i >= 0; i-- {
		if m := goRun.FindStringSubmatch(ls[i].text); m != nil && m[1] == name {
			run = i
			break
		}
	}
	if run < 0 {
		return ""
	}
	for _, l := range ls[run+1:] {
		switch {
		case goLog.MatchString(l.text):
			return l.text
		case goRun.MatchString(l.text), goFail.MatchString(l.text):
			return ""
		}
	}
	return ""
}

// goFrameAfter is the first test-file frame ("x_test.go:7") in the stack
// trace after line p, or "".
func goFrameAfter(ls []line, p int) string {
	for _, l := range ls[p+1:] {
		if goPkgFail.MatchString(l.text) {
			break
		}
		if m := goFrame.FindStringSubmatch(l.text); m != nil {
			return m[1]
		}
	}
	return ""
}

// goTimedOut: "panic: test timed out after 1s", then "running tests:" and
// the tests' names with how long each ran.
func goTimedOut(ls []line, p int) string {
	name := ""
	if p+2 < len(ls) && ls[p+1].text == "running tests:" {
		name, _, _ = strings.Cut(ls[p+2].text, " ")
	}
	return join(name, goFrameAfter(ls, p), ls[p].text)
}

// --- cargo test, nextest -----------------------------------------------------

// rustPanicLine: "thread 'tests::adds' (15689) panicked at src/lib.rs:7:9:"
// (Rust 1.73+; the message follows on the next lines) or, before 1.73,
// "thread 'tests::adds' panicked at 'one plus two', src/lib.rs:7:9".
var rustPanicLine = mustPattern([]string{"thread '"}, `^thread '([^']*)'(?: \(\d+\))? panicked at (.+)$`)

// rustPanic: the first panic, named after its thread (libtest and nextest
// name a test's thread after the test), with its message; assert_eq!'s
// "left:" and "right:" lines are part of it.
func rustPanic(ls []line) (string, int) {
	p := indexOf(ls, 0, rustPanicLine)
	if p < 0 {
		return "", -1
	}
	m := rustPanicLine.FindStringSubmatch(ls[p].text)
	where, ok := strings.CutSuffix(m[2], ":")
	if !ok {
		return m[1] + " panicked at " + m[2], p
	}
	var msg []string
	for _, l := range ls[p+1:] {
		if l.text == "stack backtrace:" || strings.HasPrefix(l.text, "note: ") ||
			strings.HasPrefix(l.text, "----") || strings.HasPrefix(l.text, "failures:") || len(msg) == 8 {
			break
		}
		msg = append(msg, l.text)
	}
	return m[1] + " panicked at " + join(where, strings.Join(msg, "; ")), p
}

// --- python -m unittest --------------------------------------------------------

var (
	unittestHead = mustPattern([]string{"FAIL: ", "ERROR: "}, `^(?:FAIL|ERROR): (\S+) \(`)
	traceback    = "Traceback (most recent call last):"
)

// unittest: "FAIL: test_add (test_calc.TestCalc.test_add)" and the
// exception its traceback ends with: the first unindented line after the
// section's last "Traceback" header (earlier ones are chained causes).
func unittest(ls []line) (string, int) {
	h := indexOf(ls, 0, unittestHead)
	if h < 0 {
		return "", -1
	}
	name := unittestHead.FindStringSubmatch(ls[h].text)[1]
	exc := ""
	for i := h + 1; i < len(ls); i++ {
		t := ls[i].text
		if strings.HasPrefix(t, "-----") && exc != "" || strings.HasPrefix(t, "=====") || unittestHead.MatchString(t) {
			break
		}
		if t == traceback {
			exc = ""
			for j := i + 1; j < len(ls) && exc == ""; j++ {
				if ls[j].indent == 0 {
					exc = ls[j].text
				}
			}
		}
	}
	return join(name, exc), h
}

// --- pytest ----------------------------------------------------------------------

var (
	pytestHeader  = mustPattern([]string{"___ "}, `^_{3,} (.+?) _{3,}$`)
	pytestFailed  = mustPattern([]string{"FAILED ", "ERROR "}, `^(?:FAILED|ERROR) \S`)
	pytestWhere   = regexp.MustCompile(`^(\S+\.py:\d+): \S`)
	pytestExplain = regexp.MustCompile(`^E\s+(.*)$`)
)

// pytestSection: with its short summary (the default), pytest's own
// "FAILED tests/test_calc.py::test_add - assert 3 == 4"; without it (-rN),
// the first failure's section: its "___ test_add ___" header, the first
// "E" line and the "tests/test_calc.py:8: AssertionError" location.
func pytestSection(ls []line) (string, int) {
	h := indexOf(ls, 0, pytestHeader)
	if h < 0 {
		return "", -1
	}
	if s := indexOf(ls, h, pytestFailed); s >= 0 {
		return ls[s].text, h
	}
	name, msg, where := pytestHeader.FindStringSubmatch(ls[h].text)[1], "", ""
	for _, l := range ls[h+1:] {
		if pytestHeader.MatchString(l.text) || strings.HasPrefix(l.text, "=====") {
			break
		}
		if m := pytestExplain.FindStringSubmatch(l.text); m != nil && msg == "" {
			msg = m[1]
		}
		if m := pytestWhere.FindStringSubmatch(l.text); m != nil && where == "" {
			where = m[1]
		}
	}
	if msg == "" && where == "" {
		return "", -1
	}
	return join(name, where, msg), h
}

// --- TAP (node --test, prove) ------------------------------------------------------

var (
	tapNotOKLine = mustPattern([]string{"not ok"}, `^not ok\b`)
	yamlKey      = regexp.MustCompile(`^(\w+): ?(.*)$`)
)

// tapNotOK: the first "not ok" line, with the location and error of its
// YAML diagnostics block (node's test runner writes both).
func tapNotOK(ls []line) (string, int) {
	n := indexOf(ls, 0, tapNotOKLine)
	if n < 0 {
		return "", -1
	}
	diag := block(ls, n)
	if len(diag) == 0 || diag[0].text != "---" {
		return ls[n].text, n
	}
	where, msg := "", ""
	keyIndent := diag[0].indent
	for i := 1; i < len(diag) && diag[i].text != "..."; i++ {
		if diag[i].indent != keyIndent {
			continue
		}
		m := yamlKey.FindStringSubmatch(diag[i].text)
		if m == nil {
			continue
		}
		switch m[1] {
		case "location":
			where = baseOf(unquoteYAML(m[2]))
		case "error":
			if strings.HasPrefix(m[2], "|") {
				var parts []string
				for _, l := range diag[i+1:] {
					if l.indent <= keyIndent {
						break
					}
					parts = append(parts, l.text)
				}
				msg = strings.Join(parts, " ")
			} else {
				msg = unquoteYAML(m[2])
			}
		}
	}
	return join(ls[n].text, where, msg), n
}

func unquoteYAML(s string) string {
	if len(s) >= 2 && (s[0] == '\'' && s[len(s)-1] == '\'') {
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'")
	}
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

// --- node --test's spec reporter -------------------------------------------------------

var (
	specFail     = mustPattern([]string{"✖ "}, `^✖ (.+?)(?: \([\d.]+m?s\))?$`)
	specLocation = regexp.MustCompile(`^test at (\S+:\d+:\d+)$`)
	jsFrame      = regexp.MustCompile(`^at (?:.* \()?([^()\s]+:\d+:\d+)\)?$`)
)

// nodeSpec: "✖ adds numbers (1.7ms)" and the error under it; the location
// comes from the "test at calc.test.js:7:1" line of the closing list of
// failing tests.
func nodeSpec(ls []line) (string, int) {
	n := -1
	for i, l := range ls {
		if m := specFail.FindStringSubmatch(l.text); m != nil && m[1] != "failing tests:" && len(block(ls, i)) > 0 {
			n = i
			break
		}
	}
	if n < 0 {
		return "", -1
	}
	name := specFail.FindStringSubmatch(ls[n].text)[1]
	var msg []string
	for _, l := range block(ls, n) {
		if jsFrame.MatchString(l.text) || l.text == "{" || len(msg) == 4 {
			break
		}
		msg = append(msg, l.text)
	}
	where := ""
	for i := n + 1; i+1 < len(ls); i++ {
		if m := specLocation.FindStringSubmatch(ls[i].text); m != nil {
			if f := specFail.FindStringSubmatch(ls[i+1].text); f != nil && f[1] == name {
				where = baseOf(m[1])
				break
			}
		}
	}
	return join("✖ "+name, where, strings.Join(msg, " ")), n
}

// --- jest ------------------------------------------------------------------------------

var (
	jestTitle = mustPattern([]string{"● "}, `^● (.+)$`)
	codeFrame = regexp.MustCompile(`^>?\s*\d+\s*\|`)
)

// jest: "● calc › adds numbers", its message lines up to the code frame,
// and the first stack frame after it.
func jest(ls []line) (string, int) {
	n := indexOf(ls, 0, jestTitle)
	if n < 0 {
		return "", -1
	}
	var msg []string
	where := ""
	for _, l := range ls[n+1:] {
		if jestTitle.MatchString(l.text) || strings.HasPrefix(l.text, "Test Suites:") {
			break
		}
		if m := jsFrame.FindStringSubmatch(l.text); m != nil {
			where = baseOf(m[1])
			break
		}
		if !codeFrame.MatchString(l.text) && l.text != "|" && !strings.HasPrefix(l.text, "| ") && len(msg) < 4 {
			msg = append(msg, l.text)
		}
	}
	return join(jestTitle.FindStringSubmatch(ls[n].text)[1], where, strings.Join(msg, "; ")), n
}

// --- vitest ----------------------------------------------------------------------------

var (
	vitestFail  = mustPattern([]string{" > "}, `^FAIL\s+(\S.* > .+)$`)
	vitestWhere = regexp.MustCompile(`^❯ (\S+:\d+:\d+)$`)
)

// vitest: the "FAIL  calc.test.js > calc > adds numbers" line of its
// failed-tests section, the error on the next line, and the "❯ file:line"
// location.
func vitest(ls []line) (string, int) {
	n := indexOf(ls, 0, vitestFail)
	if n < 0 {
		return "", -1
	}
	msg, where := "", ""
	if n+1 < len(ls) {
		msg = ls[n+1].text
	}
	for _, l := range ls[n+1:] {
		if vitestFail.MatchString(l.text) {
			break
		}
		if m := vitestWhere.FindStringSubmatch(l.text); m != nil {
			where = baseOf(m[1])
			break
		}
	}
	return join(vitestFail.FindStringSubmatch(ls[n].text)[1], where, msg), n
}

// --- mocha ------------------------------------------------------------------------------

var (
	mochaFailing = mustPattern([]string{" failing"}, `^\d+ failing$`)
	mochaItem    = regexp.MustCompile(`^\d+\) (.+)$`)
)

// mocha: after "1 failing", "1) calc" and "adds numbers:" (the title path,
// one part a line), the error message and the first stack frame.
func mocha(ls []line) (string, int) {
	f := indexOf(ls, 0, mochaFailing)
	if f < 0 || f+1 >= len(ls) {
		return "", -1
	}
	m := mochaItem.FindStringSubmatch(ls[f+1].text)
	if m == nil {
		return "", -1
	}
	title := []string{m[1]}
	i := f + 2
	for ; i < len(ls) && !strings.HasSuffix(title[len(title)-1], ":"); i++ {
		title = append(title, ls[i].text)
	}
	name := strings.TrimSuffix(strings.Join(title, " "), ":")
	var msg []string
	where := ""
	for ; i < len(ls); i++ {
		t := ls[i].text
		if fr := jsFrame.FindStringSubmatch(t); fr != nil {
			where = baseOf(fr[1])
			break
		}
		if t == "+ expected - actual" || mochaItem.MatchString(t) {
			msg = append(msg, "") // the diff and later failures are not the message
		}
		if len(msg) < 3 && (len(msg) == 0 || msg[len(msg)-1] != "") {
			msg = append(msg, t)
		}
	}
	return join(name, where, strings.TrimSpace(strings.Join(msg, " "))), f + 1
}

// --- JUnit (JUnitCore, Maven Surefire, Gradle), java ------------------------------------

var (
	junitThere = mustPattern([]string{"There w"}, `^There (?:was|were) \d+ failures?:$`)
	junitItem  = regexp.MustCompile(`^1\) (\w+)\(([\w.$]+)\)$`)
	javaFrame  = regexp.MustCompile(`^at ([\w.$<>]+)\(([\w$]+\.java:\d+)\)$`)
)

// junit4: JUnitCore's "1) addsNumbers(CalcTest)", the exception on the
// next line, and the frame in the test's class.
func junit4(ls []line) (string, int) {
	t := indexOf(ls, 0, junitThere)
	if t < 0 || t+2 >= len(ls) {
		return "", -1
	}
	m := junitItem.FindStringSubmatch(ls[t+1].text)
	if m == nil {
		return "", -1
	}
	where := ""
	for _, l := range ls[t+3:] {
		if fr := javaFrame.FindStringSubmatch(l.text); fr != nil && strings.HasPrefix(fr[1], m[2]+".") {
			where = fr[2]
			break
		} else if fr == nil {
			break
		}
	}
	return join(ls[t+1].text[3:], where, ls[t+2].text), t + 1
}

var (
	surefireHead = mustPattern([]string{"[ERROR] "}, `^\[ERROR\] (?:Failures|Errors):\s*$`)
	surefireItem = regexp.MustCompile(`^\[ERROR\]\s+(\S.*)$`)
)

// surefire: the first entry of Maven Surefire's "[ERROR] Failures:" (or
// "Errors:") list: "CalcTest.adds:10 expected: <4> but was: <3>".
func surefire(ls []line) (string, int) {
	h := indexOf(ls, 0, surefireHead)
	if h < 0 || h+1 >= len(ls) {
		return "", -1
	}
	m := surefireItem.FindStringSubmatch(ls[h+1].text)
	if m == nil || ls[h+1].text == ls[h].text {
		return "", -1
	}
	return m[1], h + 1
}

// nextestStatus: nextest's line for a test that did not pass, "FAIL [
// 0.004s] (1/2) crate::binary test_name" (a "TRY n" prefix on retries).
var (
	nextestStatus = mustPattern([]string{"] "}, `^(?:TRY \d+ )?(FAIL|LEAK-FAIL|TIMEOUT|SIGSEGV|SIGABRT|SIGBUS|SIGKILL|ABORT)\s+\[[^\]]*\]\s+(?:\([^)]*\)\s+)?(\S+ \S+)$`)
	nextestAny    = regexp.MustCompile(`^(?:TRY \d+ )?[A-Z][A-Z-]+(?: \d+/\d+)?\s+\[[^\]]*\]\s`)
	nextestWhy    = regexp.MustCompile(`^\((test failed: .*)\)$`)
)

// nextest: the first test nextest reports failed: the panic in its output
// when there is one, else nextest's own reason ("leaked handles").
func nextest(ls []line) (string, int) {
	n := indexOf(ls, 0, nextestStatus)
	if n < 0 {
		return "", -1
	}
	end := n + 1
	for end < len(ls) && !nextestAny.MatchString(ls[end].text) && !strings.HasPrefix(ls[end].text, "───") {
		end++
	}
	if s, at := rustPanic(ls[n+1 : end]); at >= 0 {
		return s, n
	}
	m := nextestStatus.FindStringSubmatch(ls[n].text)
	why := ""
	for _, l := range ls[n+1 : end] {
		if w := nextestWhy.FindStringSubmatch(l.text); w != nil {
			why = w[1]
		}
	}
	return join(m[2], m[1], why), n
}

var javaException = mustPattern([]string{"Exception in thread"}, `^Exception in thread "[^"]*" \S`)

// javaUncaught: a Java program's uncaught exception (an assert, a self-test
// that throws) with the frame it was thrown from.
func javaUncaught(ls []line) (string, int) {
	e := indexOf(ls, 0, javaException)
	if e < 0 {
		return "", -1
	}
	where := ""
	if e+1 < len(ls) {
		if fr := javaFrame.FindStringSubmatch(ls[e+1].text); fr != nil {
			where = fr[2]
		}
	}
	return join(where, ls[e].text), e
}

// --- make, scripts ---------------------------------------------------------------------

var (
	makeError = mustPattern([]string{"*** "}, `^g?make(?:\[\d+\])?: \*\*\* (.*)$`)
	makeOwn   = regexp.MustCompile(`^g?make(?:\[\d+\])?: `)
	// failWord: a line that says something went wrong.
	failWord = regexp.MustCompile(`(?i)\b(?:fail(?:ed|ure|s)?|error|mismatch|abort(?:ed)?|assert(?:ion)?|cannot|can't|not found|denied|refused|invalid|timed? ?out|returned \d+)\b`)
)

// lastScan is how many last lines lastWord and makeCause look at for one
// that says it failed.
const lastScan = 5

// makeCause: for "make: *** [Makefile:4: check] Error 1", the recipe's own
// complaint: of the lines it printed just before, the last that says it
// failed, else its last line. make's other complaints ("No rule to make
// target") are the cause themselves.
func makeCause(ls []line) string {
	k := indexOf(ls, 0, makeError)
	if k < 0 {
		return ""
	}
	if !strings.HasPrefix(makeError.FindStringSubmatch(ls[k].text)[1], "[") {
		return ls[k].text
	}
	start := k
	for start > 0 && !makeOwn.MatchString(ls[start-1].text) {
		start--
	}
	before := ls[max(start, k-lastScan):k]
	if s := failingLine(before); s != "" {
		return s
	}
	if len(before) > 0 {
		return before[len(before)-1].text
	}
	return ls[k].text
}

// lastWord is what a script printed last before it failed: of its last
// lines (leaving out make's own, the shell's "+ cmd" traces and a bare
// "FAIL"), the last that says it failed, else the last three joined with
// " | " (a formatter's list of files, say).
func lastWord(ls []line) string {
	var kept []line
	for i := len(ls) - 1; i >= 0 && len(kept) < lastScan; i-- {
		t := ls[i].text
		if !makeOwn.MatchString(t) && !strings.HasPrefix(t, "+ ") && !bareVerdict.MatchString(t) {
			kept = append([]line{ls[i]}, kept...)
		}
	}
	if s := failingLine(kept); s != "" {
		return s
	}
	var last []string
	for _, l := range kept[max(0, len(kept)-tailLines):] {
		last = append(last, l.text)
	}
	return strings.Join(last, " | ")
}

// bareVerdict: a line that only says the run failed, not what did.
var bareVerdict = regexp.MustCompile(`^(?i:fail(?:ed|ures?)?|error)\W*$`)

// failingLine is the last of ls that says it failed, or "".
func failingLine(ls []line) string {
	for i := len(ls) - 1; i >= 0; i-- {
		if failWord.MatchString(ls[i].text) {
			return ls[i].text
		}
	}
	return ""
}
