package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/proc"
	"sando.dev/sando/internal/redistest"
)

// hostileScript is what a hostile gate tries, to read its worker's
// secrets; the gate sources it, so $PPID is the worker. It prints all it
// reads: the gate's log must hold none of the secrets.
const hostileScript = `owner=${SANDO_PROC_OWNER%%:*}
echo "== uid=$(id -u) gid=$(id -g) home=$HOME"
echo "== env"; env
echo "== /proc/$PPID/environ (the parent)"; tr '\0' '\n' < /proc/$PPID/environ
echo "== the owner, $owner"
for f in environ cmdline maps status; do echo "-- $f"; tr '\0' '\n' < /proc/$owner/$f; done
echo "== every process"
for d in /proc/[0-9]*; do
  for f in "$d"/environ "$d"/cmdline "$d"/task/*/environ; do
    [ -r "$f" ] && { echo "-- $f"; tr '\0' '\n' < "$f"; }
  done
done 2>/dev/null
data=$(dirname "$(dirname "$SANDO_WORKTREE")")
echo "== the data dir, $data"
find "$data" \( -path "$data/logs/*/gate-*" -o -name hooks -o -name objects \) -prune -o -type f -print 2>&1 | while read -r f; do
  echo "-- $f"; head -c 65536 "$f"; echo
done
echo "== done"
`

// A hostile build reads none of its worker's secrets: not REDIS_URL's
// password, SANDO_TOKEN, SANDO_READ_TOKEN or SANDO_WEBHOOK_SECRET, not
// through its environment, /proc/<worker pid>/environ, any process's
// environ or cmdline, nor any file of the data dir. Real binaries: a root
// worker with SANDO_BUILD_USER=nobody, and a worker running as nobody whose
// builds run as nobody too (only the worker being non-dumpable keeps them
// out there). Without SANDO_BUILD_USER a root worker's builds run as root
// and read everything: that is what the build user is for.
func TestHostileBuildReadsNoSecrets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it runs builds and a worker as nobody")
	}
	t.Parallel()
	nobody, err := proc.LookupUser("nobody")
	require.NoError(t, err)
	worker := buildCmd(t, "cmd/worker")
	require.NoError(t, os.Chmod(filepath.Dir(worker), 0o755)) // for the worker run as nobody

	for _, tc := range []struct {
		name      string
		asNobody  bool   // the worker runs as nobody, without SANDO_BUILD_USER
		buildUser string // SANDO_BUILD_USER of a root worker
	}{
		{name: "root worker, SANDO_BUILD_USER=nobody", buildUser: "nobody"},
		{name: "worker as nobody, builds as its uid", asNobody: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			secret := func(what string) string { return what + "-" + marker(t) }
			redisPass, token, readToken, hookSecret := secret("redispw"), secret("tok"), secret("readtok"), secret("whsec")
			markers := []string{redisPass, token, readToken, hookSecret}
			rs := redistest.StartAuth(t, redisPass)
			proj := newProject(t, map[string]string{"VERSION": "1.0.0\n", "hostile.sh": hostileScript})
			f := startFleet(t, proj, rs.URL(), `build: id -u > built-by; git log -1 --format=%H > head; echo compiled
stage: cp built-by head "$SANDO_STAGE_DIR/"
gates:
  - kind: hostile
    run: . ./hostile.sh
`, "SANDO_TOKEN="+token, "SANDO_READ_TOKEN="+readToken, "SANDO_WEBHOOK_SECRET="+hookSecret,
				"SANDO_BUILD_USER="+tc.buildUser)
			// Every directory from /tmp down to the data dir, the repository
			// and the pipeline file is the test's own and private: open them
			// to nobody, as a real data dir is.
			reachable(t, f.dataDir, proj.dir)
			cmd := exec.CommandContext(context.Background(), worker)
			cmd.Env = f.env
			cmd.Dir = "/"
			if tc.asNobody {
				home := filepath.Join(t.TempDir(), "home")
				reachable(t, home)
				for _, dir := range []string{f.dataDir, home} {
					require.NoError(t, os.MkdirAll(dir, 0o755))
					require.NoError(t, os.Chown(dir, int(nobody.UID), int(nobody.GID)))
				}
				// The repository is root's: git as nobody would refuse it
				// ("dubious ownership"), as the image's worker would without
				// its safe.directory.
				require.NoError(t, os.WriteFile(filepath.Join(home, ".gitconfig"), []byte("[safe]\n\tdirectory = *\n"), 0o644))
				cmd.Env = append(cmd.Env[:len(cmd.Env):len(cmd.Env)], "HOME="+home)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody.UID, Gid: nobody.GID, Groups: []uint32{}}}
			}
			w := f.startCmd("worker", cmd, "worker started")

			auth := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
			r := f.do("POST", "/rebuild", nil, auth(token))
			require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
			id := int(r.json(t)["run_id"].(float64))
			var view map[string]any
			require.Eventually(t, func() bool {
				r := f.do("GET", fmt.Sprintf("/runs/%d", id), nil, auth(readToken))
				view = r.json(t)
				return r.status == http.StatusOK && view["result"] != "building"
			}, 60*time.Second, 50*time.Millisecond)
			require.Equal(t, "passed", view["result"], "view: %v\nworker:\n%s", view, w.logs)

			r = f.do("GET", fmt.Sprintf("/logs/%d/gate-hostile.log", id), nil, auth(readToken))
			require.Equal(t, http.StatusOK, r.status)
			out := string(r.body)
			for _, m := range markers {
				require.NotContains(t, out, m, "a secret in the hostile gate's log:\n%s", out)
			}
			require.Contains(t, out, fmt.Sprintf("== uid=%d gid=%d home=", nobody.UID, nobody.GID), "the gate runs as nobody")
			if tc.buildUser != "" {
				require.Contains(t, out, "home="+filepath.Join(f.dataDir, "home", "nobody")+"\n", "with a HOME of its own")
			}
			require.Contains(t, out, "== done", "the whole script ran:\n%s", out)
			require.Contains(t, out, "Permission denied", "it tried:\n%s", out)
			require.Contains(t, out, "SANDO_RUN_ID=", "it printed its environment")

			// The build wrote its worktree (and ran git there) and its stage
			// dir; nothing on the data dir holds a secret.
			built, err := os.ReadFile(filepath.Join(f.dataDir, "stage", strconv.Itoa(id), "built-by"))
			require.NoError(t, err)
			require.Equal(t, fmt.Sprint(nobody.UID), strings.TrimSpace(string(built)))
			head, err := os.ReadFile(filepath.Join(f.dataDir, "stage", strconv.Itoa(id), "head"))
			require.NoError(t, err)
			require.Equal(t, view["sha"], strings.TrimSpace(string(head)), "git log in the worktree, as the build user")
			require.NoError(t, filepath.WalkDir(f.dataDir, func(path string, d fs.DirEntry, err error) error {
				if errors.Is(err, fs.ErrNotExist) { // the settled run's worktree going
					return nil
				}
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				b, err := os.ReadFile(path)
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				for _, m := range markers {
					require.NotContains(t, string(b), m, "a secret in %s", path)
				}
				return err
			}))
		})
	}
}

// marker is a string found nowhere but where the test puts it.
func marker(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// reachable opens each directory in paths (once made) and every directory
// above it up to the system's temporary directory to every user
// (searchable and readable): the test's temporary directories are private.
func reachable(t *testing.T, paths ...string) {
	t.Helper()
	top := filepath.Clean(os.TempDir())
	for _, p := range paths {
		require.NoError(t, os.MkdirAll(p, 0o755))
		for dir := filepath.Clean(p); strings.HasPrefix(dir, top+string(filepath.Separator)); dir = filepath.Dir(dir) {
			require.NoError(t, os.Chmod(dir, 0o755))
		}
	}
}
