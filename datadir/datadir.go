// Package datadir lays out SANDO_DATA_DIR: worktrees, logs and staged
// artifacts, and resolves a log_ref from the API so that no path — by
// "..", an absolute name or a symlink — escapes the logs root.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Layout is the tree under one data directory:
//
//	<root>/worktrees/<run>/     the checkout a run builds in
//	<root>/logs/<run>/<step>.log
//	<root>/stage/<run>/         SANDO_STAGE_DIR
//	<root>/git-cache/           mirrors the worktrees borrow objects from
//	<root>/home/<user>/         HOME of SANDO_BUILD_USER's phase commands
//
// Nothing secret is written here: a build may read all of it (see the
// README's Guarantees).
type Layout struct{ Root string }

func (l Layout) id(run int64) string { return strconv.FormatInt(run, 10) }

// Worktree is the checkout of one run.
func (l Layout) Worktree(run int64) string { return filepath.Join(l.Root, "worktrees", l.id(run)) }

// StageDir receives what the stage command puts there.
func (l Layout) StageDir(run int64) string { return filepath.Join(l.Root, "stage", l.id(run)) }

// GitCache holds one mirror per repository (gitfetch.Options.Cache).
// Worktrees borrow its objects: it must outlive them.
func (l Layout) GitCache() string { return filepath.Join(l.Root, "git-cache") }

// Home is the HOME phase commands get when they run as user (see
// tasks.BuildUser), kept across runs.
func (l Layout) Home(user string) string { return filepath.Join(l.Root, "home", user) }

// LogsRoot is the only directory /logs serves from.
func (l Layout) LogsRoot() string { return filepath.Join(l.Root, "logs") }

// LogDir holds all of one run's step logs.
func (l Layout) LogDir(run int64) string { return filepath.Join(l.LogsRoot(), l.id(run)) }

// LogRef names the log of one step ("fetch", "compile", "stage",
// "gate-unit") as the API shows it: "<run>/<step>.log".
func LogRef(run int64, step string) string {
	return strconv.FormatInt(run, 10) + "/" + step + ".log"
}

// LogPath is the file behind a LogRef made by this process.
func (l Layout) LogPath(run int64, step string) string {
	return filepath.Join(l.LogsRoot(), filepath.FromSlash(LogRef(run, step)))
}

// ErrBadRef is returned for any log_ref that is not a file under the
// logs root.
var ErrBadRef = errors.New("no such log")

// Resolve maps a client's log_ref to a file under the logs root, after
// resolving symlinks, or returns ErrBadRef.
func (l Layout) Resolve(ref string) (string, error) {
	if ref == "" || strings.ContainsRune(ref, 0) || strings.HasPrefix(ref, "/") || strings.Contains(ref, "\\") {
		return "", ErrBadRef
	}
	for _, part := range strings.Split(ref, "/") {
		if part == ".." || part == "." || part == "" {
			return "", ErrBadRef
		}
	}
	root, err := filepath.EvalSymlinks(l.LogsRoot())
	if err != nil {
		return "", ErrBadRef // no logs yet
	}
	p, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(ref)))
	if err != nil {
		return "", ErrBadRef
	}
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", ErrBadRef
	}
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() {
		return "", ErrBadRef
	}
	return p, nil
}

// Create opens a fresh log file for a step, making its directory.
func (l Layout) Create(run int64, step string) (*os.File, error) {
	p := l.LogPath(run, step)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	return os.Create(p)
}
