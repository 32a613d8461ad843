// Package failure turns a failed step's output into the one-line
// "failure_summary" that CI machines read from Sando's API.
//
// Matching works on cleaned lines (see cleanLine: carriage-return progress
// frames collapsed, ANSI escapes removed, trimmed). Only the first 4 MiB of
// output are searched for a matching line, which bounds the work on huge logs
// (a compiler's first error is near the top); the fallback to the last lines
// always reads the real end of the output.
//
// # Libraries weighed, and not taken (2026-12-02)
//
// github.com/reviewdog/errorformat (Vim's errorformat, 49 formats): run on
// the 50 cases of the gate corpus (testdata/corpus, 30) and the compile
// corpus (testdata/*.txt, 20), taking for each case the best of all 49
// formats after the fact, its first entry held the message our headline
// quotes in 13 of 50; these rules give the expected headline in 50 of 50. It has no format
// for go test's "--- FAIL", -json, panics or timeouts, libtest, unittest,
// pytest, TAP, jest, vitest, mocha, JUnit or make, none for rustc or
// javac, and where it matches it keeps file:line: text but loses the test's
// name.
//
// github.com/joshdk/go-junit v1.0.0 against encoding/xml (junit.go), on the
// six reports of testdata/junit: it counted 5 of 6 right (node's junit
// reporter puts <testcase> straight under <testsuites>, and it counted
// none of them) and accepted a non-JUnit root and text that is not XML
// without an error; junit.go counts 6 of 6 and rejects both, in 60 lines.
package failure

import (
	"bytes"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest summary Sando stores (in runes).
const MaxLen = 600

// scanLimit (4 MiB) is how much of the output, from the start, Compile and Gate search
// for an error or failure line. A line cut by the limit is not searched.
const scanLimit = 4 << 20

// tailLines is how many last non-empty lines the fallback joins.
const tailLines = 3

// Compile returns the first line of build output that is a compiler error,
// trimmed, with ANSI escape sequences removed, cut to MaxLen runes.
// When no line matches, it falls back to the last non-empty lines of the
// output (up to 3, joined with " | ", cut to MaxLen), and when output is
// empty to the empty string (caller then says e.g. "exit status 2").
//
// Two passes, in output order each: a specific compiler or linker line
// anywhere in the output beats a generic "error:" line (so "collect2: error:
// ld returned 1" or a tool's "Error: ..." banner never hides the real error);
// the first generic line is used only when no specific one exists. Lines
// reporting a warning never match.
func Compile(output []byte) string {
	if line, ok := first(output, isCompilerError, isGenericError); ok {
		return Truncate(line)
	}
	return tail(output)
}

// Gate returns "<kind>: <summary>" for a red gate: the first failure the
// gate's tool reported, as a person would quote it, cut to MaxLen runes.
//
// In order, the first that finds something:
//   - a test runner's failing test, with its message and where it failed,
//     read by the family of that runner (families.go): go test (plain, -v,
//     -json), cargo test and nextest, unittest, pytest, TAP and node's spec
//     reporter, jest, vitest, mocha, JUnit, Maven Surefire, Gradle, and an
//     uncaught Java exception. Of several, the one printed first wins;
//   - a line naming a failing test, a panic or a compiler error (a test
//     package that does not build);
//   - for make, the recipe's own complaint before "make: *** [...] Error 1";
//   - a weaker failure line ("FAIL\tpkg", an AssertionError, "Error: ...");
//   - what the gate printed last, preferring a line that says it failed: a
//     script's own last word. A gate's log holds stdout and stderr in the
//     order they were written (one file for both), so what a script wrote
//     to stderr just before it exited is its last line.
//
// fallback (e.g. "exit status 1") stands in only when the gate printed
// nothing; an empty kind drops the "<kind>: " prefix.
func Gate(kind string, output []byte, fallback string) string {
	line := gateCause(output, splitLines(output))
	if line == "" {
		line = oneLine(fallback)
	}
	kind = oneLine(kind)
	switch {
	case kind == "":
		return Truncate(line)
	case line == "":
		return Truncate(kind)
	}
	return Truncate(kind + ": " + line)
}

func gateCause(output []byte, ls []line) string {
	if s, ok := firstFamily(ls); ok {
		return s
	}
	strong := func(l string) bool { return testFailure.MatchString(l) || isCompilerError(l) }
	weak := func(l string) bool { return weakFailure.MatchString(l) || isGenericError(l) }
	var weakLine string
	for _, l := range ls {
		switch {
		case warning.MatchString(l.text):
		case strong(l.text):
			return l.text
		case weakLine == "" && weak(l.text):
			weakLine = l.text
		}
	}
	if s := makeCause(ls); s != "" {
		return s
	}
	if weakLine != "" {
		return weakLine
	}
	return lastWord(endLines(output, ls))
}

// Truncate cuts s to MaxLen runes (adding "…" when it cut), never splitting a rune.
// The "…" counts towards MaxLen. Bytes of invalid UTF-8 count as one rune each.
func Truncate(s string) string {
	if len(s) <= MaxLen || utf8.RuneCountInString(s) <= MaxLen {
		return s
	}
	n := 0
	for i := range s {
		if n == MaxLen-1 {
			return s[:i] + "…"
		}
		n++
	}
	return s // unreachable: s has more than MaxLen runes
}

// first returns the first line (within scanLimit) that strong accepts, or
// failing that the first that weak accepts. Warning lines are skipped.
func first(output []byte, strong, weak func(string) bool) (string, bool) {
	var fallback string
	found := false
	for raw := range bytes.Lines(scanned(output)) {
		line := cleanLine(raw, 0)
		if line == "" || warning.MatchString(line) {
			continue
		}
		if strong(line) {
			return line, true
		}
		if !found && weak(line) {
			fallback, found = line, true
		}
	}
	return fallback, found
}

// scanned is the part of output that is searched: at most scanLimit bytes,
// ending at a line break so no line is searched half-read.
func scanned(output []byte) []byte {
	if len(output) <= scanLimit {
		return output
	}
	head := output[:scanLimit]
	return head[:bytes.LastIndexByte(head, '\n')+1]
}

// tail joins the last non-empty cleaned lines of all of output with " | ".
// It reads backwards from the end, so its cost does not depend on the size
// of the output before those lines.
func tail(output []byte) string {
	var lines []string
	rest := output
	for len(rest) > 0 && len(lines) < tailLines {
		i := bytes.LastIndexByte(rest, '\n')
		if l := cleanLine(rest[i+1:], MaxLen); l != "" {
			lines = append(lines, l)
		}
		rest = rest[:max(i, 0)]
	}
	slices.Reverse(lines)
	return Truncate(strings.Join(lines, " | "))
}
