// Package headline turns a failed step's output into the one-line
// "failure_summary" that CI machines read from Sando's API.
//
// Matching works on cleaned lines (see cleanLine: carriage-return progress
// frames collapsed, ANSI escapes removed, trimmed). Only the first 4 MiB of
// output are searched for a matching line, which bounds the work on huge logs
// (a compiler's first error is near the top); the fallback to the last lines
// always reads the real end of the output.
package headline

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

// Gate returns "<kind>: <first failing line>" for a red gate, or
// "<kind>: <fallback>" when no line of output looks like a failure
// (fallback is e.g. "exit status 1"), cut to MaxLen runes.
//
// Like Compile it takes two passes: lines naming a failing test, a panic or
// a compiler error (tests that do not build) beat weaker ones ("FAIL\tpkg",
// AssertionError, generic "error:"). If fallback is empty too, the last
// lines of output stand in for it; an empty kind drops the "<kind>: " prefix.
func Gate(kind string, output []byte, fallback string) string {
	line, ok := first(output,
		func(l string) bool { return testFailure.MatchString(l) || isCompilerError(l) },
		func(l string) bool { return weakFailure.MatchString(l) || isGenericError(l) })
	if !ok {
		line = oneLine(fallback)
	}
	if line == "" {
		line = tail(output)
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
