package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unicode/utf8"
)

// OwnerEnv is the variable naming the worker that started a child
// through Run, as "<pid>:<starttime>:<scope>" (starttime is field 22 of
// /proc/<pid>/stat, so a reused pid does not pass for the dead owner; scope
// is what SetScope was given). Children inherit it, so whatever a build
// leaves in the background carries it too, and outlives its owner with
// it: KillOrphans finds those processes by it.
const OwnerEnv = "SANDO_PROC_OWNER"

var childScope atomic.Pointer[string]

// SetScope names what this process's children belong to: a worker passes
// its data dir, so the next worker on that data dir kills their leftovers
// (KillOrphans) and no other worker or test on the host touches them.
func SetScope(s string) { childScope.Store(&s) }

func currentScope() string {
	if s := childScope.Load(); s != nil {
		return *s
	}
	return ""
}

// ownerID is this process as an owner; "" when /proc cannot say.
var ownerID = sync.OnceValue(func() string {
	pid := os.Getpid()
	st, err := readStat(pid)
	if err != nil {
		return ""
	}
	return strconv.Itoa(pid) + ":" + st.start
})

// markOwner sets OwnerEnv to this process in cmd's environment,
// replacing a value inherited from whoever started this process.
func markOwner(cmd *exec.Cmd) {
	id := ownerID()
	if id == "" {
		return
	}
	var env []string
	if cmd.Env == nil {
		env = cmd.Environ() // what exec would pass: os.Environ(), PWD for Dir
	} else {
		env = slices.Clone(cmd.Env)
	}
	env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, OwnerEnv+"=") })
	cmd.Env = append(env, OwnerEnv+"="+id+":"+currentScope())
}

// KillOrphans SIGKILLs the processes this user can see whose OwnerEnv
// names scope and a process that no longer runs: what the builds of a worker killed
// with SIGKILL left in the background, which PDEATHSIG does not reach.
// A worker calls it at start. A process group whose every process is such
// an orphan is killed as a group, which also catches what forks during the
// scan. It never kills a process without the variable, one whose owner is
// alive (or cannot be told dead), itself or its ancestors, or a process in
// another pid namespace (a container's pids mean nothing here). Processes
// it cannot read are skipped. err is for a /proc it cannot list or a
// signal that failed; killed counts the orphans signalled even then.
//
// A process that cleared or rewrote its environment (env -i, sudo,
// setproctitle) carries no marker and is not found.
func KillOrphans(log *slog.Logger, scope string) (killed int, err error) {
	if log == nil {
		log = slog.Default()
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("proc: list /proc: %w", err)
	}
	self := os.Getpid()
	spared := map[int]bool{} // this process and its ancestors
	for pid := self; pid > 0 && !spared[pid]; {
		spared[pid] = true
		st, err := readStat(pid)
		if err != nil {
			break
		}
		pid = st.ppid
	}
	selfNS, _ := os.Readlink("/proc/self/ns/pid")

	type orphan struct {
		pid        int
		st         stat
		owner, cmd string
	}
	var orphans []orphan
	groups := map[int][]int{} // pgid: its live (non-zombie) members
	isOrphan := map[int]bool{}
	ownerAlive := map[string]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.state == 'Z' || st.state == 'X' {
			continue // gone, or a zombie nothing can kill
		}
		groups[st.pgid] = append(groups[st.pgid], pid)
		owner, ownerScope, _ := cutOwner(readOwner(pid))
		if owner == "" || ownerScope != scope || spared[pid] {
			continue
		}
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); ns != selfNS {
			continue
		}
		alive, seen := ownerAlive[owner]
		if !seen {
			alive = isAlive(owner)
			ownerAlive[owner] = alive
		}
		if !alive {
			orphans = append(orphans, orphan{pid, st, owner, cmdline(pid)})
			isOrphan[pid] = true
		}
	}

	var errs []error
	done := map[int]bool{}
	for _, o := range orphans {
		if o.pid != o.st.pgid || !allOrphans(groups[o.pid], isOrphan) {
			continue
		}
		// The group goes at once, leader included, while the leader (whose
		// pid names the group) is known to be the process scanned.
		err := withExact(o.pid, o.st.start, func() error { return syscall.Kill(-o.pid, syscall.SIGKILL) })
		if err != nil {
			if !exited(err) {
				errs = append(errs, fmt.Errorf("proc: kill group %d: %w", o.pid, err))
			}
			continue
		}
		for _, m := range groups[o.pid] {
			done[m] = true
		}
	}
	for _, o := range orphans {
		if !done[o.pid] {
			// Signalled through a pidfd held across the starttime check: a
			// process that reused the pid since the scan is never hit.
			p, err := os.FindProcess(o.pid)
			if err == nil {
				err = withExact(o.pid, o.st.start, func() error { return p.Signal(syscall.SIGKILL) })
				_ = p.Release() // only frees the handle; the signal's error is what counts
			}
			if err != nil {
				if !exited(err) {
					errs = append(errs, fmt.Errorf("proc: kill %d: %w", o.pid, err))
				}
				continue
			}
		}
		killed++
		log.Info("killed an orphan of a dead worker", "pid", o.pid, "cmd", o.cmd, "owner", o.owner)
	}
	return killed, errors.Join(errs...)
}

var errNotSame = errors.New("pid now names another process")

// exited: the process exited (or its pid was reused) before the signal.
func exited(err error) bool {
	return errors.Is(err, errNotSame) || errors.Is(err, os.ErrProcessDone) || errors.Is(err, syscall.ESRCH)
}

// withExact runs kill if pid is still the process started at start.
func withExact(pid int, start string, kill func() error) error {
	st, err := readStat(pid)
	if err != nil || st.start != start {
		return errNotSame
	}
	return kill()
}

func allOrphans(members []int, isOrphan map[int]bool) bool {
	for _, m := range members {
		if !isOrphan[m] {
			return false
		}
	}
	return true
}

// cutOwner splits an OwnerEnv value into its "<pid>:<starttime>" and its
// scope (which may hold colons itself).
func cutOwner(v string) (owner, scope string, ok bool) {
	pid, rest, ok1 := strings.Cut(v, ":")
	start, scope, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return v, "", false
	}
	return pid + ":" + start, scope, true
}

// isAlive reports whether owner ("<pid>:<starttime>") still runs. A
// malformed value or a /proc that cannot be read counts as alive: only a
// provably dead owner makes orphans.
func isAlive(owner string) bool {
	p, start, ok := strings.Cut(owner, ":")
	pid, err := strconv.Atoi(p)
	if !ok || err != nil || pid <= 0 || start == "" {
		return true
	}
	st, err := readStat(pid)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return false
	}
	if err != nil {
		return true
	}
	return st.start == start && st.state != 'Z' && st.state != 'X'
}

// readOwner is OwnerEnv from /proc/<pid>/environ (NUL-separated), "" when
// absent or unreadable (another user's process, one exiting, a zombie).
func readOwner(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return ""
	}
	prefix := []byte(OwnerEnv + "=")
	owner := ""
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, prefix); ok {
			owner = string(v) // the last one wins, as in getenv of most libcs
		}
	}
	return owner
}

// cmdline is /proc/<pid>/cmdline for a log line: spaces for NULs, cut short.
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	s := strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
	const limit = 120
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

type stat struct {
	state      byte
	ppid, pgid int
	start      string // starttime, clock ticks after boot
}

// readStat parses /proc/<pid>/stat.
func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	// Field 2, the command, is in parentheses and may hold spaces and
	// parentheses itself: the other fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("proc: /proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 20 || f[0] == "" {
		return stat{}, fmt.Errorf("proc: /proc/%d/stat: malformed", pid)
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgid, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return stat{}, fmt.Errorf("proc: /proc/%d/stat: malformed", pid)
	}
	return stat{state: f[0][0], ppid: ppid, pgid: pgid, start: f[19]}, nil
}
