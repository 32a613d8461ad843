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

	"sando/internal/redistest"
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
	requireGone(t, pid, 10*time.Second)
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
	requireGone(t, pid, 10*time.Second)
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
	for _, key := range []string{"sando:{app}:runs", "asynq:{fetch}:completed", "asynq:{compile}:completed", "asynq:{gate}:completed"} {
		require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			if ok, err := n.Exists(ctx, key).Result(); err == nil && ok == 1 {
				owners[n.Options().Addr] = true
			}
			return nil
		}))
	}
	require.Greater(t, len(owners), 1, "the keys all landed on one master: not a real test of the cluster")
}
