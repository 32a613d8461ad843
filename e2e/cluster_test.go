package e2e

// Sando on a three-master Redis Cluster: REDIS_URL is the comma list of
// seeds. The run store's keys share one hash tag per pipeline (its Lua
// scripts build run keys from a prefix inside that slot); asynq keeps one
// slot per queue, so the queues spread over the masters.

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/redistest"
)

func TestClusterGreenSupersedeCancel(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	proj := newProject(t, map[string]string{"VERSION": "3.1.0\n"})
	dir := t.TempDir()
	slow := func(id int) { require.NoError(t, writeFile(filepath.Join(dir, fmt.Sprintf("slow-%d", id)))) }
	pidOf := func(id int) string { return filepath.Join(dir, fmt.Sprintf("pid-%d", id)) }
	s := startStack(t, proj, stackOpts{redisURL: c.URL(), pipeline: `name: app
build: |
  if [ -e ` + dir + `/slow-$SANDO_RUN_ID ]; then sleep 120 & echo $! > ` + dir + `/pid-$SANDO_RUN_ID; wait; fi
  echo built
gates:
  - kind: unit
    run: echo unit ok
  - kind: smoke
    run: echo smoke ok
`})

	// A green run, followed through long-polls: the events subscription
	// works on the cluster (a wait ends at the change, not at its end).
	id := s.rebuild("")
	for {
		r := s.get(fmt.Sprintf("/runs/%d", id))
		m := r.json(t)
		if m["result"] != "building" {
			require.Equal(t, "passed", m["result"], "view: %v", m)
			require.Equal(t, "3.1.0", m["version"])
			require.Equal(t, map[string]any{"unit": "passed", "smoke": "passed"}, gatesOf(m))
			break
		}
		start := time.Now()
		w := s.do("GET", fmt.Sprintf("/runs/%d?wait=20s", id), nil, map[string]string{"If-None-Match": r.header.Get("ETag")})
		require.Contains(t, []int{http.StatusOK, http.StatusNotModified}, w.status)
		require.Less(t, time.Since(start), 10*time.Second, "a long-poll waited past a change: no events on the cluster?")
	}

	// Supersede: the older run is aborted and its build killed.
	slow(id + 1)
	first := s.rebuild("")
	pid := waitPID(t, pidOf(first))
	killLater(t, pid)
	second := s.rebuild("")
	m := s.get(fmt.Sprintf("/runs/%d", first)).json(t)
	require.Equal(t, "aborted", m["result"])
	require.Equal(t, "superseded by a newer /rebuild", m["failure_summary"])
	requireGone(t, pid)
	require.Equal(t, "passed", s.waitTerminal(second)["result"])

	// Cancel, through asynq's Inspector on the cluster.
	slow(second + 1)
	third := s.rebuild("")
	pid = waitPID(t, pidOf(third))
	killLater(t, pid)
	canceled := time.Now()
	r := s.do("POST", fmt.Sprintf("/runs/%d/cancel", third), nil, nil)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.Equal(t, "canceled", r.json(t)["failure_summary"])
	requireGone(t, pid)
	// Well under the phase's 2 s watch: asynq's cancel message arrived.
	t.Logf("build killed %s after the cancel", time.Since(canceled).Round(time.Millisecond))

	// /state, /runs, Asynqmon and the metrics read the cluster too.
	st := s.get("/state").json(t)
	require.Equal(t, float64(second), st["deployed"].(map[string]any)["run_id"])
	require.Len(t, s.get("/runs").json(t)["runs"], 4)
	names := queueNames(t, s.mon("GET", "/monitoring/api/queues", nil))
	disk := diskQueue(t, s.dataDir)
	for _, q := range []string{"fetch", disk} {
		require.Contains(t, names, q)
	}
	metrics := string(s.get("/metrics").body)
	require.Contains(t, metrics, `asynq_queue_size{queue="`+disk+`"}`)
	require.Contains(t, metrics, "sando_runs_building 0")

	// The data really is spread: Sando's keys in one slot, the queues in
	// others, on more than one master.
	cc := c.ClusterClient(t)
	owners := map[string]bool{}
	ctx := context.Background()
	for _, key := range []string{"sando:{app}:runs", "asynq:{fetch}:completed", "asynq:{" + disk + "}:completed", "sando:{_fleet}:seq"} {
		require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			if ok, err := n.Exists(ctx, key).Result(); err == nil && ok == 1 {
				owners[n.Options().Addr] = true
			}
			return nil
		}))
	}
	require.Greater(t, len(owners), 1, "the keys all landed on one master: not a real test of the cluster")
}

// Two pipelines on a Redis Cluster: their keys carry different hash tags
// (so different slots, here on different masters), each pipeline's
// scripts stay in its slot, run ids stay unique across both through the
// fleet's own slot, and a rebuild of one never supersedes the other's.
func TestClusterTwoPipelines(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	proj := newProject(t, map[string]string{"VERSION": "3.1.0\n"})
	dir := t.TempDir()
	s := startStack(t, proj, stackOpts{redisURL: c.URL(), pipelines: map[string]string{
		// app's first build waits for a file the test writes.
		"app.yaml": "build: \"while [ ! -e " + dir + "/go ]; do sleep 0.05; done; echo built\"\n" +
			"gates:\n  - kind: unit\n    run: echo app ok\n    needs: []\n  - kind: lint\n    run: echo lint ok\n    needs: []\n",
		"docs.yaml": "build: echo built\ngates:\n  - kind: unit\n    run: echo docs ok\n",
	}})
	app := s.rebuild(`{"pipeline":"app"}`)
	s.waitRun(app, 20*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })
	docs1 := s.rebuild(`{"pipeline":"docs"}`)
	docs2 := s.rebuild(`{"pipeline":"docs"}`)
	require.Equal(t, []int{app + 1, app + 2}, []int{docs1, docs2}, "one id sequence for both pipelines")
	require.NoError(t, writeFile(filepath.Join(dir, "go")))
	for id, want := range map[int]string{app: "passed", docs2: "passed"} {
		m := s.waitTerminal(id)
		require.Equal(t, want, m["result"], "run %d: %v", id, m)
	}
	require.Equal(t, "aborted", s.waitTerminal(docs1)["result"], "docs's older run is superseded by docs's newer")
	m := s.get(fmt.Sprintf("/runs/%d", app)).json(t)
	require.Equal(t, "app", m["pipeline"])
	require.Equal(t, map[string]any{"unit": "passed", "lint": "passed"}, gatesOf(m), "app was never superseded by docs")
	r := s.get(fmt.Sprintf("/logs/%d/gate-unit.log", docs2))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "docs ok\n", string(r.body))

	cc := c.ClusterClient(t)
	ctx := context.Background()
	slot := func(key string) int64 { return cc.ClusterKeySlot(ctx, key).Val() }
	require.NotEqual(t, slot("sando:{app}:runs"), slot("sando:{docs}:runs"), "each pipeline has its own slot")
	owners := map[string]bool{}
	for _, key := range []string{"sando:{app}:runs", "sando:{docs}:runs"} {
		require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			if ok, err := n.Exists(ctx, key).Result(); err == nil && ok == 1 {
				owners[n.Options().Addr] = true
			}
			return nil
		}))
	}
	require.Len(t, owners, 2, "app's and docs's keys are on two masters (slots 6805 and 13556 of a three-master cluster)")
}
