package gitfetch

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// repo makes a throwaway repository with two commits on main and a tag.
func repo(t *testing.T) (dir string, first, second string) {
	t.Helper()
	dir = t.TempDir()
	sh := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.email=t@e", "-c", "user.name=t"}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return strings.TrimSpace(string(out))
	}
	sh("init", "-q", "-b", "main")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "VERSION"), []byte("1.0.0\n"), 0o644))
	sh("add", ".")
	sh("commit", "-q", "-m", "one")
	first = sh("rev-parse", "HEAD")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "VERSION"), []byte("1.1.0\n"), 0o644))
	sh("commit", "-q", "-am", "two")
	sh("tag", "v1.1.0")
	sh("tag", "-a", "-m", "annotated", "v1.1.0-a")
	second = sh("rev-parse", "HEAD")
	return dir, first, second
}

func TestFetch(t *testing.T) {
	t.Parallel()
	src, first, second := repo(t)
	tests := []struct {
		desc    string
		want    Want
		sha     string
		version string
	}{
		{"branch", Want{Ref: "main"}, second, "1.1.0"},
		{"tag", Want{Ref: "v1.1.0"}, second, "1.1.0"},
		// An annotated tag is an object of its own: the answer is its commit.
		{"annotated tag", Want{Ref: "v1.1.0-a"}, second, "1.1.0"},
		{"full sha of an annotated tag", Want{SHA: tagObject(t, src, "v1.1.0-a")}, second, "1.1.0"},
		{"full sha of an older commit", Want{SHA: first}, first, "1.0.0"},
		{"abbreviated sha", Want{SHA: first[:8]}, first, "1.0.0"},
		{"upper-case sha", Want{SHA: strings.ToUpper(first)}, first, "1.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "wt")
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "stale"), 0o755)) // a leftover of a crashed fetch
			got, err := Fetch(context.Background(), Options{Repo: src, Dir: dir, Env: os.Environ()}, tt.want)
			require.NoError(t, err)
			require.Equal(t, tt.sha, got)
			v, err := os.ReadFile(filepath.Join(dir, "VERSION"))
			require.NoError(t, err)
			require.Equal(t, tt.version+"\n", string(v))
			require.NoDirExists(t, filepath.Join(dir, "stale"))
		})
	}
}

func TestFetchNotFound(t *testing.T) {
	t.Parallel()
	src, _, _ := repo(t)
	for _, want := range []Want{{Ref: "nope"}, {SHA: strings.Repeat("ab", 20)}, {SHA: "abcdef12"}} {
		_, err := Fetch(context.Background(), Options{Repo: src, Dir: filepath.Join(t.TempDir(), "wt"), Env: os.Environ()}, want)
		var nf *NotFoundError
		require.ErrorAs(t, err, &nf, "%+v: %v", want, err)
	}
}

func TestFetchBadRepoIsNotNotFound(t *testing.T) {
	t.Parallel()
	_, err := Fetch(context.Background(), Options{Repo: filepath.Join(t.TempDir(), "missing"), Dir: filepath.Join(t.TempDir(), "wt"), Env: os.Environ()}, Want{Ref: "main"})
	require.Error(t, err)
	var nf *NotFoundError
	require.NotErrorAs(t, err, &nf, "an unreachable repository may come back: it is retried, not final")
}

func TestRedact(t *testing.T) {
	t.Parallel()
	require.Equal(t, "fatal: repository 'https://***@git.example.com/app.git/' not found",
		Redact("fatal: repository 'https://ci:ghp_s3cret@git.example.com/app.git/' not found"))
	require.Equal(t, "no url here", Redact("no url here"))
	_, err := Fetch(context.Background(), Options{Repo: "http://user:tok3n@127.0.0.1:1/x.git", Dir: filepath.Join(t.TempDir(), "wt"), Env: os.Environ()}, Want{Ref: "main"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "tok3n")
}

func tagObject(t *testing.T, dir, tag string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", dir, "rev-parse", tag).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}
