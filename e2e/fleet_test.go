package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/runstore"
	"sando.dev/sando/tasks"
)

// A fleet that shares only Redis: one API on a directory of three
// pipelines, three workers on three data dirs of their own. Every run
// passes whichever workers take its steps, gates with needs: [] run at the
// same time, a rebuild supersedes only inside its pipeline, every step's
// log is served through the API (also once every worker's disk is gone),
// and a worker killed for good leaves its run failed, saying so.
func TestFleetSharesOnlyRedis(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n", "slow": "x\n"})
	slowSHA := proj.git("rev-parse", "HEAD")
	proj.git("rm", "-q", "slow")
	proj.git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "fast")
	fastSHA := proj.git("rev-parse", "HEAD")

	dir := t.TempDir()
	cfg := filepath.Join(dir, "pipelines")
	require.NoError(t, os.MkdirAll(cfg, 0o755))
	gate := func(kind, extra string) string {
		return fmt.Sprintf("  - kind: %s\n    run: echo %s-out; sleep 1%s\n    needs: []\n", kind, kind, extra)
	}
	for name, body := range map[string]string{
		// Three gates of 1 s at once, then one that needs them all.
		"alpha": "build: echo alpha-built\ngates:\n" + gate("g1", "") + gate("g2", "") + gate("g3", "") +
			"  - kind: last\n    run: echo last-out\n    needs: [g1, g2, g3]\n",
		"beta": "build: \"true\"\ngates:\n  - kind: unit\n    run: \"echo 'FAIL: digest mismatch' >&2; exit 1\"\n",
		// A commit with a file "slow" builds for a minute: the one superseded.
		"gamma": "build: \"if test -e slow; then sleep 60; fi\"\ngates:\n  - kind: unit\n    run: \"true\"\n",
		// A gate that runs until its worker is killed.
		"delta": "build: \"true\"\ngates:\n  - kind: hang\n    run: \"echo $$ > " + filepath.Join(dir, "hang.pid") + "; sleep 300\"\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(cfg, name+".yaml"),
			[]byte("repo: "+proj.dir+"\n"+body), 0o644))
	}
	f := &fleet{t: t, dataDir: filepath.Join(dir, "api-data")}
	f.env = faultEnv("REDIS_URL="+rs.URL(), "SANDO_CONFIG="+cfg, "SANDO_DATA_DIR="+f.dataDir,
		"SANDO_ADDR=127.0.0.1:0", "SANDO_POLL_INTERVAL=10ms", "SANDO_SHUTDOWN_TIMEOUT=2s",
		"SANDO_LOG_LEVEL=debug", "SANDO_CONCURRENCY=3")
	f.startAPI()
	workers := map[string]*binProc{} // by data dir
	for i := range 3 {
		data := filepath.Join(dir, fmt.Sprintf("worker-%d", i))
		cmd := exec.CommandContext(context.Background(), buildCmd(t, "cmd/worker"))
		// No pipeline file: a worker builds from the definitions runs carry.
		cmd.Env = append(append([]string(nil), f.env...), "SANDO_DATA_DIR="+data, "SANDO_CONFIG="+filepath.Join(dir, "none"))
		workers[data] = f.startCmd(fmt.Sprintf("worker-%d", i), cmd, "worker started")
	}

	rebuild := func(body string) int { return f.rebuild(body) }
	alpha := rebuild(`{"pipeline":"alpha"}`)
	beta := rebuild(`{"pipeline":"beta"}`)
	slow := rebuild(`{"pipeline":"gamma","sha":"` + slowSHA + `"}`)
	f.waitRun(slow, 20*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })
	fast := rebuild(`{"pipeline":"gamma","sha":"` + fastSHA + `"}`)

	views := map[int]map[string]any{}
	for _, id := range []int{alpha, beta, slow, fast} {
		views[id] = f.waitTerminal(id)
	}
	require.Equal(t, "passed", views[alpha]["result"], "alpha: %v", views[alpha])
	require.Equal(t, "failed", views[beta]["result"])
	require.Equal(t, "unit: FAIL: digest mismatch", views[beta]["failure_summary"])
	require.Equal(t, "aborted", views[slow]["result"])
	require.Equal(t, "superseded by a newer /rebuild", views[slow]["failure_summary"])
	require.Equal(t, "passed", views[fast]["result"], "a supersede stays inside its pipeline: %v", views[fast])
	for id, want := range map[int]string{alpha: "alpha", beta: "beta", slow: "gamma", fast: "gamma"} {
		require.Equal(t, want, views[id]["pipeline"])
	}

	// alpha's three gates ran at the same time; last started after them.
	times := map[string][2]time.Time{}
	for _, g := range views[alpha]["gates"].([]any) {
		gm := g.(map[string]any)
		require.Equal(t, "passed", gm["status"], "%v", gm)
		times[gm["kind"].(string)] = [2]time.Time{parseTime(t, gm["started_at"]), parseTime(t, gm["finished_at"])}
	}
	for _, a := range []string{"g1", "g2", "g3"} {
		for _, b := range []string{"g1", "g2", "g3"} {
			require.True(t, times[a][0].Before(times[b][1]), "%s started before %s ended: %v", a, b, times)
		}
		require.False(t, times["last"][0].Before(times[a][1]), "last started after %s ended: %v", a, times)
	}

	// Every phase names its worker: each run's steps stayed on the data
	// dir that fetched it, and every step's log is served by the API.
	logs := map[string]string{}
	for _, id := range []int{alpha, beta, fast} {
		var where string
		for _, p := range views[id]["phases"].([]any) {
			pm := p.(map[string]any)
			w, _ := pm["worker"].(string)
			require.NotEmpty(t, w, "run %d phase %v", id, pm)
			if where == "" {
				where = w
			}
			require.Equal(t, where, w, "run %d: every step on the data dir that fetched it", id)
			if ref, ok := pm["log_ref"].(string); ok {
				logs[ref] = ""
			}
		}
		for _, g := range views[id]["gates"].([]any) {
			if ref, ok := g.(map[string]any)["log_ref"].(string); ok {
				logs[ref] = ""
			}
		}
	}
	logs[fmt.Sprintf("%d/compile.log", alpha)] = "alpha-built"
	logs[fmt.Sprintf("%d/gate-g2.log", alpha)] = "g2-out"
	logs[fmt.Sprintf("%d/gate-unit.log", beta)] = "FAIL: digest mismatch"
	readAll := func() {
		for ref, want := range logs {
			r := f.get("/logs/" + ref)
			require.Equal(t, http.StatusOK, r.status, "%s: %s", ref, r.body)
			require.Contains(t, string(r.body), want, ref)
		}
		r := f.do("GET", "/logs/"+fmt.Sprintf("%d/compile.log", alpha), nil, map[string]string{"Range": "bytes=0-4"})
		require.Equal(t, http.StatusPartialContent, r.status)
		require.Equal(t, "alpha", string(r.body))
	}
	readAll()
	for data := range workers {
		require.NoError(t, os.RemoveAll(filepath.Join(data, "logs")), "the disks' copies go")
	}
	readAll() // served from Redis

	// A worker killed for good: its run is failed within two sweeps of the
	// janitor once its step and its data dir have been silent (here
	// backdated, rather than waited for), saying the worker was lost.
	hang := rebuild(`{"pipeline":"delta"}`)
	m := f.waitRun(hang, 20*time.Second, "gating", func(m map[string]any) bool {
		g, _ := m["gates"].([]any)
		return len(g) == 1 && g[0].(map[string]any)["status"] == nil
	})
	waitPID(t, filepath.Join(dir, "hang.pid"))
	phases := m["phases"].([]any)
	worker := phases[len(phases)-1].(map[string]any)["worker"].(string)
	victim := workers[worker[strings.Index(worker, ":")+1:]]
	require.NotNil(t, victim, "the worker %s", worker)
	victim.kill()

	ctx := context.Background()
	rdb := rs.Client(t)
	key := runstore.NewKeys("delta").Run(int64(hang))
	disk := rdb.HGet(ctx, key, "disk").Val()
	long := time.Now().Add(-2 * time.Minute)
	require.NoError(t, rdb.HSet(ctx, key, "progress_at", long.UTC().Format("2006-01-02T15:04:05.000Z07:00")).Err())
	require.NoError(t, rdb.ZAdd(ctx, runstore.FleetKeys{}.Disks(), redis.Z{Score: float64(long.UnixMilli()), Member: disk}).Err())
	client, _ := asynqOf(t, asynq.RedisClientOpt{Addr: rs.Addr})
	for i := range 2 { // two sweeps, as two windows of the janitor
		require.NoError(t, tasks.EnqueueJanitor(ctx, client, time.Now().Add(time.Hour+time.Duration(i)*tasks.JanitorInterval)))
		time.Sleep(time.Second)
	}
	m = f.waitRun(hang, 20*time.Second, "terminal", func(m map[string]any) bool { return m["result"] != "building" })
	require.Equal(t, "failed", m["result"])
	require.Regexp(t, `^gating: worker lost \(.+, silent for 2m\d+s\); rebuild to run it elsewhere$`, m["failure_summary"])
	require.Equal(t, map[string]any{"hang": "blocked"}, gatesOf(m), "no gate is left in flight")
}

func parseTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "a time: %v", v)
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return ts
}
