package datadir

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	l := Layout{Root: root}
	f, err := l.Create(17, "gate-unit")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, "17/gate-unit.log", LogRef(17, "gate-unit"))

	secret := filepath.Join(root, "secret.txt")
	require.NoError(t, os.WriteFile(secret, []byte("x"), 0o600))
	require.NoError(t, os.Symlink(secret, filepath.Join(l.LogsRoot(), "17", "link.log")))
	require.NoError(t, os.Symlink("/etc", filepath.Join(l.LogsRoot(), "etc")))

	got, err := l.Resolve("17/gate-unit.log")
	require.NoError(t, err)
	require.Equal(t, "gate-unit.log", filepath.Base(got))

	for _, bad := range []string{
		"", "../secret.txt", "17/../../secret.txt", "/etc/passwd", "17/./gate-unit.log",
		"17//gate-unit.log", "17", "17/missing.log", "17/link.log", "etc/passwd", "a\x00b", `17\gate-unit.log`,
	} {
		_, err := l.Resolve(bad)
		require.ErrorIs(t, err, ErrBadRef, "%q", bad)
	}
}

func TestGitCache(t *testing.T) {
	t.Parallel()
	require.Equal(t, filepath.Join("data", "git-cache"), Layout{Root: "data"}.GitCache())
}
