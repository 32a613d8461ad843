package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/runstore"
)

// A pipeline whose build waits for the test to let it go.
func gatedBuild(flag string) string {
	return "build: |\n  while [ ! -e " + flag + " ]; do sleep 0.02; done\ngates:\n  - kind: unit\n    run: \"true\"\n"
}

func TestETagAndLongPoll(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	flag := t.TempDir() + "/go"
	s := startStack(t, proj, stackOpts{pipeline: gatedBuild(flag)})
	id := s.rebuild("")
	path := fmt.Sprintf("/runs/%d", id)
	s.waitRun(id, 10*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })

	r := s.get(path)
	etag := r.header.Get("ETag")
	require.Regexp(t, `^"[0-9a-f]{24}"$`, etag, "a strong ETag")
	r = s.do("GET", path, nil, map[string]string{"If-None-Match": etag})
	require.Equal(t, http.StatusNotModified, r.status)
	require.Empty(t, r.body)

	// Nothing changes: the long-poll ends with 304 after its wait.
	start := time.Now()
	r = s.do("GET", path+"?wait=300ms", nil, map[string]string{"If-None-Match": etag})
	require.Equal(t, http.StatusNotModified, r.status)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	require.Equal(t, etag, r.header.Get("ETag"))

	// A change answers the held request: it returns right after the phase
	// moves, long before its 30 s wait.
	type answer struct {
		r   response
		err error
		at  time.Time
	}
	got := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", s.base+path+"?wait=30s", nil)
		req.Header.Set("If-None-Match", etag)
		resp, err := client.Do(req)
		if err != nil {
			got <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, "")
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		got <- answer{r: response{status: resp.StatusCode, header: resp.Header, body: buf[:n]}, at: time.Now()}
	}()
	time.Sleep(200 * time.Millisecond) // let it be held
	released := time.Now()
	require.NoError(t, writeFile(flag))
	a := <-got
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.r.status)
	require.NotEqual(t, etag, a.r.header.Get("ETag"))
	require.Less(t, a.at.Sub(released), 5*time.Second, "woken by the change, not by the wait")

	// A finished run never changes: a long-poll on its current ETag holds
	// for the whole wait too, so a client looping on it does not spin; on
	// another ETag it answers at once.
	m := s.waitTerminal(id)
	require.Equal(t, "passed", m["result"])
	final := s.get(path).header.Get("ETag")
	start = time.Now()
	r = s.do("GET", path+"?wait=1s", nil, map[string]string{"If-None-Match": final})
	require.Equal(t, http.StatusNotModified, r.status)
	require.GreaterOrEqual(t, time.Since(start), time.Second, "held for the wait")
	require.Less(t, time.Since(start), 5*time.Second)
	start = time.Now()
	r = s.do("GET", path+"?wait=30s", nil, map[string]string{"If-None-Match": etag})
	require.Equal(t, http.StatusOK, r.status)
	require.Less(t, time.Since(start), 2*time.Second, "an older ETag gets the finished view at once")

	r = s.get(path + "?wait=soon")
	require.Equal(t, http.StatusBadRequest, r.status)
}

// Many waiters on one API process share one Redis subscription, and a
// poll of a finished run costs no Redis call.
func TestWaitersShareOneSubscription(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	flag := t.TempDir() + "/go"
	s := startStack(t, proj, stackOpts{pipeline: gatedBuild(flag)})
	id := s.rebuild("")
	path := fmt.Sprintf("/runs/%d", id)
	s.waitRun(id, 10*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })
	etag := s.get(path).header.Get("ETag")

	rdb := redis.NewClient(&redis.Options{Addr: s.redis.Addr})
	defer rdb.Close()
	ctx := context.Background()
	const waiters = 200
	var wg sync.WaitGroup
	statuses := make(chan int, waiters)
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(context.Background(), "GET", s.base+path+"?wait=20s", nil)
			req.Header.Set("If-None-Match", etag)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	time.Sleep(300 * time.Millisecond)
	before := commandsProcessed(t, rdb)
	time.Sleep(500 * time.Millisecond)
	idle := commandsProcessed(t, rdb) - before
	events := runstore.FleetKeys{}.Events()
	subs, err := rdb.PubSubNumSub(ctx, events).Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), subs[events], "one subscription for all waiters")
	clients, err := rdb.ClientList(ctx).Result()
	require.NoError(t, err)
	require.Less(t, strings.Count(clients, "\n"), 50, "held waiters do not hold Redis connections:\n%s", clients)
	// The worker's asynq polling runs a few hundred commands a second; 200
	// waiters polling Redis even once a second would add hundreds more.
	t.Logf("redis commands in 500ms with %d held waiters: %d", waiters, idle)

	require.NoError(t, writeFile(flag))
	wg.Wait()
	close(statuses)
	for st := range statuses {
		require.Equal(t, http.StatusOK, st)
	}

	s.waitTerminal(id)
	s.get(path) // fills the cache
	before = keyspaceReads(t, rdb)
	for range 50 {
		require.Equal(t, http.StatusOK, s.get(path).status)
	}
	require.Equal(t, before, keyspaceReads(t, rdb), "polls of a finished run never reach Redis")
}

func commandsProcessed(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	return infoInt(t, rdb, "stats", "total_commands_processed")
}

// keyspaceReads counts HGETALL calls: the only command a run read uses.
func keyspaceReads(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_hgetall:calls="); ok {
			var n int64
			_, _ = fmt.Sscanf(rest, "%d", &n)
			return n
		}
	}
	return 0
}

func infoInt(t *testing.T, rdb *redis.Client, section, key string) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), section).Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			var n int64
			_, _ = fmt.Sscanf(strings.TrimSpace(rest), "%d", &n)
			return n
		}
	}
	t.Fatalf("no %s in INFO %s", key, section)
	return 0
}
