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

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestHelperHarden is not a test: a stand-in worker holding a secret in
// its environment. It prints PR_GET_DUMPABLE before and after Harden (when
// PROC_HELPER_HARDEN=1), then what a child of its own uid reads of its
// /proc/<pid>/environ, as a build would.
func TestHelperHarden(t *testing.T) {
	if os.Getenv("PROC_HELPER_SECRET") == "" {
		t.Skip("only as a helper process")
	}
	before, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	require.NoError(t, err)
	if os.Getenv("PROC_HELPER_HARDEN") == "1" {
		require.NoError(t, Harden())
	}
	after, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	require.NoError(t, err)
	read, _ := exec.CommandContext(context.Background(), "sh", "-c", `cat /proc/$PPID/environ 2>&1`).Output()
	fmt.Printf("dumpable before=%d after=%d\nread: %s\n", before, after, read)
}

// After Harden the process is non-dumpable, and a process of its own uid
// (not root: root reads it anyway) can no longer read its environment from
// /proc/<pid>/environ. Each case runs in a process of its own, since
// Harden cannot be undone.
func TestHarden(t *testing.T) {
	t.Parallel()
	bin := os.Args[0]
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// As root the read succeeds whatever Harden does: run the stand-in
		// as nobody, from a copy of this binary nobody can reach.
		nobody, err := LookupUser("nobody")
		require.NoError(t, err)
		cred = &syscall.Credential{Uid: nobody.UID, Gid: nobody.GID, Groups: []uint32{}}
		bin = reachableCopy(t, bin)
	}
	for _, tc := range []struct {
		harden   string
		dumpable string
		secret   bool
	}{
		{harden: "0", dumpable: "before=1 after=1", secret: true}, // the bug: a build reads it
		{harden: "1", dumpable: "before=1 after=0", secret: false},
	} {
		t.Run("harden="+tc.harden, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(context.Background(), bin, "-test.run=^TestHelperHarden$")
			cmd.Dir = "/"
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PROC_HELPER_SECRET=hunter2-marker", "PROC_HELPER_HARDEN=" + tc.harden}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), "dumpable "+tc.dumpable+"\n")
			require.Equal(t, tc.secret, strings.Contains(string(out), "hunter2-marker"), "%s", out)
		})
	}
}

// reachableCopy copies the executable at path into a directory every user
// can reach (the test's own temporary directories are private).
func reachableCopy(t *testing.T, path string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sando-proc-test-") //nolint:usetesting // t.TempDir is below a private directory another user cannot enter
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	dst := filepath.Join(dir, filepath.Base(path))
	require.NoError(t, os.WriteFile(dst, b, 0o755))
	return dst
}
