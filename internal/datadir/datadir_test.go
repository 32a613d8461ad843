package datadir

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestOpenLog(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	l := Layout{Root: root}
	_, err := l.OpenLog("17/gate-unit.log")
	require.ErrorIs(t, err, ErrBadRef, "no logs yet")
	f, err := l.Create(17, "gate-unit")
	require.NoError(t, err)
	_, err = f.WriteString("ok\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, "17/gate-unit.log", LogRef(17, "gate-unit"))

	secret := filepath.Join(root, "secret.txt")
	require.NoError(t, os.WriteFile(secret, []byte("x"), 0o600))
	require.NoError(t, os.Symlink(secret, filepath.Join(l.LogsRoot(), "17", "link.log")))
	require.NoError(t, os.Symlink("/etc", filepath.Join(l.LogsRoot(), "etc")))
	require.NoError(t, os.Link(secret, filepath.Join(l.LogsRoot(), "17", "hard.log")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(l.LogsRoot(), "17", "fifo.log"), 0o644))
	require.NoError(t, os.Symlink("gate-unit.log", filepath.Join(l.LogsRoot(), "17", "in.log")))

	// The log, also through a symlink that stays inside the root.
	for _, ref := range []string{"17/gate-unit.log", "17/in.log"} {
		got, err := l.OpenLog(ref)
		require.NoError(t, err, ref)
		st, err := got.Stat()
		require.NoError(t, err)
		want, err := os.Stat(l.LogPath(17, "gate-unit"))
		require.NoError(t, err)
		require.True(t, os.SameFile(want, st), "%s opens %s", ref, got.Name())
		b, err := io.ReadAll(got)
		require.NoError(t, err)
		require.Equal(t, "ok\n", string(b), ref)
		require.NoError(t, got.Close())
	}

	for _, bad := range []string{
		"", "../secret.txt", "17/../../secret.txt", "/etc/passwd", "17/./gate-unit.log",
		"17//gate-unit.log", "17", "17/missing.log", "17/link.log", "etc/passwd", "a\x00b", `17\gate-unit.log`,
		"17/hard.log", // a regular file inside, but the secret's inode: two links
		"17/fifo.log", // not a regular file, and not waited on for a writer
	} {
		done := make(chan error, 1)
		go func() {
			f, err := l.OpenLog(bad)
			if err == nil {
				_ = f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			require.ErrorIs(t, err, ErrBadRef, "%q", bad)
		case <-time.After(10 * time.Second):
			t.Fatalf("OpenLog(%q) hangs", bad)
		}
	}
}

func TestGitCache(t *testing.T) {
	t.Parallel()
	require.Equal(t, filepath.Join("data", "git-cache"), Layout{Root: "data"}.GitCache())
}

// Workers on one data dir share its id, whoever makes it first; another
// dir has another.
func TestIdentity(t *testing.T) {
	t.Parallel()
	l := Layout{Root: filepath.Join(t.TempDir(), "new")}
	ids := make(chan string, 8)
	for range 8 {
		go func() {
			id, err := l.Identity()
			if err != nil {
				id = "error: " + err.Error()
			}
			ids <- id
		}()
	}
	first := <-ids
	require.Regexp(t, `^[0-9a-f]{12}$`, first)
	for range 7 {
		require.Equal(t, first, <-ids)
	}
	other, err := Layout{Root: t.TempDir()}.Identity()
	require.NoError(t, err)
	require.NotEqual(t, first, other)
}
