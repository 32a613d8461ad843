// Package gitref validates commit ids and ref names supplied by users before
// they reach git's command line, where a malformed value could be parsed as
// an option, a revision expression or (if ever interpolated) shell syntax.
package gitref

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxRefLen matches the common filesystem NAME_MAX, so even a one-level ref
// fits in a loose ref file; git itself sets no limit.
const MaxRefLen = 255

// CheckSHA reports whether s is 7..40 hex characters (an abbreviated or full
// SHA-1 commit id). It returns an error describing what is wrong, nil when
// valid. Seven is git's default abbreviation; shorter ids are too ambiguous.
func CheckSHA(s string) error {
	if len(s) < 7 || len(s) > 40 {
		return fmt.Errorf("sha %q: must be 7 to 40 hex characters, got %d", s, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return fmt.Errorf("sha %q: invalid character %q at offset %d (want 0-9, a-f)", s, s[i], i)
		}
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// shellMeta is not forbidden by git, but Sando rejects it so an accepted ref
// stays inert even if some script interpolates it unquoted.
const shellMeta = ";$`|&<>()'\""

// CheckRef validates a branch or tag name ("main", "release/1.2",
// "refs/tags/v1") against git check-ref-format --allow-onelevel, plus Sando's
// own limits: no leading '-' (would be read as an option), at most MaxRefLen
// bytes, valid UTF-8 and no shell metacharacters. Every name it accepts is
// accepted by git; the reverse does not hold.
func CheckRef(s string) error {
	if p := refProblem(s); p != "" {
		return fmt.Errorf("ref %q: %s", s, p)
	}
	return nil
}

func refProblem(s string) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > MaxRefLen:
		return fmt.Sprintf("longer than %d bytes", MaxRefLen)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case s[0] == '-':
		return `starts with "-"`
	case s == "@":
		return `is "@"`
	case s[0] == '/':
		return `starts with "/"`
	case strings.HasSuffix(s, "/"):
		return `ends with "/"`
	case strings.HasSuffix(s, "."):
		return `ends with "."`
	case strings.Contains(s, ".."):
		return `contains ".."`
	case strings.Contains(s, "//"):
		return `contains "//"`
	case strings.Contains(s, "@{"):
		return `contains "@{"`
	case isPseudoRef(s):
		return "is one of git's pseudo-refs (FETCH_HEAD, ORIG_HEAD, …), which name the fetching " +
			`repository's own state, never the pipeline repository's: give a branch or tag, or "HEAD" for its default branch`
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("contains control character %q", c)
		case c == ' ':
			return "contains a space"
		case strings.IndexByte(`~^:?*[\`, c) >= 0:
			return fmt.Sprintf("contains %q", c)
		case strings.IndexByte(shellMeta, c) >= 0:
			return fmt.Sprintf("contains shell metacharacter %q", c)
		}
	}
	// Git applies these two per component, not just to the whole name.
	for _, comp := range strings.Split(s, "/") {
		if strings.HasPrefix(comp, ".") {
			return fmt.Sprintf("component %q starts with \".\"", comp)
		}
		if strings.HasSuffix(comp, ".lock") {
			return fmt.Sprintf("component %q ends with \".lock\"", comp)
		}
	}
	return ""
}

// isPseudoRef reports the names git keeps for a repository's own state
// (FETCH_HEAD, ORIG_HEAD, MERGE_HEAD, CHERRY_PICK_HEAD, AUTO_MERGE, …):
// git's root-ref syntax, one level of capitals and underscores, other
// than HEAD. A remote never serves them, and in Sando's mirror FETCH_HEAD
// is whatever was fetched last, so they are refused. HEAD itself stays:
// fetched from the pipeline's repository it is that repository's default
// branch.
func isPseudoRef(s string) bool {
	if s == "HEAD" || strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != "" {
		return false
	}
	return strings.HasSuffix(s, "_HEAD") || s == "AUTO_MERGE"
}
