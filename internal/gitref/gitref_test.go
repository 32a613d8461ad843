package gitref

import (
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestCheckSHA(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantErr string
	}{
		{"abc1234", ""},
		{"ABCDEF0", ""},
		{"0123456789abcdef0123456789abcdef01234567", ""},
		{"", `sha "": must be 7 to 40 hex characters, got 0`},
		{"abc123", `sha "abc123": must be 7 to 40 hex characters, got 6`},
		{strings.Repeat("a", 41), "must be 7 to 40 hex characters, got 41"},
		{"abc123g", `sha "abc123g": invalid character 'g' at offset 6 (want 0-9, a-f)`},
		{"-abc1234", "invalid character '-' at offset 0"},
		{"abc 1234", "invalid character ' '"},
		{"HEAD~1aa", "invalid character 'H'"},
	}
	for _, tt := range tests {
		err := CheckSHA(tt.in)
		if tt.wantErr == "" {
			require.NoError(t, err, tt.in)
		} else {
			require.ErrorContains(t, err, tt.wantErr, tt.in)
		}
	}
}

func TestCheckRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantErr string // full message when it starts with "ref ", else a substring
	}{
		{"main", ""},
		{"release/1.2", ""},
		{"v1.0.0", ""},
		{"refs/heads/main", ""},
		{"refs/tags/v1", ""},
		{"feature/JIRA-12_x+y", ""},
		{"a/-b", ""}, // only a leading '-' of the whole name can pose as an option
		{"@foo", ""},
		{"HEAD", ""}, // the pipeline repository's default branch
		{"MAIN", ""},
		{"refs/heads/FETCH_HEAD", ""},
		{"FETCH_HEAD", "is one of git's pseudo-refs"},
		{"ORIG_HEAD", "pseudo-refs"},
		{"CHERRY_PICK_HEAD", "pseudo-refs"},
		{"AUTO_MERGE", "pseudo-refs"},
		{"héllo", ""},
		{strings.Repeat("a", 255), ""},
		{"a..b", `ref "a..b": contains ".."`},
		{"", `ref "": empty`},
		{"@", `ref "@": is "@"`},
		{"-main", `ref "-main": starts with "-"`},
		{"/main", `ref "/main": starts with "/"`},
		{"main/", `ref "main/": ends with "/"`},
		{"main.", `ref "main.": ends with "."`},
		{"a//b", `ref "a//b": contains "//"`},
		{"a@{1}", `ref "a@{1}": contains "@{"`},
		{"main.lock", `ref "main.lock": component "main.lock" ends with ".lock"`},
		{"a.lock/b", `component "a.lock" ends with ".lock"`},
		{".hidden", `ref ".hidden": component ".hidden" starts with "."`},
		{"a/.b", `component ".b" starts with "."`},
		{"a b", `ref "a b": contains a space`},
		{"a\tb", `contains control character '\t'`},
		{"a\nb", `contains control character '\n'`},
		{"a\x7fb", `contains control character '\x7f'`},
		{"a~1", `contains '~'`},
		{"a^", `contains '^'`},
		{"a:b", `contains ':'`},
		{"a?", `contains '?'`},
		{"a*", `contains '*'`},
		{"a[b", `contains '['`},
		{`a\b`, `contains '\\'`},
		{"a;b", `contains shell metacharacter ';'`},
		{"$(id)", `contains shell metacharacter '$'`},
		{"a`b", "shell metacharacter '`'"},
		{"a|b", "shell metacharacter '|'"},
		{"a&b", "shell metacharacter '&'"},
		{"a>b", "shell metacharacter '>'"},
		{"a'b", `shell metacharacter '\''`},
		{"a\xffb", "not valid UTF-8"},
		{strings.Repeat("a", 256), "longer than 255 bytes"},
	}
	for _, tt := range tests {
		err := CheckRef(tt.in)
		switch {
		case tt.wantErr == "":
			require.NoError(t, err, "%q", tt.in)
		case strings.HasPrefix(tt.wantErr, "ref "):
			require.EqualError(t, err, tt.wantErr)
		default:
			require.ErrorContains(t, err, tt.wantErr, "%q", tt.in)
		}
	}
}

// gitCorpus holds names chosen to probe each check-ref-format rule edge.
var gitCorpus = []string{
	"main", "master", "HEAD", "FETCH_HEAD", "ORIG_HEAD", "release/1.2", "v1.0.0", "refs/heads/main",
	"refs/tags/v1", "a/b/c/d", "a-b", "a_b", "a+b", "a,b", "a=b", "a#b",
	"a%b", "a!b", "a{b}", "a}b", "@foo", "foo@", "a@b", "@/a", "a/@",
	"a.b", "a.b.c", "a/.b", ".a", "a/b.", "a.", "a..b", "a/..", "..",
	".", "a/./b", "a.lock", "a.lock/b", "a/b.lock", "a.locked", "lock",
	".lock", "a/lock", "a//b", "/a", "a/", "/", "@", "@{", "a@{b", "a@b{",
	"a{@", "a b", "a\tb", "a\x01b", "a\x7fb", "a~b", "a^b", "a:b", "a?b",
	"a*b", "a[b", "a]b", `a\b`, "a;b", "a$b", "a`b", "a|b", "a&b", "a<b",
	"a>b", "a(b", "a'b", `a"b`, "héllo", "日本/語", "a\xffb", "\xc3",
	"a/-b", "-a", "--help", strings.Repeat("x", 255), strings.Repeat("x", 256),
}

// sandoOnly reports whether s breaks a rule Sando adds on top of git's, the
// only legitimate reason for CheckRef to reject a name git accepts.
func sandoOnly(s string) bool {
	return len(s) > MaxRefLen || !utf8.ValidString(s) || strings.HasPrefix(s, "-") ||
		strings.ContainsAny(s, shellMeta) || isPseudoRef(s)
}

// gitAccepts runs the real git. ok is false when git cannot judge s: argv
// cannot carry NUL, and git's option parser would eat a leading '-'.
func gitAccepts(t testing.TB, s string) (accepted, ok bool) {
	t.Helper()
	if strings.HasPrefix(s, "-") || strings.Contains(s, "\x00") {
		return false, false
	}
	err := exec.CommandContext(context.Background(), "git", "check-ref-format", "--allow-onelevel", s).Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, true
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, true
	}
	t.Fatalf("git check-ref-format %q: %v", s, err)
	return false, false
}

func requireGit(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
}

func TestCheckRefMatchesGit(t *testing.T) {
	t.Parallel()
	requireGit(t)
	for _, s := range gitCorpus {
		gitOK, ok := gitAccepts(t, s)
		ours := CheckRef(s)
		if !ok {
			require.Error(t, ours, "%q", s)
			continue
		}
		if ours == nil {
			require.True(t, gitOK, "CheckRef accepts %q but git rejects it", s)
		} else if gitOK {
			require.True(t, sandoOnly(s), "CheckRef rejects %q (%v) which git accepts", s, ours)
		}
	}
}

var (
	hasGit = func() bool { _, err := exec.LookPath("git"); return err == nil }()
	// Whitespace is included: CheckRef must reject it even though it sits
	// outside shellMeta.
	unsafeChars = shellMeta + " \t\n\r"
)

func FuzzCheckRef(f *testing.F) {
	for _, s := range gitCorpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckRef(s) != nil {
			return
		}
		require.False(t, strings.ContainsAny(s, unsafeChars), "%q", s)
		require.False(t, strings.HasPrefix(s, "-"), "%q", s)
		// One exec per accepted input keeps throughput acceptable while
		// still checking every accepted name against the real rules.
		if hasGit {
			gitOK, ok := gitAccepts(t, s)
			require.True(t, ok && gitOK, "CheckRef accepts %q but git rejects it", s)
		}
	})
}

var shaRE = regexp.MustCompile(`^[0-9a-fA-F]{7,40}$`)

func FuzzCheckSHA(f *testing.F) {
	for _, s := range []string{"abc1234", "ABCDEF0", "", "abc123", "abc123g",
		"0123456789abcdef0123456789abcdef01234567", strings.Repeat("0", 41)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckSHA(s)
		require.Equal(t, shaRE.MatchString(s), err == nil, "%q: %v", s, err)
	})
}
