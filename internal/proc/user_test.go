package proc

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// nobody is the user the tests switch to; they need root to switch.
func nobody(t *testing.T) *User {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	u, err := LookupUser("nobody")
	require.NoError(t, err)
	return u
}

func TestLookupUser(t *testing.T) {
	t.Parallel()
	root, err := LookupUser("root")
	require.NoError(t, err)
	require.Equal(t, &User{Name: "root", UID: 0, GID: 0, Groups: root.Groups, Home: root.Home}, root)
	byID, err := LookupUser("0")
	require.NoError(t, err)
	require.Equal(t, root, byID, "a uid in digits names the same user")
	for _, bad := range []string{"no-such-user-here", "4000000000", ""} {
		_, err := LookupUser(bad)
		require.EqualError(t, err, "no user by that name or uid on this host", "%q", bad)
	}
}

// A child run as a User has its uid, its gid and its groups only: none of
// root's, whose group 0 would open whatever root's group may read.
func TestRunAsUser(t *testing.T) {
	t.Parallel()
	u := nobody(t)
	var out bytes.Buffer
	res, err := Run(context.Background(), Spec{Args: []string{"sh", "-c", "id -u; id -g; id -G"}, Dir: "/", Output: &out, User: u})
	require.NoError(t, err)
	require.True(t, res.OK(), out.String())
	groups := strings.Trim(fmt.Sprint(u.Groups), "[]") // "65534" or "1000 27"
	require.Equal(t, fmt.Sprintf("%d\n%d\n%s\n", u.UID, u.GID, groups), out.String())
}

// Chown gives a whole tree away, symlinks themselves included, and touches
// nothing outside it: not a symlink's target, not a file with another
// name (a hard link) outside.
func TestChownStaysInTree(t *testing.T) {
	t.Parallel()
	u := nobody(t)
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	require.NoError(t, os.WriteFile(outside, []byte("x"), 0o644))
	tree := filepath.Join(base, "tree")
	for _, d := range []string{"a/b", "c"} {
		require.NoError(t, os.MkdirAll(filepath.Join(tree, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(tree, "a/b/file"), []byte("x"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(tree, "a/link")))
	require.NoError(t, os.Symlink(base, filepath.Join(tree, "c/dirlink")))
	require.NoError(t, os.Link(outside, filepath.Join(tree, "c/hardlink")))

	require.NoError(t, u.Chown(tree))
	owner := func(p string) uint32 {
		st, err := os.Lstat(p)
		require.NoError(t, err)
		return st.Sys().(*syscall.Stat_t).Uid
	}
	for _, p := range []string{"", "a", "a/b", "a/b/file", "a/link", "c", "c/dirlink"} {
		require.Equal(t, u.UID, owner(filepath.Join(tree, p)), "%s/%s", tree, p)
	}
	for _, p := range []string{outside, base, filepath.Join(tree, "c/hardlink")} {
		require.Zero(t, owner(p), "%s changed hands", p)
	}
	require.Error(t, u.Chown(filepath.Join(base, "missing")))
}
