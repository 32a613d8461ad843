// Package datadir lays out SANDO_DATA_DIR: worktrees, logs and staged
// artifacts, and opens a log_ref from the API so that no path — by "..",
// an absolute name, a symlink or a hard link, nor a race with a build
// swapping names — escapes the logs root.
package datadir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Layout is the tree under one data directory:
//
//	<root>/disk-id              this data dir's id (Identity)
//	<root>/worktrees/<run>/     the checkout a run builds in
//	<root>/logs/<run>/<step>.log
//	<root>/stage/<run>/         SANDO_STAGE_DIR
//	<root>/git-cache/           mirrors the worktrees borrow objects from
//	<root>/caches/              each pipeline's cache slots (package cache);
//	                            a run's worktree is a link to its slot's
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

// Caches holds every pipeline's cache slots (cache.Pool.Root).
func (l Layout) Caches() string { return filepath.Join(l.Root, "caches") }

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

// ErrBadRef is returned for any log_ref that is not a regular file of
// one link inside the logs root.
var ErrBadRef = errors.New("no such log")

// OpenLog opens a client's log_ref for reading, or returns ErrBadRef for
// anything but a regular file inside the logs root. A build can write in
// its log directory and swap names there while the API looks, so nothing
// is checked by its name and opened after: the root is opened as an
// os.Root, which walks each component itself and refuses any "..",
// absolute name or symlink that leaves the root, and the file opened is
// judged by fstat.
//
// A hard link in the logs directory to a file outside is, to any check of
// paths, a regular file inside the root. A log Sando writes (Create) has
// one name, while a file outside keeps its own name when linked in, so a
// file of more than one link is refused. Counting the links of the open
// file alone would race as well (opened through a link that is removed
// before the fstat, it shows one), so the name is first stat'ed through
// the root and must show a file of one link, which has then no name
// outside, and the file opened must be that same file.
func (l Layout) OpenLog(ref string) (*os.File, error) {
	if !validRef(ref) {
		return nil, ErrBadRef
	}
	root, err := os.OpenRoot(l.LogsRoot())
	if err != nil {
		return nil, ErrBadRef // no logs yet
	}
	defer root.Close() // the file opened stays open
	name := filepath.FromSlash(ref)
	before, err := root.Stat(name)
	if err != nil || !oneLink(before) {
		return nil, ErrBadRef
	}
	// O_NONBLOCK: a FIFO swapped in after the Stat is opened at once, not
	// waited on for a writer, and then refused. Reads of a regular file
	// ignore it.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, ErrBadRef
	}
	st, err := f.Stat()
	if err != nil || !sameOneLink(before, st) {
		_ = f.Close()
		return nil, ErrBadRef
	}
	// A stat racing an unlink may read the count already dropped: a hard
	// link to an outside file, being replaced, can show one link. The name
	// must still be this file, of one link and unchanged (ctime moves with
	// every link made or removed), after the open: only a file that had
	// one name throughout passes all three looks.
	after, err := root.Stat(name)
	if err != nil || !sameOneLink(st, after) || !bornInItsDir(root, name, f) {
		_ = f.Close()
		return nil, ErrBadRef
	}
	return f, nil
}

// bornInItsDir reports whether f was created no earlier than the
// directory it is opened from: a step's log is made in its run's log
// directory, after it, while a file that was there before the run (a
// secret a build would link in) is older. It holds where the filesystem
// keeps birth times; where it does not, the link checks above stand alone.
func bornInItsDir(root *os.Root, name string, f *os.File) bool {
	dir, err := root.Open(filepath.Dir(name))
	if err != nil {
		return false
	}
	defer dir.Close()
	fb, fok := birth(f)
	db, dok := birth(dir)
	return !fok || !dok || !fb.Before(db)
}

// sameOneLink reports whether a and b are one regular file of one link,
// whose inode did not change (ctime) between the two looks.
func sameOneLink(a, b os.FileInfo) bool {
	if !oneLink(a) || !oneLink(b) || !os.SameFile(a, b) {
		return false
	}
	sa, sb := a.Sys().(*syscall.Stat_t), b.Sys().(*syscall.Stat_t)
	return sa.Ctim == sb.Ctim
}

// validRef is the syntax of a log_ref: slash-separated names, none of
// them empty, "." or "..", no NUL and no backslash.
func validRef(ref string) bool {
	if ref == "" || strings.ContainsRune(ref, 0) || strings.HasPrefix(ref, "/") || strings.Contains(ref, "\\") {
		return false
	}
	for _, part := range strings.Split(ref, "/") {
		if part == ".." || part == "." || part == "" {
			return false
		}
	}
	return true
}

// oneLink reports whether st is a regular file with one name.
func oneLink(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && st.Mode().IsRegular() && sys.Nlink == 1
}

// Create opens a fresh log file for a step, making its directory.
func (l Layout) Create(run int64, step string) (*os.File, error) {
	p := l.LogPath(run, step)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	return os.Create(p)
}

// Identity is the id of this data dir, made on first use and kept in it
// (<root>/disk-id): workers that share the dir share the id, and with it
// the queue of the runs fetched on it.
func (l Layout) Identity() (string, error) {
	path := filepath.Join(l.Root, "disk-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(l.Root, 0o755); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	raw := make([]byte, 6)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw)
	// O_EXCL: of two workers starting on one new dir at once, one writes
	// the id and the other reads it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		for range 50 { // the winner may not have written it yet
			if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
				return strings.TrimSpace(string(b)), nil
			}
			time.Sleep(10 * time.Millisecond)
		}
		return "", fmt.Errorf("data dir: %s is empty", path)
	}
	if err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(id + "\n"); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	return id, nil
}
