package proc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// KillOrphans kills only the orphans of its scope: each test here has its
// own (a temporary directory), as each worker has its data dir.

// TestHelperWorker is not a test: it is a stand-in worker running
// PROC_HELPER_SCRIPT through Run, in PROC_HELPER_DIR.
func TestHelperWorker(t *testing.T) {
	dir := os.Getenv("PROC_HELPER_DIR")
	if dir == "" {
		t.Skip("only as a helper process")
	}
	SetScope(dir)
	_, _ = Run(context.Background(), Spec{Args: []string{"sh", "-c", os.Getenv("PROC_HELPER_SCRIPT")}, Dir: dir})
}

// TestHelperKillOrphans is not a test: it calls KillOrphans with whatever
// owner its environment names.
func TestHelperKillOrphans(t *testing.T) {
	if os.Getenv("PROC_HELPER_KILL_ORPHANS") == "" {
		t.Skip("only as a helper process")
	}
	_, err := KillOrphans(slog.New(slog.DiscardHandler), os.Getenv("PROC_HELPER_KILL_ORPHANS"))
	require.NoError(t, err)
}

// killAtEnd kills pid when the test ends, through a pidfd taken now, while
// it runs: a pid reused meanwhile is never hit.
func killAtEnd(t *testing.T, pid int) {
	t.Helper()
	p, err := os.FindProcess(pid)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Kill(); _ = p.Release() })
}

// waitExec waits for pid, forked by sh, to run cmd.
func waitExec(t *testing.T, pid int, cmd string) {
	t.Helper()
	require.Eventually(t, func() bool { return cmdline(pid) == cmd }, 5*time.Second, 5*time.Millisecond,
		"pid %d runs %q, not %q", pid, cmdline(pid), cmd)
}

// withoutOwner is this process's environment without the marker.
func withoutOwner() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, OwnerEnv+"=") })
}

// A worker killed with SIGKILL leaves its build's background jobs running;
// the next KillOrphans kills every one carrying its marker, and nothing
// else: not what cleared the marker (even in an orphan's group), not what
// a live owner started, not a process that never had the marker.
func TestKillOrphans(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^TestHelperWorker$")
	worker.Env = append(withoutOwner(), "PROC_HELPER_DIR="+dir, "PROC_HELPER_SCRIPT="+
		// orphans of the worker: a background job, a group of two led by one
		"sleep 300 & echo $! > bg\n"+
		"setsid sh -c 'echo $$ > group.leader; sleep 300 & echo $! > group.member; wait' &\n"+
		// unmarked, alone and in a group led by an orphan
		"env -u "+OwnerEnv+" sleep 300 & echo $! > unmarked\n"+
		"setsid sh -c 'echo $$ > mixed.leader; env -u "+OwnerEnv+" sleep 300 & echo $! > mixed.unmarked; wait' &\n"+
		"echo $$ > leader; wait")
	require.NoError(t, worker.Start())
	t.Cleanup(func() { _ = worker.Process.Kill(); _ = worker.Wait() })

	pids := map[string]int{}
	for _, name := range []string{"leader", "bg", "group.leader", "group.member", "unmarked", "mixed.leader", "mixed.unmarked"} {
		pids[name] = readPID(t, filepath.Join(dir, name))
		killAtEnd(t, pids[name])
	}
	for _, name := range []string{"bg", "group.member", "unmarked", "mixed.unmarked"} {
		waitExec(t, pids[name], "sleep 300") // until then env -u has not cleared anything
	}
	workerID := strconv.Itoa(worker.Process.Pid) + ":"
	require.True(t, strings.HasPrefix(readOwner(pids["bg"]), workerID), "a grandchild carries its worker's marker: %q", readOwner(pids["bg"]))
	require.Empty(t, readOwner(pids["unmarked"]))

	// What a live owner started: this test, through Run.
	liveFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_, _ = Run(ctx, Spec{Args: []string{"sh", "-c", "sleep 300 & echo $! > " + liveFile + "; wait"}})
	}()
	t.Cleanup(func() { cancel(); <-ran })
	live := readPID(t, liveFile)
	waitExec(t, live, "sleep 300")
	require.Equal(t, ownerID()+":"+currentScope(), readOwner(live))
	// A process that never had the marker.
	plain := exec.CommandContext(context.Background(), "sleep", "300")
	plain.Env = withoutOwner()
	require.NoError(t, plain.Start())
	t.Cleanup(func() { _ = plain.Process.Kill(); _ = plain.Wait() })

	require.NoError(t, worker.Process.Kill())
	_ = worker.Wait()
	require.Eventually(t, func() bool { return gone(pids["leader"]) }, 5*time.Second, 10*time.Millisecond,
		"the worker's direct child (pid %d) outlived it", pids["leader"])
	// The bug KillOrphans is for: the rest outlives the worker.
	for name, pid := range pids {
		require.Equal(t, name == "leader", gone(pid), "%s (pid %d) gone after the worker's SIGKILL", name, pid)
	}

	// Another scope's worker (another data dir) leaves them alone.
	killed, err := KillOrphans(slog.New(slog.DiscardHandler), dir+"-other")
	require.NoError(t, err)
	require.Zero(t, killed)
	require.False(t, gone(pids["bg"]))

	var logs bytes.Buffer
	killed, err = KillOrphans(slog.New(slog.NewTextHandler(&logs, nil)), dir)
	require.NoError(t, err)
	require.GreaterOrEqual(t, killed, 4, "logs:\n%s", logs.String())
	for _, name := range []string{"bg", "group.leader", "group.member", "mixed.leader"} {
		pid := pids[name]
		require.Eventually(t, func() bool { return gone(pid) }, 3*time.Second, 10*time.Millisecond, "orphan %s (pid %d) survived", name, pid)
		require.Contains(t, logs.String(), fmt.Sprintf("pid=%d ", pid))
	}
	require.Contains(t, logs.String(), `cmd="sleep 300" owner=`+workerID)

	time.Sleep(100 * time.Millisecond) // a wrong SIGKILL lands by now
	for name, pid := range map[string]int{"unmarked": pids["unmarked"], "mixed.unmarked": pids["mixed.unmarked"],
		"live owner's": live, "plain": plain.Process.Pid} {
		require.False(t, gone(pid), "%s process (pid %d) was killed", name, pid)
	}
}

// KillOrphans never kills its caller or the caller's parent, even when
// they carry a dead owner's marker (here: this process's pid with a wrong
// start time, which is also what a reused pid looks like).
func TestKillOrphansSparesItself(t *testing.T) {
	t.Parallel()
	scope := t.TempDir()
	self := exec.CommandContext(context.Background(), "sh", "-c", `"$0" -test.run='^TestHelperKillOrphans$'; exit $?`, os.Args[0])
	self.Env = append(withoutOwner(), "PROC_HELPER_KILL_ORPHANS="+scope, fmt.Sprintf("%s=%d:0:%s", OwnerEnv, os.Getpid(), scope))
	out, err := self.CombinedOutput()
	require.NoError(t, err, "%s", out)
}

func TestIsAlive(t *testing.T) {
	t.Parallel()
	require.True(t, isAlive(ownerID()))
	require.False(t, isAlive(strconv.Itoa(os.Getpid())+":0"), "pid reused: another start time")
	require.False(t, isAlive("2147483647:1"), "no such pid")
	for _, bad := range []string{"", "x", "12", "12:", ":3", "-1:3"} {
		require.True(t, isAlive(bad), "malformed %q counts as alive: never a reason to kill", bad)
	}
}

// Run replaces an inherited marker with its own, and with a nil Env passes
// the worker's environment as exec would (PWD included).
func TestRunMarksOwner(t *testing.T) {
	t.Parallel()
	script := `echo "$` + OwnerEnv + ` $PWD"; env | grep -c ^` + OwnerEnv + `=`
	var out bytes.Buffer
	res, err := Run(context.Background(), Spec{Args: []string{"sh", "-c", script}, Output: &out,
		Env: []string{"PATH=" + os.Getenv("PATH"), OwnerEnv + "=1:1", OwnerEnv + "=2:2"}})
	require.NoError(t, err)
	require.True(t, res.OK(), out.String())
	require.Regexp(t, `^\d+:\d+$`, ownerID())
	wd, err := os.Getwd()
	require.NoError(t, err)
	require.Equal(t, ownerID()+":"+currentScope()+" "+wd+"\n1\n", out.String())

	dir := t.TempDir()
	out.Reset()
	_, err = Run(context.Background(), Spec{Args: []string{"sh", "-c", script}, Output: &out, Dir: dir})
	require.NoError(t, err)
	require.Equal(t, ownerID()+":"+currentScope()+" "+dir+"\n1\n", out.String())
}
