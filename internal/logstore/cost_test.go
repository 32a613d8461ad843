package logstore_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/logstore"
	"sando.dev/sando/internal/redistest"
)

// What a log costs Redis, at the default flush: bytes stored for a
// typical ~2 MiB compile log, and commands per second of output at two
// output rates, and of an idle follower. Reported, not asserted (timings
// vary by machine); `go test -run TestCost -v ./logstore` prints them.
func TestCost(t *testing.T) {
	t.Parallel()
	rates := []struct {
		desc  string
		size  int
		spent time.Duration // the output is spread over this long
	}{
		{desc: "a fast compile, 1 MiB/s", size: 2 << 20, spent: 2 * time.Second},
		{desc: "a steady gate, 32 KiB/s", size: 64 << 10, spent: 2 * time.Second},
	}
	for _, r := range rates {
		t.Run(r.desc, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, b *testBundle) {
				ctx := context.Background()
				var n redistest.Traffic
				rdb := warm(t, b, &n)
				data := compileLog(r.size)
				w := logstore.NewWriter(rdb, base("compile"), logstore.Options{})
				const bursts = 100
				piece := len(data) / bursts
				start := time.Now()
				for i := range bursts {
					p := data[i*piece:]
					if i < bursts-1 {
						p = p[:piece]
					}
					_, err := w.Write(p)
					require.NoError(t, err)
					time.Sleep(time.Until(start.Add(time.Duration(i+1) * r.spent / bursts)))
				}
				spent := time.Since(start)
				writing := n.Commands()
				var liveBytes int64
				if b.real {
					liveBytes, _ = b.rdb.MemoryUsage(ctx, logstore.Keys(base("compile"))[1], 0).Result()
				}
				require.NoError(t, w.Close())
				total := n.Commands()
				t.Logf("%d bytes of output in %s: %d commands while writing (%.1f per second of output), %d with Close",
					len(data), spent.Round(time.Millisecond), writing, float64(writing)/spent.Seconds(), total)

				l, got := stored(t, b.rdb, base("compile"))
				sameBytes(t, data, got)
				var strlen int64
				for _, k := range logstore.Keys(base("compile")) {
					s, err := b.rdb.StrLen(ctx, k).Result()
					if err == nil {
						strlen += s
					}
				}
				t.Logf("done: stream %d bytes, stored %d bytes compressed (%.1f%%)", l.Size, strlen, 100*float64(strlen)/float64(l.Size))
				if b.real {
					var mem int64
					for _, k := range logstore.Keys(base("compile")) {
						m, _ := b.rdb.MemoryUsage(ctx, k, 0).Result()
						mem += m
					}
					t.Logf("MEMORY USAGE: %d bytes live just before Close, %d bytes done (all keys)", liveBytes, mem)
				}
			})
		})
	}
	t.Run("an idle follower", func(t *testing.T) {
		t.Parallel()
		eachBackend(t, func(t *testing.T, b *testBundle) {
			var n redistest.Traffic
			rdb := warm(t, b, &n)
			startWriter(t, b.rdb, base("gate-unit"), logstore.Options{})
			warmup, cancelWarmup := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancelWarmup()
			_ = logstore.Follow(warmup, rdb, base("gate-unit"), io.Discard, nil, 0, nil) // loads the script
			n.Reset()
			const watch = 2 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), watch)
			defer cancel()
			err := logstore.Follow(ctx, rdb, base("gate-unit"), io.Discard, nil, 0, nil)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			t.Logf("an idle follower: %d commands in %s (%.1f per second)", n.Commands(), watch, float64(n.Commands())/watch.Seconds())
		})
	})
}

// warm is a client counting its commands in n, connected already: the
// counts leave out the connection's handshake.
func warm(t *testing.T, b *testBundle, n *redistest.Traffic) redis.UniversalClient {
	t.Helper()
	rdb := b.client(t, n)
	require.NoError(t, rdb.Ping(context.Background()).Err())
	n.Reset()
	return rdb
}

// BenchmarkCompileLog writes and stores a 2 MiB compile log against a
// real redis-server, reporting Redis bytes and commands per log.
func BenchmarkCompileLog(b *testing.B) {
	s := redistest.Start(b)
	var n redistest.Traffic
	rdb := s.Client(b)
	rdb.AddHook(&n)
	data := compileLog(2 << 20)
	ctx := context.Background()
	var stored int64
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := range b.N {
		key := base("compile") + ":" + string(rune('a'+i%26))
		w := logstore.NewWriter(rdb, key, logstore.Options{})
		for p := data; len(p) > 0; p = p[min(len(p), 4096):] {
			_, _ = w.Write(p[:min(len(p), 4096)])
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		m, err := rdb.MemoryUsage(ctx, logstore.Keys(key)[2], 0).Result()
		if err != nil {
			b.Fatal(err)
		}
		stored = m
	}
	b.ReportMetric(float64(stored), "redis-B/log")
	b.ReportMetric(float64(n.Commands())/float64(b.N), "cmds/log")
}
