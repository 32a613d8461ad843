package proc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gone: no such process, or a zombie nobody reaped yet.
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

// A worker killed with SIGKILL runs no code, yet its child (the group
// leader) dies with it: the kernel sends the parent-death signal.
func TestChildDiesWithKilledWorker(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^TestHelperWorker$")
	worker.Env = append(os.Environ(), "PROC_HELPER_DIR="+dir,
		"PROC_HELPER_SCRIPT=sleep 300 & echo $! > child; echo $$ > leader; wait")
	require.NoError(t, worker.Start())
	t.Cleanup(func() { _ = worker.Process.Kill(); _ = worker.Wait() })

	leader := readPID(t, filepath.Join(dir, "leader"))
	child := readPID(t, filepath.Join(dir, "child"))
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	require.False(t, gone(leader))

	require.NoError(t, worker.Process.Kill())
	_ = worker.Wait()
	require.Eventually(t, func() bool { return gone(leader) }, 5*time.Second, 10*time.Millisecond,
		"the child (pid %d) outlived its SIGKILLed parent", leader)
	// The kernel signals the direct child only: its own background child
	// is re-parented and lives on (see sysProcAttr).
	time.Sleep(100 * time.Millisecond)
	t.Logf("after the worker's SIGKILL: leader gone, its background child gone=%v", gone(child))
}
