package testrepo

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNewAndCommit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "repo")
	r, sha, err := New(dir, map[string]string{"VERSION": "1.0.0\n", "bin/run.sh": "echo hi\n"})
	require.NoError(t, err)
	require.Len(t, sha, 40)
	head, err := r.Git("rev-parse", "HEAD")
	require.NoError(t, err)
	require.Equal(t, sha, head)
	branch, err := r.Git("symbolic-ref", "--short", "HEAD")
	require.NoError(t, err)
	require.Equal(t, "main", branch)
	fi, err := os.Stat(filepath.Join(dir, "bin/run.sh"))
	require.NoError(t, err)
	require.NotZero(t, fi.Mode()&0o100, ".sh files are executable")
	files, err := r.Git("ls-files")
	require.NoError(t, err)
	require.Equal(t, "VERSION\nbin/run.sh", files)

	next, err := r.Commit(map[string]string{"VERSION": "1.0.1\n"}, "bump")
	require.NoError(t, err)
	require.NotEqual(t, sha, next)
	body, err := r.Git("show", "HEAD:VERSION")
	require.NoError(t, err)
	require.Equal(t, "1.0.1", body)

	empty, err := r.Commit(nil, "same tree")
	require.NoError(t, err, "nothing changed: an empty commit")
	require.NotEqual(t, next, empty)

	_, err = r.Git("rev-parse", "nonesuch")
	require.ErrorContains(t, err, "git [rev-parse nonesuch]")
}
