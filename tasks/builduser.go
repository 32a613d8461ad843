package tasks

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/proc"
)

// Phase commands as another user (SANDO_BUILD_USER), so that a build
// cannot read the worker's secrets: a process of another uid may not read
// the worker's /proc/<pid>/environ or memory, and root's would read them
// whatever the worker does. The worker keeps what is its own: it fetches
// (git may use its credentials), opens the step logs and keeps its HOME.
// The build user gets the run's worktree and stage dir, handed over
// before the first command, and a HOME of its own. The worker runs no git
// in a worktree once it is handed over (a refetch starts from an empty
// directory of its own), so git's "dubious ownership" check, which would
// refuse a repository owned by another uid, never meets one.

// BuildUser resolves SANDO_BUILD_USER (a user name or uid) for a worker on
// layout, once at start: the user and primary group phase commands run
// as, with a HOME they can write.
func BuildUser(ctx context.Context, nameOrUID string, layout datadir.Layout) (*proc.User, error) {
	u, err := proc.LookupUser(nameOrUID)
	if err != nil {
		return nil, fmt.Errorf("SANDO_BUILD_USER=%q: %w", nameOrUID, err)
	}
	// Compared as int64, not through uint32(euid): an out-of-range euid
	// (-1 off Unix) never wraps onto a real uid.
	if euid := os.Geteuid(); euid != 0 && int64(u.UID) != int64(euid) {
		return nil, fmt.Errorf("SANDO_BUILD_USER=%q: only a worker running as root can run builds as another user (this one runs as uid %d)", nameOrUID, euid)
	}
	// Not the worker's HOME: it holds what is the worker's own (git
	// credentials, ssh keys, its git config), and the build user could not
	// write it anyway. Nor the user's passwd entry (nobody's is
	// /nonexistent). A directory on the data dir, kept across runs, so what
	// tools cache under ~ survives like on a developer's machine.
	u.Home = layout.Home(u.Name)
	if err := os.MkdirAll(filepath.Dir(u.Home), 0o755); err != nil {
		return nil, fmt.Errorf("SANDO_BUILD_USER=%q: %w", nameOrUID, err)
	}
	if err := os.Mkdir(u.Home, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("SANDO_BUILD_USER=%q: %w", nameOrUID, err)
	}
	if err := os.Lchown(u.Home, int(u.UID), int(u.GID)); err != nil {
		return nil, fmt.Errorf("SANDO_BUILD_USER=%q: %w", nameOrUID, err)
	}
	// A data dir below a directory the user may not enter (a private
	// home, a test's temporary directory) fails every build's chdir: say
	// so now, once.
	var out bytes.Buffer
	res, err := proc.Run(ctx, proc.Spec{
		Args: []string{"sh", "-c", `cd "$0" && test -w "$1"`, layout.Root, u.Home},
		Dir:  "/", Env: []string{"PATH=" + os.Getenv("PATH")}, Output: &out, User: u, Timeout: 10 * time.Second,
	})
	if err == nil && !res.OK() {
		err = errors.New(cmp.Or(strings.TrimSpace(out.String()), res.Describe(10*time.Second)))
	}
	if err != nil {
		return nil, fmt.Errorf("SANDO_BUILD_USER=%q cannot reach SANDO_DATA_DIR %s (every directory above it must be searchable by that user): %w",
			nameOrUID, layout.Root, err)
	}
	return u, nil
}

// handOver gives the run's worktree (dir, its slot's), its cache dir and
// its stage dir to the build user, if any, before a command runs: the
// worktree, which the fetch checked out as the worker, and the cache, made
// by the worker, whole, once each (only the worker can give them away, and
// the top directory goes last: owned by the user means handed over whole),
// and the stage dir, made here if need be.
func (r *Runner) handOver(id int64, dir, cacheDir string) error {
	u := r.BuildUser
	if u == nil {
		return nil
	}
	for _, d := range []string{dir, cacheDir} {
		st, err := os.Lstat(d)
		if err != nil {
			return err
		}
		if st.Sys().(*syscall.Stat_t).Uid != u.UID {
			if err := u.Chown(d); err != nil {
				return fmt.Errorf("hand %s to SANDO_BUILD_USER: %w", d, err)
			}
		}
	}
	stage := r.Layout.StageDir(id)
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return err
	}
	return os.Lchown(stage, int(u.UID), int(u.GID))
}

// phaseBase is BaseEnv for a phase command: with a build user, with that
// user's HOME, USER and LOGNAME instead of the worker's.
func (r *Runner) phaseBase() []string {
	u := r.BuildUser
	if u == nil {
		return r.BaseEnv
	}
	env := make([]string, 0, len(r.BaseEnv)+3)
	for _, kv := range r.BaseEnv {
		k, _, _ := strings.Cut(kv, "=")
		if k != "HOME" && k != "USER" && k != "LOGNAME" {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+u.Home, "USER="+u.Name, "LOGNAME="+u.Name)
}
