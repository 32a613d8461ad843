package tasks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/proc"
	"sando.dev/sando/internal/steps"
)

// What phase commands get of the worker's environment: none of its
// secrets; with a build user, that user's HOME, USER and LOGNAME.
func TestPhaseEnvKeepsSecretsOut(t *testing.T) {
	t.Parallel()
	worker := []string{"PATH=/bin", "HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8",
		"REDIS_URL=redis://:pw@r:6379", "SANDO_TOKEN=t", "SANDO_READ_TOKEN=rt", "SANDO_WEBHOOK_SECRET=ws",
		"SANDO_BUILD_USER=nobody", "SANDO_CONFIG=/etc/sando.yaml"}
	r := &Runner{BaseEnv: BaseEnv(worker)}
	require.Equal(t, []string{"PATH=/bin", "HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8"}, r.phaseBase())
	r.BuildUser = &proc.User{Name: "nobody", UID: 65534, GID: 65534, Home: "/data/home/nobody"}
	env := phaseEnv(r.phaseBase(), map[string]string{"CGO_ENABLED": "0"}, map[string]string{"SANDO_RUN_ID": "7"})
	require.Equal(t, []string{"PATH=/bin", "LANG=C.UTF-8", "HOME=/data/home/nobody", "USER=nobody", "LOGNAME=nobody",
		"CGO_ENABLED=0", "SANDO_RUN_ID=7"}, env)
	require.Len(t, r.BaseEnv, 5, "the worker's own base (for git) keeps its HOME")
}

// With a build user, phase commands run as that user with a HOME of their
// own on the data dir, in a worktree and stage dir handed to them, and
// git works there; the fetch stays the worker's.
func TestPhasesRunAsBuildUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	b := setup(t, `id -u; echo "$HOME $USER"; touch made-by-build; git log -1 --format=%H; echo x > "$SANDO_STAGE_DIR/artifact"`)
	ctx := context.Background()
	layout := b.runner.Layout

	// The test's temporary directories are private: no user could enter
	// the data dir, and BuildUser says so.
	_, err := BuildUser(ctx, "nobody", layout)
	require.ErrorContains(t, err, `SANDO_BUILD_USER="nobody" cannot reach SANDO_DATA_DIR `+layout.Root)
	top := filepath.Clean(os.TempDir()) + string(filepath.Separator)
	for dir := layout.Root; strings.HasPrefix(dir, top); dir = filepath.Dir(dir) {
		require.NoError(t, os.Chmod(dir, 0o755))
	}
	u, err := BuildUser(ctx, "65534", layout)
	require.NoError(t, err)
	require.Equal(t, layout.Home(u.Name), u.Home)
	st, err := os.Stat(u.Home)
	require.NoError(t, err)
	require.Equal(t, u.UID, st.Sys().(*syscall.Stat_t).Uid)
	require.Equal(t, os.ModeDir|0o700, st.Mode())
	b.runner.BuildUser = u

	id := newRun(t, b)
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: id})))
	wt, err := filepath.EvalSymlinks(layout.Worktree(id)) // its cache slot's
	require.NoError(t, err)
	require.Equal(t, uint32(0), owner(t, wt), "the fetch runs as the worker")
	queued := pendingOf(t, b, steps.Compile) // with what the fetch learned
	require.Len(t, queued, 1)
	require.NoError(t, b.runner.handle(ctx, asynq.NewTask(queued[0].Type, queued[0].Payload)))
	cur, err := b.store.Get(ctx, id)
	require.NoError(t, err)
	out, err := os.ReadFile(layout.LogPath(id, "compile"))
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("%d\n%s %s\n%s\n", u.UID, u.Home, u.Name, cur.SHA), string(out))
	for _, p := range []string{wt, filepath.Join(wt, ".git", "config"), filepath.Join(wt, "made-by-build"),
		layout.StageDir(id), filepath.Join(layout.StageDir(id), "artifact")} {
		require.Equal(t, u.UID, owner(t, p), p)
	}
	require.Zero(t, owner(t, layout.LogPath(id, "compile")), "the worker writes the logs")

	// The next run checks out in place, as the worker, the tree the build
	// user owns, and hands it over again.
	_, err = b.store.Pass(ctx, id)
	require.NoError(t, err)
	b.runner.Cleanup(id)
	next := newRun(t, b)
	require.NoError(t, b.runner.handle(ctx, task(steps.Fetch, steps.Payload{RunID: next})))
	again, err := filepath.EvalSymlinks(layout.Worktree(next))
	require.NoError(t, err)
	require.Equal(t, wt, again, "the second run reuses the slot")
	require.NoFileExists(t, filepath.Join(wt, "made-by-build"), "the in-place checkout cleans what the last build left")
	require.NoError(t, b.runner.handle(ctx, task(steps.Compile, steps.Payload{RunID: next})))
	out, err = os.ReadFile(layout.LogPath(next, "compile"))
	require.NoError(t, err)
	require.Contains(t, string(out), fmt.Sprintf("%d\n", u.UID))
}

func owner(t *testing.T, path string) uint32 {
	t.Helper()
	st, err := os.Lstat(path)
	require.NoError(t, err)
	return st.Sys().(*syscall.Stat_t).Uid
}

// A build user that does not exist is a config error naming the variable.
func TestBuildUserUnknown(t *testing.T) {
	t.Parallel()
	_, err := BuildUser(context.Background(), "no-such-user-here", datadir.Layout{Root: t.TempDir()})
	require.EqualError(t, err, `SANDO_BUILD_USER="no-such-user-here": no user by that name or uid on this host`)
}
