package logstore_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/logstore"
	"sando.dev/sando/internal/redistest"
)

// testBundle is one test's Redis on one backend: its own server, so no
// test sees another's keys.
type testBundle struct {
	rdb redis.UniversalClient
	// client makes another client of the same server (with hooks, say).
	client func(t *testing.T, hooks ...redis.Hook) redis.UniversalClient
	// down makes the server unreachable; up brings it back. A real
	// redis-server comes back empty (no persistence), miniredis with its
	// data: a Writer must survive both.
	down, up func(t *testing.T)
	real     bool // a redis-server, not miniredis
}

// eachBackend runs the same behaviour against a real redis-server and
// against miniredis (the embedded default), one server per test.
func eachBackend(t *testing.T, fn func(t *testing.T, b *testBundle)) {
	t.Helper()
	backends := map[string]func(t *testing.T) *testBundle{
		"redis": func(t *testing.T) *testBundle {
			s := redistest.Start(t)
			return &testBundle{
				client: func(t *testing.T, hooks ...redis.Hook) redis.UniversalClient {
					return newClient(t, s.Addr, hooks)
				},
				down: func(*testing.T) { s.Stop() },
				up:   func(t *testing.T) { require.NoError(t, s.Restart()) },
				real: true,
			}
		},
		"miniredis": func(t *testing.T) *testBundle {
			m := redistest.Mini(t)
			return &testBundle{
				client: func(t *testing.T, hooks ...redis.Hook) redis.UniversalClient {
					return newClient(t, m.Addr(), hooks)
				},
				down: func(*testing.T) { m.Close() },
				up:   func(t *testing.T) { require.NoError(t, restartMini(m)) },
			}
		},
	}
	for name, start := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := start(t)
			b.rdb = b.client(t)
			fn(t, b)
		})
	}
}

func newClient(t *testing.T, addr string, hooks []redis.Hook) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	for _, h := range hooks {
		c.AddHook(h)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// restartMini restarts a closed miniredis on its port, which the OS may
// not have freed at once.
func restartMini(m *miniredis.Miniredis) error {
	var err error
	for range 50 {
		if err = m.Restart(); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// testChunk is the gzip member size of tests' done logs: small, so reads
// across members need little input.
const testChunk = 64 << 10

// fast are Options for tests: flushes every few ms, small gzip members.
func fast(o logstore.Options) logstore.Options {
	if o.FlushEvery == 0 {
		o.FlushEvery = 5 * time.Millisecond
	}
	return logstore.WithChunk(o, testChunk)
}

// base is a log's base key as Sando names them: the pipeline's hash tag.
func base(step string) string { return "sando:{app}:log:17:" + step }

// startWriter makes a Writer and waits until its log is registered, as a
// step's log is before a client can learn its log_ref.
func startWriter(t *testing.T, rdb redis.UniversalClient, base string, opts logstore.Options) *logstore.Writer {
	t.Helper()
	w := logstore.NewWriter(rdb, base, opts)
	t.Cleanup(func() { _ = w.Close() })
	require.Eventually(t, func() bool {
		_, err := logstore.Open(context.Background(), rdb, base)
		return err == nil
	}, 5*time.Second, 2*time.Millisecond, "the writer registers its log")
	return w
}

// waitLive waits until the live log holds n bytes.
func waitLive(t *testing.T, rdb redis.UniversalClient, base string, n int64) {
	t.Helper()
	var last int64 = -1
	require.Eventually(t, func() bool {
		l, err := logstore.Open(context.Background(), rdb, base)
		if err != nil {
			return false
		}
		last = l.Size
		return l.Size == n
	}, 10*time.Second, 2*time.Millisecond, "live log never reached %d bytes (last %d)", n, last)
}

// stored is everything Open reads back under base.
func stored(t *testing.T, rdb redis.UniversalClient, base string) (*logstore.Log, []byte) {
	t.Helper()
	l, err := logstore.Open(context.Background(), rdb, base)
	require.NoError(t, err)
	b, err := io.ReadAll(l)
	require.NoError(t, err)
	require.Len(t, b, int(l.Size))
	return l, b
}

// storedNow is stored for a condition polled while a writer may be taking
// the log over: a read racing the takeover may find what it opened gone
// (ErrNotFound), which is no answer yet rather than a failure.
func storedNow(rdb redis.UniversalClient, base string) (*logstore.Log, []byte, bool) {
	l, err := logstore.Open(context.Background(), rdb, base)
	if err != nil {
		return nil, nil, false
	}
	b, err := io.ReadAll(l)
	if err != nil || len(b) != int(l.Size) {
		return nil, nil, false
	}
	return l, b, true
}

// capped is what a log of input becomes under limit: all of it, or the
// head, the marker and the tail.
func capped(input []byte, limit int) []byte {
	if len(input) <= limit {
		return input
	}
	head, tail := limit/2, limit-limit/2
	out := append([]byte{}, input[:head]...)
	out = append(out, logstore.Marker(int64(len(input)-limit))...)
	return append(out, input[len(input)-tail:]...)
}

// compileLog is size bytes of what builds print: compiler progress, cc
// command lines, warnings with source excerpts, test results. Seeded, so
// every run measures the same text; a shorter log is a prefix of a longer.
func compileLog(size int) []byte {
	logOnce.Do(func() { logText = makeCompileLog(maxLog) })
	if size > maxLog {
		panic("compileLog: raise maxLog")
	}
	return append([]byte(nil), logText[:size]...)
}

const maxLog = 2<<20 + 64<<10

var (
	logOnce sync.Once
	logText []byte
)

func makeCompileLog(size int) []byte {
	r := rand.New(rand.NewPCG(17, 42))
	crates := []string{"serde", "tokio", "regex", "syn", "quote", "proc-macro2", "libc", "hyper", "rand", "clap", "anyhow", "tracing"}
	dirs := []string{"core", "net", "storage", "util", "api", "codec"}
	var b bytes.Buffer
	for b.Len() < size {
		c, d := crates[r.IntN(len(crates))], dirs[r.IntN(len(dirs))]
		switch r.IntN(10) {
		case 0, 1, 2, 3:
			fmt.Fprintf(&b, "   Compiling %s v%d.%d.%d\n", c, r.IntN(3), r.IntN(40), r.IntN(200))
		case 4, 5:
			n := r.IntN(900)
			fmt.Fprintf(&b, "cc -O2 -g -Wall -Wextra -fPIC -Iinclude -Ibuild/gen -DNDEBUG -c src/%s/%s_%d.c -o build/obj/%s_%d.o\n", d, d, n, d, n)
		case 6:
			v, line := r.IntN(99), 10+r.IntN(800)
			fmt.Fprintf(&b, "warning: unused variable: `x%d`\n  --> src/%s/mod.rs:%d:%d\n   |\n%d |     let x%d = %s::compute(&ctx)?;\n   |         ^^^ help: if this is intentional, prefix it with an underscore: `_x%d`\n   |\n   = note: `#[warn(unused_variables)]` on by default\n\n",
				v, d, line, 9, line, v, c, v)
		case 7:
			fmt.Fprintf(&b, "ok  \tsando/%s/%s\t%d.%03ds\n", d, c, r.IntN(3), r.IntN(1000))
		case 8:
			fmt.Fprintf(&b, "[%3d%%] Building CXX object src/CMakeFiles/%s.dir/%s/%s_%d.cpp.o\n", r.IntN(101), d, d, c, r.IntN(300))
		default:
			fmt.Fprintf(&b, "    Finished `release` profile [optimized] target(s) in %d.%02ds\n", r.IntN(300), r.IntN(100))
		}
	}
	return b.Bytes()[:size]
}

// writeBursts writes data to w in bursts of random size with short
// pauses, as a build prints, and closes w.
func writeBursts(w io.WriteCloser, data []byte, pause time.Duration) error {
	r := rand.New(rand.NewPCG(uint64(len(data)), 7))
	for len(data) > 0 {
		n := min(len(data), 1+r.IntN(8<<10))
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
		time.Sleep(pause)
	}
	return w.Close()
}

// sameBytes fails with where two byte strings part, not with both dumped.
func sameBytes(t *testing.T, want, got []byte, msg ...any) {
	t.Helper()
	if bytes.Equal(want, got) {
		return
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	excerpt := func(b []byte) []byte { return b[i:min(len(b), i+40)] }
	t.Fatalf("%s: got %d bytes, want %d; they part at offset %d: got %q…, want %q…",
		fmt.Sprint(msg...), len(got), len(want), i, excerpt(got), excerpt(want))
}
