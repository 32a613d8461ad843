package e2e

// The fault suite (SPEC "What a run must survive"): real sando-api and
// sando-worker binaries on a real redis-server, killed, stopped and cut
// off from Redis mid-run. Every test is bounded in time and kills what it
// started.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/internal/testproc"
	"sando.dev/sando/tasks"
)

// binProc is one sando-api or sando-worker process a test started.
type binProc struct {
	*testproc.Proc
	t    *testing.T
	logs *testproc.Buffer
}

// fleet is an API and workers as separate processes sharing one Redis,
// one pipeline file and one data dir, as in production.
type fleet struct {
	*stack
	t       *testing.T
	env     []string
	api     *binProc
	procs   []*binProc
	dataDir string
	pl      *pipeline.Pipeline
}

// faultEnv is the environment of every process: the test's, without any
// Sando or Redis setting it may carry, plus the fleet's.
func faultEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SANDO_") || strings.HasPrefix(kv, "REDIS_URL=") || strings.HasPrefix(kv, "PORT=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// startFleet writes the pipeline, then starts the API binary. Workers are
// started by the test (startWorker), so it decides which one runs what.
func startFleet(t *testing.T, proj *project, redisURL, pipelineYAML string, extraEnv ...string) *fleet {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sando.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("name: app\nrepo: "+proj.dir+"\n"+pipelineYAML), 0o644))
	pl, err := pipeline.Load(cfgPath)
	require.NoError(t, err)
	f := &fleet{t: t, dataDir: filepath.Join(dir, "data"), pl: pl}
	f.env = faultEnv(append([]string{
		"REDIS_URL=" + redisURL, "SANDO_CONFIG=" + cfgPath, "SANDO_DATA_DIR=" + f.dataDir,
		"SANDO_ADDR=127.0.0.1:0", "SANDO_POLL_INTERVAL=10ms", "SANDO_SHUTDOWN_TIMEOUT=2s",
		"SANDO_LOG_LEVEL=debug", "SANDO_CONCURRENCY=2",
	}, extraEnv...)...)
	f.startAPI()
	return f
}

// startAPI starts the fleet's API binary; every process of the fleet is
// killed when the test ends, their last log lines shown if it failed.
func (f *fleet) startAPI() {
	f.t.Helper()
	f.api = f.start("api", buildCmd(f.t, "cmd/api"), "api listening")
	f.stack = &stack{t: f.t, base: "http://" + f.api.Addr, dataDir: f.dataDir, logs: &testproc.Buffer{}}
	f.t.Cleanup(func() {
		for _, p := range f.procs {
			p.kill()
		}
		if f.t.Failed() {
			for _, p := range f.procs {
				f.t.Logf("--- %s (pid %d) logs, last lines:\n%s", p.Name, p.PID(), lastLines(p.logs.String(), 60))
			}
		}
	})
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// startWorker starts one more sando-worker and waits until it serves.
func (f *fleet) startWorker(name string) *binProc {
	f.t.Helper()
	return f.start(name, buildCmd(f.t, "cmd/worker"), "worker started")
}

// start runs bin with the fleet's environment until the line with msg
// ready appears in its JSON log.
func (f *fleet) start(name, bin, ready string) *binProc {
	f.t.Helper()
	cmd := exec.CommandContext(context.Background(), bin)
	cmd.Env = f.env
	return f.startCmd(name, cmd, ready)
}

// startCmd is start for a command the caller made (another user, another
// environment).
func (f *fleet) startCmd(name string, cmd *exec.Cmd, ready string) *binProc {
	f.t.Helper()
	logs := &testproc.Buffer{}
	p, err := testproc.Start(cmd, testproc.Options{Name: name, Log: logs, Ready: testproc.Msg(ready), Timeout: 20 * time.Second})
	require.NoError(f.t, err, "%s logs:\n%s", name, logs)
	bp := &binProc{Proc: p, t: f.t, logs: logs}
	f.procs = append(f.procs, bp)
	return bp
}

// kill -9, and wait for the exit.
func (p *binProc) kill() {
	if !p.Kill(10 * time.Second) {
		p.t.Errorf("%s (pid %d) did not die of SIGKILL", p.Name, p.PID())
	}
}

// waitExit waits for the process to end by itself (after a signal).
func (p *binProc) waitExit(d time.Duration) error {
	p.t.Helper()
	exited, err := p.WaitExit(d)
	if !exited {
		p.t.Fatalf("%s (pid %d) still running %s after the signal:\n%s", p.Name, p.PID(), d, p.logs)
	}
	return err
}

// killLater makes sure a build process a test provoked dies with the test.
func killLater(t *testing.T, pids ...int) {
	t.Helper()
	t.Cleanup(func() {
		for _, pid := range pids {
			if pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

func pidAlive(pid int) bool { return syscall.Kill(pid, 0) == nil && !isZombie(pid) }

// readPIDFile waits for a pid file written by a build step ("<pid>\n").
func readPIDFile(t *testing.T, path string) int {
	t.Helper()
	pid := waitPID(t, path)
	killLater(t, pid)
	return pid
}

// asynqOf opens an asynq client and inspector on the fleet's Redis.
func asynqOf(t *testing.T, opt asynq.RedisConnOpt) (*asynq.Client, *asynq.Inspector) {
	t.Helper()
	c, i := asynq.NewClient(opt), asynq.NewInspector(opt)
	t.Cleanup(func() { _ = c.Close(); _ = i.Close() })
	return c, i
}

// expireLease makes asynq see a task's lease as long expired, as it
// would 60 s after its worker died (asynq's recoverer takes tasks whose
// lease ended 30 s ago; a lease lasts 30 s). The next recoverer run (a
// worker's start) hands the task to a worker again.
func expireLease(t *testing.T, rdb redis.UniversalClient, queue, taskID string) {
	t.Helper()
	n, err := rdb.ZAddXX(context.Background(), "asynq:{"+queue+"}:lease",
		redis.Z{Score: float64(time.Now().Add(-2 * time.Minute).Unix()), Member: taskID}).Result()
	require.NoError(t, err)
	_ = n // ZADD XX answers 0 for an update
	score, err := rdb.ZScore(context.Background(), "asynq:{"+queue+"}:lease", taskID).Result()
	require.NoError(t, err, "task %s holds no lease in queue %s", taskID, queue)
	require.Less(t, score, float64(time.Now().Add(-time.Minute).Unix()))
}

// taskIDs lists every task id of the queues in every state, with how
// often each appears.
func taskIDs(t *testing.T, insp *asynq.Inspector, queues ...string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, q := range queues {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
			insp.ListPendingTasks, insp.ListActiveTasks, insp.ListScheduledTasks,
			insp.ListRetryTasks, insp.ListArchivedTasks, insp.ListCompletedTasks,
		} {
			infos, err := list(q, asynq.PageSize(1000))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				continue
			}
			require.NoError(t, err)
			for _, ti := range infos {
				seen[ti.ID]++
			}
		}
	}
	return seen
}

// onceThenFast is a step that, the first time, records its worker's pid,
// its own and a background child's, then sleeps; every later time it
// passes at once.
func onceThenFast(dir, name string) string {
	d := filepath.Join(dir, name)
	return fmt.Sprintf(`|
      if [ ! -e %[1]s.once ]; then
        touch %[1]s.once; sleep 300 & echo $! > %[1]s.child
        echo $PPID > %[1]s.worker; echo $$ > %[1]s.leader; wait
      fi
      echo %[2]s ok`, d, name)
}

// A worker killed with SIGKILL in the middle of a gate, with a second
// worker up: the gate's leader process dies with its worker, the gate runs
// again elsewhere once asynq recovers the task, the run passes, each gate
// is listed once and each phase task exists once. What the build left in
// the background dies when the next worker starts on the data dir.
func TestWorkerKilledMidGate(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	dir := t.TempDir()
	rs := redistest.Start(t)
	f := startFleet(t, proj, rs.URL(), `build: echo built
gates:
  - kind: unit
    run: `+onceThenFast(dir, "unit")+`
  - kind: smoke
    run: echo smoke ok
`)
	a, b := f.startWorker("worker-a"), f.startWorker("worker-b")
	id := f.rebuild("")
	leader := readPIDFile(t, filepath.Join(dir, "unit.leader"))
	child := readPIDFile(t, filepath.Join(dir, "unit.child"))
	wpid := waitPID(t, filepath.Join(dir, "unit.worker"))
	victim := a
	if b.PID() == wpid {
		victim = b
	}
	require.Equal(t, wpid, victim.PID(), "the gate runs under one of the two workers")
	m := f.waitRun(id, 10*time.Second, "gating", func(m map[string]any) bool { return m["phase"] == "gating" })
	require.Equal(t, map[string]any{"unit": nil}, gatesOf(m), "unit runs (status null)")

	victim.kill()
	// The leader of the killed worker's build dies with it (it was started
	// with a parent-death signal).
	require.Eventually(t, func() bool { return !pidAlive(leader) }, 5*time.Second, 20*time.Millisecond,
		"the build's leader (pid %d) outlived its SIGKILLed worker", leader)

	// Skip asynq's 60 s of waiting; then a replacement worker's start-up
	// recovery hands the gate to a live worker.
	disk := diskQueue(t, f.dataDir)
	expireLease(t, rs.Client(t), disk, "app:"+strconv.Itoa(id)+":gate-unit")
	c := f.startWorker("worker-c")
	m = f.waitRun(id, 30*time.Second, "terminal", func(m map[string]any) bool { return m["result"] != "building" })
	require.Equal(t, "passed", m["result"], "view: %v", m)
	require.Len(t, m["gates"], 2, "each gate listed once: %v", m["gates"])
	require.Equal(t, map[string]any{"unit": "passed", "smoke": "passed"}, gatesOf(m))

	_, insp := asynqOf(t, asynq.RedisClientOpt{Addr: rs.Addr})
	ids := taskIDs(t, insp, "fetch", disk)
	for _, step := range []string{"fetch", "compile", "gate-unit", "gate-smoke"} {
		require.Equal(t, 1, ids[fmt.Sprintf("app:%d:%s", id, step)], "task %s: %v", step, ids)
	}
	require.Len(t, ids, 4, "no other phase task: %v", ids)

	// What the killed build started in the background is not the leader:
	// the parent-death signal does not reach it. The replacement worker,
	// on the same data dir, killed it as it started.
	require.Eventually(t, func() bool { return !pidAlive(child) }, 5*time.Second, 20*time.Millisecond,
		"the killed build's background child (pid %d) outlived the next worker's start", child)
	require.Contains(t, c.logs.String(), fmt.Sprintf(`"pid":%d`, child), "worker-c logs the orphan it killed")
}

// The janitor fails a run whose worker vanished, naming the phase that
// hung; the task asynq later hands back does nothing to the failed run.
//
// The janitor's clock cannot be shortened (JanitorInterval and the 2 min
// margin over a phase's timeout are constants), so this test moves the
// run's last sign of life back an hour, as if that time had passed, and
// offers the fleet one janitor sweep itself, as every worker does every
// 15 s.
func TestJanitorFailsRunOfVanishedWorker(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	dir := t.TempDir()
	rs := redistest.Start(t)
	f := startFleet(t, proj, rs.URL(), `build: `+onceThenFast(dir, "build")+`
gates:
  - kind: unit
    run: echo unit ok
`)
	a := f.startWorker("worker-a")
	id := f.rebuild("")
	readPIDFile(t, filepath.Join(dir, "build.leader"))
	readPIDFile(t, filepath.Join(dir, "build.child"))
	f.waitRun(id, 10*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })
	a.kill()

	rdb := rs.Client(t)
	ctx := context.Background()
	runKey := fmt.Sprintf("sando:{app}:run:%d", id)
	long := time.Now().Add(-time.Hour).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	require.NoError(t, rdb.HSet(ctx, runKey, "progress_at", long).Err())

	f.startWorker("worker-b")
	client, insp := asynqOf(t, asynq.RedisClientOpt{Addr: rs.Addr})
	require.NoError(t, tasks.EnqueueJanitor(ctx, client, time.Now().Add(time.Hour)))
	m := f.waitRun(id, 20*time.Second, "terminal", func(m map[string]any) bool { return m["result"] != "building" })
	require.Equal(t, "failed", m["result"], "view: %v", m)
	require.Regexp(t, regexp.MustCompile(`^compiling: no progress for 1h0m\d+s \(worker lost\?\)$`), m["failure_summary"])

	// asynq hands the compile back (here at once): it finds the run
	// finished and ends without running anything.
	disk := diskQueue(t, f.dataDir)
	expireLease(t, rdb, disk, fmt.Sprintf("app:%d:compile", id))
	f.startWorker("worker-c")
	require.Eventually(t, func() bool {
		done, err := insp.ListCompletedTasks(disk)
		return err == nil && len(done) == 1
	}, 20*time.Second, 50*time.Millisecond, "the handed-back compile never completed")
	m = f.get(fmt.Sprintf("/runs/%d", id)).json(t)
	require.Equal(t, "failed", m["result"])
	require.Empty(t, m["gates"], "nothing ran after the janitor failed the run")
	require.NoFileExists(t, filepath.Join(f.dataDir, "logs", strconv.Itoa(id), "gate-unit.log"))
}

// compilingRun starts a fleet of one worker on rs and a run whose build
// takes 2 s, and returns once the run is compiling: a build in flight for
// a Redis fault to hit.
func compilingRun(t *testing.T, rs *redistest.Server) (*fleet, int) {
	t.Helper()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	f := startFleet(t, proj, rs.URL(), `build: sleep 2; echo built
gates:
  - kind: unit
    run: echo unit ok
`)
	f.startWorker("worker-a")
	id := f.rebuild("")
	f.waitRun(id, 10*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })
	return f, id
}

// Redis killed and started again (with its append-only file) in the
// middle of a build: meanwhile the API answers 503 with Retry-After at
// once and never hangs; afterwards the run ends consistently, the workers
// reconnect by themselves and the next run passes.
func TestRedisRestartMidRun(t *testing.T) {
	t.Parallel()
	rs := redistest.StartPersistent(t)
	f, id := compilingRun(t, rs)

	rs.Stop()
	impatient := &http.Client{Timeout: 3 * time.Second, Transport: validating(http.DefaultTransport)}
	call := func(method, path string) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), method, f.base+path, nil)
		require.NoError(t, err)
		start := time.Now()
		resp, err := impatient.Do(req)
		require.NoError(t, err, "%s %s must answer within 3s while Redis is away", method, path)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s %s: %s", method, path, body)
		require.NotEmpty(t, resp.Header.Get("Retry-After"), "%s %s", method, path)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
		require.Less(t, time.Since(start), 3*time.Second)
	}
	outage := time.Now().Add(4 * time.Second) // the build ends while Redis is away
	for time.Now().Before(outage) {
		call("GET", fmt.Sprintf("/runs/%d", id))
		call("GET", "/readyz")
		call("POST", "/rebuild")
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, rs.Restart())

	require.Eventually(t, func() bool { return f.get("/readyz").status == http.StatusOK }, 10*time.Second, 50*time.Millisecond)
	m := f.waitRun(id, 45*time.Second, "terminal", func(m map[string]any) bool { return m["result"] != "building" })
	if m["result"] != "passed" {
		require.Equal(t, "failed", m["result"], "view: %v", m)
		require.NotEmpty(t, m["failure_summary"], "a failed run says why")
	}
	next := f.rebuild("")
	require.Equal(t, "passed", f.waitTerminal(next)["result"], "the worker reconnected by itself")
	requireConsistent(t, f, rs.Client(t))
}

// requireConsistent: every run is terminal, a failed or aborted one has a
// summary, and the building set is empty.
func requireConsistent(t *testing.T, f *fleet, rdb redis.UniversalClient) {
	t.Helper()
	list := f.get("/runs?limit=100").json(t)
	for _, r := range list["runs"].([]any) {
		m := f.get(fmt.Sprintf("/runs/%v", r.(map[string]any)["run_id"])).json(t)
		require.Contains(t, []any{"passed", "failed", "aborted"}, m["result"], "view: %v", m)
		require.Equal(t, "done", m["phase"], "view: %v", m)
		if m["result"] != "passed" {
			require.NotEmpty(t, m["failure_summary"], "view: %v", m)
		}
	}
	n, err := rdb.SCard(context.Background(), "sando:{app}:building").Result()
	require.NoError(t, err)
	require.Zero(t, n, "no run left in the building set")
}

// SIGTERM to the only worker in the middle of a build: it hands the phase
// back and kills the build's process group within the shutdown timeout;
// another worker then finishes the run.
func TestWorkerSIGTERMMidBuild(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	dir := t.TempDir()
	rs := redistest.Start(t)
	f := startFleet(t, proj, rs.URL(), `build: `+onceThenFast(dir, "build")+`
gates:
  - kind: unit
    run: echo unit ok
`) // SANDO_SHUTDOWN_TIMEOUT=2s
	a := f.startWorker("worker-a")
	id := f.rebuild("")
	leader := readPIDFile(t, filepath.Join(dir, "build.leader"))
	child := readPIDFile(t, filepath.Join(dir, "build.child"))

	start := time.Now()
	require.NoError(t, a.Cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, a.waitExit(10*time.Second), "a worker exits 0 on SIGTERM")
	deadline := start.Add(2*time.Second + 3*time.Second) // SANDO_SHUTDOWN_TIMEOUT + a few seconds
	for _, pid := range []int{leader, child} {
		require.Eventually(t, func() bool { return !pidAlive(pid) }, max(time.Until(deadline), 100*time.Millisecond),
			20*time.Millisecond, "build process %d outlived the shutdown timeout", pid)
	}
	t.Logf("worker and build gone %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	require.Equal(t, "building", f.get(fmt.Sprintf("/runs/%d", id)).json(t)["result"], "handed back, not failed")

	f.startWorker("worker-b")
	m := f.waitTerminal(id)
	require.Equal(t, "passed", m["result"], "view: %v", m)
}

// A Redis that hangs (SIGSTOP: connections open, no answers) is worse
// than one that is gone: without timeouts every call would wait forever.
// The API answers 503 with Retry-After within 3 s meanwhile; once Redis
// answers again the run finishes consistently.
func TestRedisHungMidRun(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	f, id := compilingRun(t, rs)

	require.NoError(t, rs.Pause())
	resumed := false
	defer func() {
		if !resumed {
			_ = rs.Resume()
		}
	}()
	impatient := &http.Client{Timeout: 3 * time.Second, Transport: validating(http.DefaultTransport)}
	for _, path := range []string{fmt.Sprintf("/runs/%d", id), "/readyz", fmt.Sprintf("/runs/%d", id)} {
		start := time.Now()
		resp, err := impatient.Get(f.base + path)
		require.NoError(t, err, "GET %s must answer within 3s while Redis hangs", path)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "GET %s", path)
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
		t.Logf("GET %s: 503 in %s", path, time.Since(start).Round(time.Millisecond))
	}
	// More requests at once than the API has Redis connections: those
	// waiting for a connection get 503 too, not 500.
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			resp, err := impatient.Get(f.base + fmt.Sprintf("/runs/%d", id))
			if err != nil {
				t.Errorf("a request of the burst did not answer within 3s: %v", err)
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Errorf("a request of the burst: %d (Retry-After %q), want 503 with Retry-After",
					resp.StatusCode, resp.Header.Get("Retry-After"))
			}
		})
	}
	wg.Wait()
	require.NoError(t, rs.Resume())
	resumed = true

	require.Eventually(t, func() bool { return f.get("/readyz").status == http.StatusOK }, 10*time.Second, 50*time.Millisecond)
	m := f.waitRun(id, 45*time.Second, "terminal", func(m map[string]any) bool { return m["result"] != "building" })
	if m["result"] != "passed" {
		require.Equal(t, "failed", m["result"], "view: %v", m)
		require.NotEmpty(t, m["failure_summary"], "a failed run says why")
	}
	requireConsistent(t, f, rs.Client(t))
}

// A Redis that answers but cannot serve yet (loading its append-only file
// after a restart answers every command with -LOADING) is away too: 503
// with Retry-After, not a 500.
func TestRedisLoadingAnswers503(t *testing.T) {
	t.Parallel()
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // one -LOADING per command (RESP arrays of bulk strings)
				defer conn.Close()
				rd := bufio.NewReader(conn)
				for {
					head, err := rd.ReadString('\n')
					if err != nil {
						return
					}
					n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "*")))
					for range n {
						size, err := rd.ReadString('\n')
						if err != nil {
							return
						}
						l, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(size, "$")))
						if _, err := io.CopyN(io.Discard, rd, int64(l)+2); err != nil {
							return
						}
					}
					if _, err := conn.Write([]byte("-LOADING Redis is loading the dataset in memory\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	f := startFleet(t, proj, "redis://"+ln.Addr().String(), "build: echo built\n")
	for _, req := range [][2]string{{"GET", "/runs/1"}, {"GET", "/readyz"}, {"GET", "/runs"}, {"GET", "/state"}, {"POST", "/rebuild"}} {
		r := f.do(req[0], req[1], nil, nil)
		require.Equal(t, http.StatusServiceUnavailable, r.status, "%s %s: %s", req[0], req[1], r.body)
		require.NotEmpty(t, r.header.Get("Retry-After"), "%s %s", req[0], req[1])
	}
}
