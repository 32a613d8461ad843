package gitfetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// The cache keeps one bare mirror per repository in Options.Cache. A
// worktree borrows the mirror's objects through .git/objects/info/alternates
// (no copy), so a commit the mirror already has is checked out with no
// fetch at all, and a new commit transfers only what the mirror lacks.
//
// The mirror is fetched into without --depth: it keeps the history, so
// fetches stay incremental and a worktree is a complete repository (git
// log, git describe work). gc.auto is 0 in it: the objects fetched by sha
// that no branch reaches are what worktrees borrow, and gc must not prune
// them.

// tipRef names the last object fetched into a mirror. A fetch offers the
// remote only what the mirror's refs reach as "have"s: without a ref, a
// mirror filled by sha alone would download the whole history again for
// every new commit.
const tipRef = "refs/sando/tip"

// fetchCached is Fetch through the mirror of opts.Repo in opts.Cache.
func fetchCached(ctx context.Context, opts Options, want Want) (string, error) {
	m, err := openMirror(ctx, opts)
	if err != nil {
		return "", err
	}
	wt := git{opts: opts}
	if err := m.prepare(ctx, wt); err != nil {
		return "", err
	}
	sha := strings.ToLower(want.SHA)
	var rev string // what to check out
	switch {
	case fullSHA.MatchString(sha):
		// A commit never changes: if the mirror has it, this checkout is
		// all there is to do. Its failure is the expected miss, so it
		// stays out of the fetch log.
		probe := wt
		probe.opts.Log = nil
		if err := checkout(ctx, probe, sha); err == nil {
			return head(ctx, wt)
		}
		if _, err := m.fetch(ctx, false, "+"+sha+":"+tipRef); err != nil {
			return "", notFound(err, "commit "+sha)
		}
		// A probe that failed midway (see checkout) may have moved HEAD
		// and left files missing, which a second checkout would keep:
		// start over. A reused worktree is not started over (its files
		// would all get new mtimes): its checkout is forced, which
		// writes every file that differs from the commit, missing ones
		// too.
		if !opts.Reuse {
			if err := m.newWorktree(ctx, wt); err != nil {
				return "", err
			}
		}
		rev = sha
	case sha != "":
		// As fetchDirect, into the mirror's own refs; --prune drops the
		// branches and tags the repository no longer has.
		if _, err := m.fetch(ctx, true, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"); err != nil {
			return "", err
		}
		out, err := m.git.run(ctx, "rev-parse", "-q", "--verify", "--end-of-options", sha+"^{commit}")
		if err != nil {
			return "", &NotFoundError{What: "commit " + sha}
		}
		rev = strings.TrimSpace(out)
	default:
		// A ref moves: always ask the repository.
		fetched, err := m.fetch(ctx, false, "+"+want.Ref+":"+tipRef)
		if err != nil {
			return "", notFound(err, "ref "+want.Ref)
		}
		if !fullSHA.MatchString(fetched) {
			return "", fmt.Errorf("FETCH_HEAD of the mirror names no object after fetching %s", want.Ref)
		}
		// Perhaps an annotated tag: the checkout peels it, head reads the commit.
		rev = fetched
	}
	if err := checkout(ctx, wt, rev); err != nil {
		return "", err
	}
	return head(ctx, wt)
}

var gitErrorLine = regexp.MustCompile(`(?m)^error: `)

// checkout checks out rev with HEAD detached. git checkout exits 0 even
// when it could not write a file for want of its object, saying so only
// on stderr: such a line is a failure here. It happens with a damaged
// mirror, and to a probe racing a fetch into the mirror, whose objects
// appear one by one (the probe then takes the miss path: no harm done).
//
// With Options.Reuse the checkout is forced over whatever the worktree
// holds (git rewrites only the files that differ, so the others keep
// their mtimes), and then every untracked and ignored file is removed.
func checkout(ctx context.Context, g git, rev string) error {
	args := []string{"checkout", "-q", "--detach", rev}
	if g.opts.Reuse {
		args = []string{"checkout", "-q", "--force", "--detach", rev}
	}
	out, err := g.run(ctx, args...)
	if err == nil && gitErrorLine.MatchString(out) {
		return &gitError{args: args, result: "incomplete", output: out}
	}
	if err == nil && g.opts.Reuse {
		_, err = g.run(ctx, "clean", "-q", "-ffdx")
	}
	return err
}

// prepare is newWorktree, except that with Options.Reuse a worktree that
// already is a repository is kept for an in-place checkout (its alternates
// are written again, in case the mirror moved).
func (m mirror) prepare(ctx context.Context, wt git) error {
	if wt.opts.Reuse {
		if st, err := os.Stat(filepath.Join(wt.opts.Dir, ".git", "objects", "info")); err == nil && st.IsDir() {
			return m.borrow(wt)
		}
	}
	return m.newWorktree(ctx, wt)
}

// newWorktree makes wt's directory an empty repository that borrows the
// mirror's objects: nothing is copied, and what the mirror fetches later
// is visible to it at once.
func (m mirror) newWorktree(ctx context.Context, wt git) error {
	if err := newWorktree(ctx, wt); err != nil {
		return err
	}
	return m.borrow(wt)
}

// borrow points wt's alternates at the mirror's objects.
func (m mirror) borrow(wt git) error {
	alternates := filepath.Join(wt.opts.Dir, ".git", "objects", "info", "alternates")
	return os.WriteFile(alternates, []byte(filepath.Join(m.dir, "objects")+"\n"), 0o644)
}

type mirror struct {
	dir string // absolute: the worktrees' alternates name it
	git git
}

// openMirror returns the mirror of opts.Repo, creating it if need be. Its
// name is a hash of the URL: the URL may hold a token, and it appears in
// no path and no config (every fetch names it on the command line).
func openMirror(ctx context.Context, opts Options) (mirror, error) {
	cache, err := filepath.Abs(opts.Cache)
	if err != nil {
		return mirror{}, err
	}
	dir := filepath.Join(cache, mirrorName(opts.Repo))
	m := mirror{dir: dir, git: git{opts: opts, dir: dir}}
	st, err := os.Stat(dir)
	switch {
	case err == nil && st.IsDir():
		if st.Mode().Perm()&0o005 != 0o005 {
			_ = os.Chmod(dir, 0o755) // made private by an older Sando: see below
		}
		return m, nil
	case err == nil:
		return m, fmt.Errorf("mirror %s is not a directory", dir)
	case !errors.Is(err, fs.ErrNotExist):
		return m, err
	}
	// Build it aside and rename it into place, so no fetch ever sees a
	// half-made mirror; if another fetch's rename wins, use theirs.
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return m, err
	}
	removeStale(cache)
	tmp, err := os.MkdirTemp(cache, "new-*.tmp")
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(tmp) // nothing left to remove once renamed
	// Readable by all, as the worktrees are: a build running as
	// SANDO_BUILD_USER reads its worktree's objects here (git log, git
	// describe). MkdirTemp makes it private.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return m, err
	}
	g := git{opts: opts, dir: tmp}
	g.opts.Log = nil
	for _, args := range [][]string{
		{"init", "-q", "--bare"},
		{"config", "gc.auto", "0"},
		// No "git maintenance run --auto" after each fetch: one process less.
		{"config", "maintenance.auto", "false"},
	} {
		if _, err := g.run(ctx, args...); err != nil {
			return m, err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if st, serr := os.Stat(dir); serr == nil && st.IsDir() {
			return m, nil
		}
		return m, err
	}
	return m, nil
}

// staleAfter is when a half-made mirror is surely not being made any more:
// making one takes three git processes.
const staleAfter = time.Hour

// removeStale removes what a process that died making a mirror left in
// cache. Best effort: another process may be removing it too.
func removeStale(cache string) {
	old, _ := filepath.Glob(filepath.Join(cache, "new-*.tmp"))
	for _, dir := range old {
		if st, err := os.Stat(dir); err == nil && time.Since(st.ModTime()) > staleAfter {
			_ = os.RemoveAll(dir)
		}
	}
}

// mirrorName is "<first 16 hex of sha256(repo)>.git".
func mirrorName(repo string) string {
	sum := sha256.Sum256([]byte(repo))
	return hex.EncodeToString(sum[:8]) + ".git"
}

// fetch fetches refspecs from the repository into the mirror and returns
// the first object FETCH_HEAD names ("" if none). Fetches into one mirror
// take turns: FETCH_HEAD and tipRef are shared. Checkouts need no turn.
func (m mirror) fetch(ctx context.Context, prune bool, refspecs ...string) (string, error) {
	unlock, err := lock(ctx, m.dir+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	args := []string{"fetch", "-q", "--no-tags"}
	if prune {
		args = append(args, "--prune")
	}
	args = append(append(args, "--", m.git.opts.Repo), refspecs...)
	if _, err := m.git.run(ctx, args...); err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(m.dir, "FETCH_HEAD"))
	if err != nil {
		return "", err
	}
	if len(b) < 40 {
		return "", nil
	}
	return string(b[:40]), nil
}

// lock takes an exclusive flock on path, polling so that the context (the
// fetch timeout) still applies while another fetch holds it. unlock
// closes the file; the file itself stays.
func lock(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
