package proc

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// readPID waits for a child to write its pid to a file.
func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			require.NoError(t, err)
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("child never wrote its pid")
	return 0
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	require.Eventually(t, func() bool { return !alive(pid) }, 5*time.Second, 20*time.Millisecond, "pid %d survived", pid)
}

func TestRunExitCodesAndOutput(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	res, err := Run(context.Background(), Spec{Args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Output: &out})
	require.NoError(t, err)
	require.Equal(t, 3, res.ExitCode)
	require.False(t, res.OK())
	require.Equal(t, "exit status 3", res.Describe(0))
	require.Equal(t, "out\nerr\n", out.String())

	res, err = Run(context.Background(), Spec{Args: []string{"true"}})
	require.NoError(t, err)
	require.True(t, res.OK())
}

func TestRunMissingBinary(t *testing.T) {
	t.Parallel()
	_, err := Run(context.Background(), Spec{Args: []string{"/nonexistent/binary"}})
	require.Error(t, err)
}

// A timeout kills the whole group: the shell and the grandchild it forked.
func TestTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	done := make(chan Result, 1)
	go func() {
		res, err := Run(context.Background(), Spec{
			Args:    []string{"sh", "-c", "sleep 60 & echo $! > " + pidFile + "; wait"},
			Timeout: 300 * time.Millisecond, Grace: 200 * time.Millisecond,
		})
		require.NoError(t, err)
		done <- res
	}()
	grandchild := readPID(t, pidFile)
	res := <-done
	require.True(t, res.TimedOut)
	require.Equal(t, "timed out after 300ms", res.Describe(300*time.Millisecond))
	waitGone(t, grandchild)
}

// Cancel (supersede, shutdown) kills the group even when it ignores SIGTERM.
func TestCancelKillsStubbornGroup(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	go func() {
		res, _ := Run(ctx, Spec{
			Args:  []string{"sh", "-c", "trap '' TERM; sh -c 'trap \"\" TERM; sleep 60' & echo $! > " + pidFile + "; wait"},
			Grace: 200 * time.Millisecond,
		})
		done <- res
	}()
	grandchild := readPID(t, pidFile)
	cancel()
	select {
	case res := <-done:
		require.True(t, res.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	waitGone(t, grandchild)
}

// A build that exits 0 but leaves a daemon behind does not leak it.
func TestBackgroundJobDoesNotOutliveStep(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	res, err := Run(context.Background(), Spec{
		Args: []string{"sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $! > " + pidFile},
	})
	require.NoError(t, err)
	require.True(t, res.OK())
	waitGone(t, readPID(t, pidFile))
}
