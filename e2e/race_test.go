package e2e

// The race suite (SPEC "Two terminal writers racing: exactly one result
// sticks, every time"): many writers on one run through the run store,
// many rebuilds at once through the API, and a cancel racing the end of a
// build.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/redisconn"
	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// 1000 writers settle one run at once, with every terminal write Sando
// has (pass, fail, abort, the janitor's expire): exactly one wins, the
// run shows the winner's result and summary, and the building set and
// last passed run agree. Ten rounds, each on a fresh run.
func TestThousandTerminalWritersOneWinner(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	conn, err := redisconn.Parse(rs.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Client.Close() })
	store := runstore.New(conn.Client, "race")
	ctx := context.Background()
	for round := range 10 {
		c, err := store.Create(ctx, runstore.CreateRequest{NoSupersede: true})
		require.NoError(t, err)
		id := c.ID
		_, _, err = store.SetPhase(ctx, id, vocab.PhaseCompiling, "task", runstore.Where{}, "")
		require.NoError(t, err)
		seen, err := store.Get(ctx, id)
		require.NoError(t, err)
		// Every applied write publishes the run id once: count them.
		events := conn.Client.Subscribe(ctx, store.Keys().Events())
		_, err = events.Receive(ctx)
		require.NoError(t, err)

		type win struct {
			result  vocab.Result
			summary string
		}
		var wins atomic.Int32
		var winner atomic.Pointer[win]
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 1000 {
			wg.Go(func() {
				<-start
				var won bool
				var err error
				w := &win{summary: fmt.Sprintf("writer %d", i)}
				switch i % 4 {
				case 0:
					w = &win{result: vocab.ResultPassed}
					won, err = store.Pass(ctx, id)
				case 1:
					w.result = vocab.ResultFailed
					won, err = store.Fail(ctx, id, w.summary)
				case 2:
					w.result = vocab.ResultAborted
					won, err = store.Abort(ctx, id, w.summary)
				case 3:
					w.result = vocab.ResultFailed
					won, err = store.Expire(ctx, id, seen.ProgressAt, w.summary)
				}
				if err != nil {
					t.Errorf("writer %d: %v", i, err)
					return
				}
				if won {
					wins.Add(1)
					winner.Store(w)
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, int32(1), wins.Load(), "round %d: exactly one terminal write wins", round)
		r, err := store.Get(ctx, id)
		require.NoError(t, err)
		w := winner.Load()
		require.Equal(t, w.result, r.Result, "round %d", round)
		require.Equal(t, w.summary, r.FailureSummary, "round %d", round)
		require.Equal(t, vocab.PhaseDone, r.Phase)
		require.Equal(t, 1, publishedFor(t, conn.Client, events, store.Keys().Events(), id), "round %d: one write changed the run", round)
		building, err := store.CountBuilding(ctx)
		require.NoError(t, err)
		require.Zero(t, building)
		ds, err := runstore.Deployments(ctx, conn.Client, []*runstore.Store{store}, []string{"host"})
		require.NoError(t, err)
		if last := ds[0].LastPassed; w.result == vocab.ResultPassed {
			require.NotNil(t, last)
			require.Equal(t, id, last.ID)
		} else if last != nil {
			require.NotEqual(t, id, last.ID)
		}
	}
}

// 20 rebuilds at once (spread over 2 s, while an older run builds)
// against a build that sleeps: the newest run
// survives and passes, every other one is aborted as superseded (each by
// exactly one of the racing requests), and every superseded build's
// process is gone within seconds.
func TestTwentyConcurrentRebuilds(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	pids := t.TempDir()
	s := startStack(t, proj, stackOpts{pipeline: `build: |
  echo $$ > ` + pids + `/$SANDO_RUN_ID.tmp; mv ` + pids + `/$SANDO_RUN_ID.tmp ` + pids + `/$SANDO_RUN_ID
  sleep 2
gates:
  - kind: unit
    run: "true"
`})
	// One run is already building when the race begins, so at least one
	// superseded build is surely running.
	first := s.rebuild("")
	waitPID(t, filepath.Join(pids, strconv.Itoa(first)))

	type answer struct {
		id         int
		superseded []int
	}
	answers := make(chan answer, 20)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			<-start
			// Spread over 2 s, so some builds are running when superseded.
			time.Sleep(time.Duration(rand.N(2000)) * time.Millisecond)
			r := s.do("POST", "/rebuild", nil, nil)
			if r.status != http.StatusAccepted {
				t.Errorf("rebuild: %d %s", r.status, r.body)
				return
			}
			m := r.json(t)
			a := answer{id: int(m["run_id"].(float64))}
			for _, v := range m["superseded"].([]any) {
				a.superseded = append(a.superseded, int(v.(float64)))
			}
			answers <- a
		})
	}
	close(start)
	wg.Wait()
	close(answers)
	ids, superseded := []int{first}, []int{}
	for a := range answers {
		ids = append(ids, a.id)
		superseded = append(superseded, a.superseded...)
	}
	require.Len(t, ids, 21)
	slices.Sort(ids)
	newest := ids[20]
	slices.Sort(superseded)
	require.Equal(t, ids[:20], superseded, "each older run superseded by exactly one request")

	m := s.waitTerminal(newest)
	require.Equal(t, "passed", m["result"], "the newest run survives: %v", m)
	for _, id := range ids[:20] {
		m := s.get(fmt.Sprintf("/runs/%d", id)).json(t)
		require.Equal(t, "aborted", m["result"], "run %d: %v", id, m)
		require.Equal(t, vocab.SummarySuperseded, m["failure_summary"], "run %d", id)
	}
	// Every build that started, but the survivor's, was killed.
	entries, err := os.ReadDir(pids)
	require.NoError(t, err)
	for _, e := range entries {
		id, err := strconv.Atoi(e.Name())
		if err != nil || id == newest {
			continue
		}
		pid := waitPID(t, filepath.Join(pids, e.Name()))
		killLater(t, pid)
		require.Eventually(t, func() bool { return !pidAlive(pid) }, 5*time.Second, 20*time.Millisecond,
			"the build of superseded run %d (pid %d) still runs", id, pid)
	}
	t.Logf("%d of 20 superseded runs had started building", len(entries)-1)
}

// A cancel racing the end of a short build, many times: each run ends
// aborted (and the cancel answered 200) or passed (and it answered 409),
// never both and never still building; the chain of an aborted run does
// not go on (a step may start only in the few ms the cancel takes to reach
// its worker), and the view never changes once terminal.
func TestCancelRacingPhaseTransition(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	marks := t.TempDir()
	step := func(name string) string {
		return `echo "` + name + ` $(date +%s%N)" >> ` + marks + `/$SANDO_RUN_ID`
	}
	s := startStack(t, proj, stackOpts{pipeline: `build: |
  ` + step("compile") + `
  sleep 0.01
gates:
  - kind: unit
    run: |
      ` + step("unit") + `
  - kind: smoke
    run: |
      ` + step("smoke") + `
`})
	compiling := func(id int) time.Time {
		require.Eventually(t, func() bool {
			b, _ := os.ReadFile(filepath.Join(marks, strconv.Itoa(id)))
			return strings.Contains(string(b), "compile")
		}, 10*time.Second, time.Millisecond)
		return time.Now()
	}
	// How long from the build's start to the run's end, here and now.
	id := s.rebuild("")
	began := compiling(id)
	require.Equal(t, "passed", s.waitRun(id, 30*time.Second, "terminal", func(m map[string]any) bool {
		return m["result"] != "building"
	})["result"])
	rest := time.Since(began)
	t.Logf("build start to passed: %s", rest)

	outcomes := map[string]int{}
	type abort struct {
		id       int
		finished time.Time
		etag     string
		gates    map[string]any
	}
	var aborted []abort
	for i := range 20 {
		id := s.rebuild("")
		// Cancel somewhere between the build's start and the run's end:
		// at the build's end, at the hand-over to the gates, during them.
		compiling(id)
		time.Sleep(time.Duration(rand.Int64N(int64(rest) * 3 / 2)))
		r := s.do("POST", fmt.Sprintf("/runs/%d/cancel", id), nil, nil)
		m := s.waitTerminal(id)
		outcomes[m["result"].(string)]++
		switch m["result"] {
		case "aborted":
			require.Equal(t, http.StatusOK, r.status, "iteration %d: aborted, so the cancel won: %s", i, r.body)
			require.Equal(t, vocab.SummaryCanceled, m["failure_summary"])
			finished, err := time.Parse(time.RFC3339Nano, m["finished_at"].(string))
			require.NoError(t, err)
			v := s.get(fmt.Sprintf("/runs/%d", id))
			aborted = append(aborted, abort{id, finished, v.header.Get("ETag"), gatesOf(m)})
		case "passed":
			require.Equal(t, http.StatusConflict, r.status, "iteration %d: passed, so the cancel lost: %s", i, r.body)
		default:
			t.Fatalf("iteration %d: run %d ended %v", i, id, m)
		}
	}
	// Give a late phase of an aborted run every chance to (wrongly) start.
	time.Sleep(300 * time.Millisecond)
	for _, a := range aborted {
		v := s.get(fmt.Sprintf("/runs/%d", a.id))
		require.Equal(t, a.etag, v.header.Get("ETag"), "run %d: an aborted run's view never changes", a.id)
		b, _ := os.ReadFile(filepath.Join(marks, strconv.Itoa(a.id)))
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			name, stamp, _ := strings.Cut(line, " ")
			ns, err := strconv.ParseInt(stamp, 10, 64)
			require.NoError(t, err, "%q", line)
			// The phase running at the abort may start its command a few
			// ms later (the cancel is on its way); the chain never goes on.
			require.Less(t, time.Unix(0, ns), a.finished.Add(time.Second),
				"run %d: %s started long after the abort:\n%s", a.id, name, b)
			if _, recorded := a.gates[name]; name != "compile" && !recorded {
				// tasks.gate starts the command even when recording the
				// gate found the run already finished: a window of a
				// Redis round trip, closed by the cancel a few ms later.
				t.Logf("run %d: gate %s started after the abort (its record was refused)", a.id, name)
			}
		}
	}
	t.Logf("outcomes: %v", outcomes)
	require.NotZero(t, outcomes["aborted"], "some cancels must land mid-run")
}

// publishedFor counts the events published for run id so far: it publishes
// a marker and reads up to it (a channel delivers in order).
func publishedFor(t *testing.T, rdb redis.UniversalClient, events *redis.PubSub, channel string, id int64) int {
	t.Helper()
	defer events.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, rdb.Publish(ctx, channel, "end").Err())
	n := 0
	for {
		m, err := events.ReceiveMessage(ctx)
		require.NoError(t, err)
		if m.Payload == "end" {
			return n
		}
		if m.Payload == strconv.FormatInt(id, 10) {
			n++
		}
	}
}
