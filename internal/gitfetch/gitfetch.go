// Package gitfetch checks out one commit of a repository into a fresh
// worktree with the git command line: argv only (never a shell), refs
// after "--", each git call in its own process group with a deadline.
package gitfetch

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"sando.dev/sando/internal/proc"
)

// Want is what to check out: a sha (7..40 hex), else a ref, already
// validated by the caller (gitref). With neither, Ref must be the branch.
type Want struct {
	SHA, Ref string
}

// Options for one fetch.
type Options struct {
	Repo    string    // URL or local path
	Dir     string    // worktree to (re)create
	Log     io.Writer // git's output, for the fetch log
	Env     []string  // environment for git (PATH, HOME, …)
	Timeout time.Duration
	// Cache is a directory of per-repository mirrors whose objects the
	// worktree borrows (see cache.go); empty: fetch from the repository
	// alone, every time.
	Cache string
	// Reuse: Dir may hold an earlier checkout (a cache slot's worktree).
	// With Cache, it is checked out in place, so files the new commit does
	// not change keep their mtimes, and every untracked or ignored file is
	// removed (git clean -ffdx): what an earlier build left in the
	// worktree never reaches this one. Without Cache, or if the in-place
	// checkout fails, Dir is made afresh as without Reuse.
	Reuse bool
}

// NotFoundError is a deterministic failure: the sha or ref does not exist
// in the repository. Retrying cannot help.
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string { return e.What + " not found in the repository" }

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Fetch recreates opts.Dir as a checkout of want and returns the full
// commit id. With a cache, see fetchCached; if the cache fails for any
// reason but a missing commit or ref, Fetch says so in opts.Log and
// fetches without it, so a broken cache never fails a build.
func Fetch(ctx context.Context, opts Options, want Want) (string, error) {
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	if opts.Cache != "" {
		sha, err := fetchCached(ctx, opts, want)
		var nf *NotFoundError
		if err == nil || errors.As(err, &nf) || ctx.Err() != nil {
			return sha, err
		}
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "gitfetch: the cached fetch failed (%v); fetching without the cache\n", err)
		}
	}
	return fetchDirect(ctx, opts, want)
}

// fetchDirect fetches from the repository into the worktree alone. A full
// sha or a ref is fetched shallowly; an abbreviated sha needs the branches
// and tags to resolve against.
func fetchDirect(ctx context.Context, opts Options, want Want) (string, error) {
	g := git{opts: opts}
	if err := newWorktree(ctx, g); err != nil {
		return "", err
	}
	sha := strings.ToLower(want.SHA)
	checkout := "FETCH_HEAD"
	switch {
	case fullSHA.MatchString(sha):
		if _, err := g.run(ctx, "fetch", "-q", "--depth=1", "--", opts.Repo, sha); err != nil {
			return "", notFound(err, "commit "+sha)
		}
	case sha != "":
		if _, err := g.run(ctx, "fetch", "-q", "--tags", "--", opts.Repo,
			"+refs/heads/*:refs/remotes/origin/*"); err != nil {
			return "", err
		}
		out, err := g.run(ctx, "rev-parse", "-q", "--verify", "--end-of-options", sha+"^{commit}")
		if err != nil {
			return "", &NotFoundError{What: "commit " + sha}
		}
		checkout = strings.TrimSpace(out)
	default:
		if _, err := g.run(ctx, "fetch", "-q", "--depth=1", "--", opts.Repo, want.Ref); err != nil {
			return "", notFound(err, "ref "+want.Ref)
		}
	}
	if _, err := g.run(ctx, "checkout", "-q", "--detach", checkout); err != nil {
		return "", err
	}
	return head(ctx, g)
}

// newWorktree makes g's directory an empty repository, removing whatever
// an earlier (perhaps crashed) fetch left there.
func newWorktree(ctx context.Context, g git) error {
	if err := os.RemoveAll(g.opts.Dir); err != nil {
		return err
	}
	if err := os.MkdirAll(g.opts.Dir, 0o755); err != nil {
		return err
	}
	_, err := g.run(ctx, "init", "-q")
	return err
}

// TreeOf is the id of the tree of commit sha, read in the worktree dir.
func TreeOf(ctx context.Context, opts Options, sha string) (string, error) {
	out, err := git{opts: opts}.run(ctx, "rev-parse", "-q", "--verify", "--end-of-options", sha+"^{tree}")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// head is the commit the worktree has checked out.
func head(ctx context.Context, g git) (string, error) {
	// A detached HEAD file holds the commit id itself: reading it spares a
	// git process, about a tenth of a no-op run's fetch here.
	if b, err := os.ReadFile(filepath.Join(g.opts.Dir, ".git", "HEAD")); err == nil {
		if head := strings.TrimSpace(string(b)); fullSHA.MatchString(head) {
			return head, nil
		}
	}
	out, err := g.run(ctx, "rev-parse", "HEAD")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// git's words for "no such object or ref": a permanent failure.
var notFoundWords = []string{
	"couldn't find remote ref", "not our ref", "unadvertised object",
	"no such remote ref", "did not match any", "unknown revision", "bad object",
}

func notFound(err error, what string) error {
	var ge *gitError
	if errors.As(err, &ge) {
		for _, w := range notFoundWords {
			if strings.Contains(ge.output, w) {
				return &NotFoundError{What: what}
			}
		}
	}
	return err
}

// git runs in dir, or in opts.Dir (the worktree) when dir is empty.
type git struct {
	opts Options
	dir  string
}

type gitError struct {
	args   []string
	result string
	output string
}

func (e *gitError) Error() string {
	msg := lastLine(e.output)
	if msg == "" {
		msg = e.result
	}
	return fmt.Sprintf("git %s: %s", e.args[0], Redact(msg))
}

var userinfo = regexp.MustCompile(`(://)[^/@\s]+@`)

// Redact hides credentials in URLs ("https://user:token@host/…"), so a
// repository URL with a token never reaches a failure summary or a log.
func Redact(s string) string { return userinfo.ReplaceAllString(s, "${1}***@") }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// run returns git's stdout; its stderr also goes to the fetch log.
func (g git) run(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	w := io.Writer(&out)
	if g.opts.Log != nil {
		w = io.MultiWriter(&out, g.opts.Log)
	}
	env := append(append([]string(nil), g.opts.Env...),
		"GIT_TERMINAL_PROMPT=0", // never wait for a password on a terminal
		"GIT_ASKPASS=true",
		"GIT_CONFIG_NOSYSTEM=1",
	)
	// The repository's credentials go through git's environment, never
	// its command line: the URL in args loses its userinfo.
	if bare, creds := splitCredentials(g.opts.Repo); creds != nil {
		args = slices.Clone(args)
		for i, a := range args {
			if a == g.opts.Repo {
				args[i] = bare
			}
		}
		env = append(env, creds...)
	}
	res, err := proc.Run(ctx, proc.Spec{
		Args: append([]string{"git", "-C", cmp.Or(g.dir, g.opts.Dir)}, args...),
		Env:  env, Output: w,
	})
	if err != nil {
		return "", err
	}
	if !res.OK() {
		if ctx.Err() != nil {
			return "", fmt.Errorf("git %s: %w", args[0], ctx.Err())
		}
		return "", &gitError{args: args, result: res.Describe(0), output: out.String()}
	}
	return out.String(), nil
}
