package gitfetch

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sh runs git in dir and returns its trimmed output.
func sh(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), "git", append([]string{"-C", dir, "-c", "user.email=t@e", "-c", "user.name=t"}, args...)...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	return strings.TrimSpace(string(out))
}

// repo makes a throwaway repository with two commits on main and a tag.
func repo(t testing.TB) (dir string, first, second string) {
	t.Helper()
	dir = t.TempDir()
	sh := func(args ...string) string { return sh(t, dir, args...) }
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
		// HEAD is the repository's default branch (gitref refuses the
		// pseudo-refs such as FETCH_HEAD, which name the mirror's state).
		{"HEAD", Want{Ref: "HEAD"}, second, "1.1.0"},
		// An annotated tag is an object of its own: the answer is its commit.
		{"annotated tag", Want{Ref: "v1.1.0-a"}, second, "1.1.0"},
		{"full sha of an annotated tag", Want{SHA: tagObject(t, src, "v1.1.0-a")}, second, "1.1.0"},
		{"full sha of an older commit", Want{SHA: first}, first, "1.0.0"},
		{"abbreviated sha", Want{SHA: first[:8]}, first, "1.0.0"},
		{"upper-case sha", Want{SHA: strings.ToUpper(first)}, first, "1.0.0"},
	}
	// Without a cache, and through one cache that all cases share (in
	// parallel, in whatever order: hits and misses both).
	for _, cache := range []string{"", t.TempDir()} {
		t.Run(map[bool]string{true: "uncached", false: "cached"}[cache == ""], func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.desc, func(t *testing.T) {
					t.Parallel()
					dir := filepath.Join(t.TempDir(), "wt")
					require.NoError(t, os.MkdirAll(filepath.Join(dir, "stale"), 0o755)) // a leftover of a crashed fetch
					var log strings.Builder
					got, err := Fetch(context.Background(), Options{Repo: src, Dir: dir, Env: os.Environ(), Cache: cache, Log: &log}, tt.want)
					require.NoError(t, err)
					require.Equal(t, tt.sha, got)
					v, err := os.ReadFile(filepath.Join(dir, "VERSION"))
					require.NoError(t, err)
					require.Equal(t, tt.version+"\n", string(v))
					require.NoDirExists(t, filepath.Join(dir, "stale"))
					require.NotContains(t, log.String(), "without the cache")
				})
			}
		})
	}
}

func TestFetchNotFound(t *testing.T) {
	t.Parallel()
	src, _, _ := repo(t)
	for _, cache := range []string{"", t.TempDir()} {
		for _, want := range []Want{{Ref: "nope"}, {SHA: strings.Repeat("ab", 20)}, {SHA: "abcdef12"}} {
			var log strings.Builder
			_, err := Fetch(context.Background(), Options{Repo: src, Dir: filepath.Join(t.TempDir(), "wt"), Env: os.Environ(), Cache: cache, Log: &log}, want)
			var nf *NotFoundError
			require.ErrorAs(t, err, &nf, "cache %q, %+v: %v", cache, want, err)
			require.NotContains(t, log.String(), "without the cache", "a missing commit is final, with or without a cache")
		}
	}
}

// fetchOK fetches want into a new worktree and checks the commit id, the
// files and that the cache was not bypassed; it returns the worktree.
func fetchOK(t *testing.T, opts Options, want Want, sha, version string) string {
	t.Helper()
	opts.Dir = filepath.Join(t.TempDir(), "wt")
	var log strings.Builder
	opts.Log, opts.Env = &log, os.Environ()
	got, err := Fetch(context.Background(), opts, want)
	require.NoError(t, err, log.String())
	require.Equal(t, sha, got)
	v, err := os.ReadFile(filepath.Join(opts.Dir, "VERSION"))
	require.NoError(t, err)
	require.Equal(t, version+"\n", string(v))
	require.NotContains(t, log.String(), "without the cache")
	return opts.Dir
}

func TestFetchCacheHitNeedsNoRepository(t *testing.T) {
	t.Parallel()
	src, first, _ := repo(t)
	cache := t.TempDir()
	fetchOK(t, Options{Repo: src, Cache: cache}, Want{SHA: first}, first, "1.0.0")
	// The repository is gone, and a fetch into the mirror would wait for
	// this lock until the timeout: only a checkout from the mirror works.
	gone := src + ".gone"
	require.NoError(t, os.Rename(src, gone))
	t.Cleanup(func() { _ = os.Rename(gone, src) })
	unlock, err := lock(context.Background(), filepath.Join(cache, mirrorName(src)+".lock"))
	require.NoError(t, err)
	defer unlock()
	wt := fetchOK(t, Options{Repo: src, Cache: cache, Timeout: 5 * time.Second}, Want{SHA: strings.ToUpper(first)}, first, "1.0.0")
	require.Empty(t, sh(t, wt, "status", "--porcelain"))
}

func TestFetchCacheRefMoves(t *testing.T) {
	t.Parallel()
	src, _, second := repo(t)
	cache := t.TempDir()
	fetchOK(t, Options{Repo: src, Cache: cache}, Want{Ref: "main"}, second, "1.1.0")
	require.NoError(t, os.WriteFile(filepath.Join(src, "VERSION"), []byte("1.2.0\n"), 0o644))
	sh(t, src, "commit", "-q", "-am", "three")
	third := sh(t, src, "rev-parse", "HEAD")
	fetchOK(t, Options{Repo: src, Cache: cache}, Want{Ref: "main"}, third, "1.2.0")
}

func TestFetchCacheWorktreeHasHistory(t *testing.T) {
	t.Parallel()
	src, first, second := repo(t)
	for _, want := range []Want{{SHA: second}, {Ref: "main"}, {SHA: second[:10]}} {
		wt := fetchOK(t, Options{Repo: src, Cache: t.TempDir()}, want, second, "1.1.0")
		require.Equal(t, second[:7]+" two\n"+first[:7]+" one", sh(t, wt, "log", "--oneline", "--abbrev=7"), "%+v", want)
		require.Empty(t, sh(t, wt, "status", "--porcelain"), "%+v", want)
		require.NoFileExists(t, filepath.Join(wt, ".git", "shallow"), "%+v", want)
	}
}

// The mirror is readable by every user, as the worktrees borrowing its
// objects are: a build running as another user (SANDO_BUILD_USER) runs git
// log there. One made private by an older version is opened up.
func TestFetchCacheMirrorReadableByAll(t *testing.T) {
	t.Parallel()
	src, first, _ := repo(t)
	cache := t.TempDir()
	fetchOK(t, Options{Repo: src, Cache: cache}, Want{SHA: first}, first, "1.0.0")
	mirror := filepath.Join(cache, mirrorName(src))
	mode := func() fs.FileMode {
		st, err := os.Stat(mirror)
		require.NoError(t, err)
		return st.Mode().Perm()
	}
	require.Equal(t, fs.FileMode(0o755), mode())
	require.NoError(t, os.Chmod(mirror, 0o700))
	fetchOK(t, Options{Repo: src, Cache: cache}, Want{SHA: first}, first, "1.0.0")
	require.Equal(t, fs.FileMode(0o755), mode())
}

func TestFetchCacheConcurrent(t *testing.T) {
	t.Parallel()
	src, first, second := repo(t)
	cache := t.TempDir()
	wants := []struct {
		want         Want
		sha, version string
	}{
		{Want{SHA: first}, first, "1.0.0"},
		{Want{SHA: second}, second, "1.1.0"},
		{Want{Ref: "main"}, second, "1.1.0"},
		{Want{Ref: "v1.1.0-a"}, second, "1.1.0"},
		{Want{SHA: first[:9]}, first, "1.0.0"},
		{Want{SHA: first}, first, "1.0.0"},
		{Want{Ref: "v1.1.0"}, second, "1.1.0"},
		{Want{SHA: tagObject(t, src, "v1.1.0-a")}, second, "1.1.0"},
	}
	var wg sync.WaitGroup
	errs := make([]error, len(wants))
	for i, w := range wants {
		wg.Go(func() {
			dir := filepath.Join(t.TempDir(), "wt")
			var log strings.Builder
			got, err := Fetch(context.Background(), Options{Repo: src, Dir: dir, Env: os.Environ(), Cache: cache, Log: &log}, w.want)
			switch {
			case err != nil:
				errs[i] = err
			case got != w.sha:
				errs[i] = fmt.Errorf("got %s, want %s", got, w.sha)
			case strings.Contains(log.String(), "without the cache"):
				errs[i] = fmt.Errorf("cache bypassed: %s", log.String())
			default:
				v, err := os.ReadFile(filepath.Join(dir, "VERSION"))
				if err == nil && string(v) != w.version+"\n" {
					err = fmt.Errorf("VERSION %q, want %s", v, w.version)
				}
				errs[i] = err
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "%+v", wants[i].want)
	}
	entries, err := os.ReadDir(cache)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{mirrorName(src), mirrorName(src) + ".lock"}, names, "one mirror, no temporary left")
}

func TestFetchCacheBrokenFallsBack(t *testing.T) {
	t.Parallel()
	src, first, second := repo(t)
	for desc, breakIt := range map[string]func(mirror string){
		"garbage config": func(m string) {
			require.NoError(t, os.WriteFile(filepath.Join(m, "config"), []byte("[[[ not a config\n"), 0o644))
		},
		"mirror is a file": func(m string) {
			require.NoError(t, os.RemoveAll(m))
			require.NoError(t, os.WriteFile(m, []byte("x"), 0o644))
		},
	} {
		t.Run(desc, func(t *testing.T) {
			t.Parallel()
			cache := t.TempDir()
			fetchOK(t, Options{Repo: src, Cache: cache}, Want{SHA: first}, first, "1.0.0")
			breakIt(filepath.Join(cache, mirrorName(src)))
			for _, want := range []Want{{SHA: second}, {Ref: "main"}} {
				dir := filepath.Join(t.TempDir(), "wt")
				var log strings.Builder
				got, err := Fetch(context.Background(), Options{Repo: src, Dir: dir, Env: os.Environ(), Cache: cache, Log: &log}, want)
				require.NoError(t, err, log.String())
				require.Equal(t, second, got)
				require.Contains(t, log.String(), "without the cache")
				require.NoFileExists(t, filepath.Join(dir, ".git", "objects", "info", "alternates"))
			}
		})
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

	// With a cache, the URL appears in no error and no file name or content.
	cache := t.TempDir()
	var log strings.Builder
	_, err = Fetch(context.Background(), Options{Repo: "http://user:tok3n@127.0.0.1:1/x.git", Dir: filepath.Join(t.TempDir(), "wt"), Env: os.Environ(), Cache: cache, Log: &log}, Want{Ref: "main"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "tok3n")
	require.NotContains(t, log.String(), "tok3n")
	require.NoError(t, filepath.WalkDir(cache, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		require.NotContains(t, path, "127.0.0.1")
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NotContains(t, string(b), "127.0.0.1", path)
		}
		return nil
	}))
}

// A mirror that has a commit and its tree but lost a file's object: git
// checkout exits 0 without the file. The fetch must still give the file.
func TestFetchCacheMissingObject(t *testing.T) {
	t.Parallel()
	src, first, _ := repo(t)
	cache := t.TempDir()
	fetchOK(t, Options{Repo: src, Cache: cache}, Want{SHA: first}, first, "1.0.0")
	m := filepath.Join(cache, mirrorName(src))
	require.NoError(t, os.RemoveAll(filepath.Join(m, "objects")))
	require.NoError(t, os.MkdirAll(filepath.Join(m, "objects", "pack"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(m, "objects", "info"), 0o755))
	for _, obj := range []struct{ typ, id string }{{"commit", first}, {"tree", first + "^{tree}"}} {
		body, err := exec.CommandContext(context.Background(), "git", "-C", src, "cat-file", obj.typ, obj.id).Output()
		require.NoError(t, err)
		cmd := exec.CommandContext(context.Background(), "git", "-C", m, "hash-object", "-w", "-t", obj.typ, "--stdin")
		cmd.Stdin = strings.NewReader(string(body))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	dir := filepath.Join(t.TempDir(), "wt")
	var log strings.Builder
	got, err := Fetch(context.Background(), Options{Repo: src, Dir: dir, Env: os.Environ(), Cache: cache, Log: &log}, Want{SHA: first})
	require.NoError(t, err, log.String())
	require.Equal(t, first, got)
	v, err := os.ReadFile(filepath.Join(dir, "VERSION"))
	require.NoError(t, err, log.String())
	require.Equal(t, "1.0.0\n", string(v))
}

func TestFetchCacheWaitsForLockWithinTimeout(t *testing.T) {
	t.Parallel()
	src, _, second := repo(t)
	cache := t.TempDir()
	fetchOK(t, Options{Repo: src, Cache: cache}, Want{Ref: "main"}, second, "1.1.0")
	unlock, err := lock(context.Background(), filepath.Join(cache, mirrorName(src)+".lock"))
	require.NoError(t, err)
	defer unlock()
	var log strings.Builder
	t0 := time.Now()
	_, err = Fetch(context.Background(), Options{Repo: src, Dir: filepath.Join(t.TempDir(), "wt"), Env: os.Environ(), Cache: cache, Log: &log, Timeout: 300 * time.Millisecond}, Want{Ref: "main"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(t0), 3*time.Second)
	require.NotContains(t, log.String(), "without the cache", "a timeout is not a broken cache")
}

// BenchmarkFetch compares a fetch from the repository with a checkout of
// a full sha the cache already has, on a one-commit local repository.
func BenchmarkFetch(b *testing.B) {
	src := b.TempDir()
	sh(b, src, "init", "-q", "-b", "main")
	require.NoError(b, os.WriteFile(filepath.Join(src, "VERSION"), []byte("1.0.0\n"), 0o644))
	sh(b, src, "add", ".")
	sh(b, src, "commit", "-q", "-m", "one")
	sha := sh(b, src, "rev-parse", "HEAD")
	for _, bc := range []struct{ name, cache string }{{"uncached", ""}, {"cached-hit", b.TempDir()}} {
		b.Run(bc.name, func(b *testing.B) {
			opts := Options{Repo: src, Dir: filepath.Join(b.TempDir(), "wt"), Env: os.Environ(), Cache: bc.cache}
			if bc.cache != "" { // fill the cache: every timed fetch is a hit
				_, err := Fetch(context.Background(), opts, Want{SHA: sha})
				require.NoError(b, err)
			}
			for b.Loop() {
				got, err := Fetch(context.Background(), opts, Want{SHA: sha})
				if err != nil || got != sha {
					b.Fatal(got, err)
				}
			}
		})
	}
}

func tagObject(t *testing.T, dir, tag string) string {
	t.Helper()
	out, err := exec.CommandContext(context.Background(), "git", "-C", dir, "rev-parse", tag).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// A mirror half made by a process that died is removed once stale; one
// being made right now is left alone.
func TestFetchCacheRemovesStaleHalfMadeMirrors(t *testing.T) {
	t.Parallel()
	src, first, _ := repo(t)
	cache := t.TempDir()
	stale, fresh := filepath.Join(cache, "new-1.tmp"), filepath.Join(cache, "new-2.tmp")
	for _, dir := range []string{stale, fresh} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "objects"), 0o755))
	}
	long := time.Now().Add(-2 * staleAfter)
	require.NoError(t, os.Chtimes(stale, long, long))
	fetchOK(t, Options{Repo: src, Cache: cache}, Want{SHA: first}, first, "1.0.0")
	require.NoDirExists(t, stale)
	require.DirExists(t, fresh)
}
