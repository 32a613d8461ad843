package logstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/logstore"
	"sando.dev/sando/internal/redistest"
)

func TestKeys(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{
		"sando:{app}:log:17:gate-unit:meta",
		"sando:{app}:log:17:gate-unit:live",
		"sando:{app}:log:17:gate-unit:done",
	}, logstore.Keys("sando:{app}:log:17:gate-unit"))
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	binary := make([]byte, 256*4)
	for i := range binary {
		binary[i] = byte(i)
	}
	tests := []struct {
		desc   string
		writes [][]byte
		opts   logstore.Options
	}{
		{desc: "nothing written"},
		{desc: "one line", writes: [][]byte{[]byte("main.go:12:2: undefined: x\n")}},
		{desc: "many small writes", writes: bytes.SplitAfter(compileLog(20<<10), []byte("\n"))},
		{desc: "exactly the cap", writes: [][]byte{compileLog(4096)}, opts: logstore.Options{Cap: 4096}},
		{desc: "any bytes", writes: [][]byte{binary, {}, binary}},
		{desc: "several chunks", writes: [][]byte{compileLog(3*testChunk + 12345)}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, b *testBundle) {
				w := startWriter(t, b.rdb, base("compile"), fast(tt.opts))
				var want []byte
				for _, p := range tt.writes {
					n, err := w.Write(p)
					require.NoError(t, err)
					require.Equal(t, len(p), n)
					want = append(want, p...)
				}
				headLen := min(len(want), cmpOr(tt.opts.Cap, logstore.DefaultCap)/2) // what streams live
				waitLive(t, b.rdb, base("compile"), int64(headLen))
				l, got := stored(t, b.rdb, base("compile"))
				require.False(t, l.Done)
				sameBytes(t, want[:l.Size], got, "the live stream is what was written")

				require.NoError(t, w.Close())
				l, got = stored(t, b.rdb, base("compile"))
				require.True(t, l.Done)
				require.Equal(t, int64(len(want)), l.Size)
				require.Equal(t, int64(len(want)), l.Written)
				require.Zero(t, l.Cut)
				sameBytes(t, want, got)
				n, err := b.rdb.Exists(context.Background(), logstore.Keys(base("compile"))[1]).Result()
				require.NoError(t, err)
				require.Zero(t, n, "the live key goes at Close")
				_, err = w.Write([]byte("late"))
				require.ErrorIs(t, err, logstore.ErrClosed)
				require.NoError(t, w.Close(), "Close twice answers as the first")
			})
		})
	}
}

// http.ServeContent over a Log answers Range requests from offsets into
// the stored stream, live or done, across gzip chunks.
func TestRangeAndSeek(t *testing.T) {
	t.Parallel()
	const size = 3*testChunk + 777 // four gzip members once done
	ranges := []struct {
		header   string
		status   int
		from, to int64 // to -1: to the end; from < 0: from the end
	}{
		{"", http.StatusOK, 0, -1},
		{"bytes=0-99", http.StatusPartialContent, 0, 100},
		{"bytes=65530-65549", http.StatusPartialContent, 65530, 65550}, // across members
		{"bytes=65536-", http.StatusPartialContent, 65536, -1},
		{"bytes=-100", http.StatusPartialContent, -100, -1},
		{"bytes=196600-196699", http.StatusPartialContent, 196600, 196700},
		{"bytes=0-9,131070-131079", http.StatusPartialContent, -2, -2}, // multipart
		{"bytes=99999999-", http.StatusRequestedRangeNotSatisfiable, 0, 0},
	}
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		data := compileLog(size)
		w := startWriter(t, b.rdb, base("gate-unit"), fast(logstore.Options{}))
		_, err := w.Write(data)
		require.NoError(t, err)
		waitLive(t, b.rdb, base("gate-unit"), size)
		check := func(t *testing.T, done bool) {
			for _, r := range ranges {
				l, err := logstore.Open(ctx, b.rdb, base("gate-unit"))
				require.NoError(t, err)
				require.Equal(t, done, l.Done)
				req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/logs/17/gate-unit.log", nil)
				if r.header != "" {
					req.Header.Set("Range", r.header)
				}
				rec := httptest.NewRecorder()
				rec.Header().Set("Content-Type", "text/plain; charset=utf-8")
				http.ServeContent(rec, req, "", time.Time{}, l)
				require.Equal(t, r.status, rec.Code, r.header)
				from, to := r.from, r.to
				if from < 0 {
					from += int64(len(data))
				}
				if to < 0 {
					to = int64(len(data))
				}
				switch {
				case r.from == -2: // multipart/byteranges: each part's bytes are in the body
					require.Contains(t, rec.Header().Get("Content-Type"), "multipart/byteranges")
					require.Contains(t, rec.Body.String(), string(data[0:10]))
					require.Contains(t, rec.Body.String(), string(data[131070:131080]))
				case r.status != http.StatusRequestedRangeNotSatisfiable:
					sameBytes(t, data[from:to], rec.Body.Bytes(), r.header)
				}
			}
			l, err := logstore.Open(ctx, b.rdb, base("gate-unit"))
			require.NoError(t, err)
			for _, off := range []int64{l.Size - 1, 0, testChunk, testChunk - 1, 12345, 2*testChunk + 1} {
				p := make([]byte, 300)
				n, err := l.ReadAt(p, off)
				want := data[off:min(l.Size, off+300)]
				require.Equal(t, len(want), n)
				sameBytes(t, want, p[:n])
				if n < len(p) {
					require.ErrorIs(t, err, io.EOF)
				} else {
					require.NoError(t, err)
				}
				pos, err := l.Seek(off, io.SeekStart)
				require.NoError(t, err)
				require.Equal(t, off, pos)
				got, err := io.ReadAll(io.LimitReader(l, 300))
				require.NoError(t, err)
				sameBytes(t, want, got)
			}
			end, err := l.Seek(0, io.SeekEnd)
			require.NoError(t, err)
			require.Equal(t, int64(len(data)), end)
			_, err = l.Seek(-1, io.SeekStart)
			require.Error(t, err)
		}
		t.Run("live", func(t *testing.T) { check(t, false) })

		// A Log opened live and read after the step ended reads on in
		// the done stream: same bytes, same offsets, same Size.
		early, err := logstore.Open(ctx, b.rdb, base("gate-unit"))
		require.NoError(t, err)
		_, err = early.Read(make([]byte, 10))
		require.NoError(t, err)
		_, err = w.Write([]byte("after the open\n"))
		require.NoError(t, err)
		require.NoError(t, w.Close())
		_, err = early.Seek(0, io.SeekStart)
		require.NoError(t, err)
		got, err := io.ReadAll(early)
		require.NoError(t, err)
		sameBytes(t, data, got)

		data = append(data, "after the open\n"...)
		t.Run("done", func(t *testing.T) { check(t, true) })
	})
}

// A follower gets exactly the final stream from its offset, whether it
// joins at the start or in the middle, while the writer writes in bursts,
// and also when the middle is cut: the live stream is a prefix of the
// final one.
func TestFollow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc string
		size int
		from int64
		cap  int
		wake bool
	}{
		{desc: "from the start", size: 300 << 10},
		{desc: "from the middle", size: 300 << 10, from: 100 << 10},
		{desc: "woken by the caller", size: 100 << 10, from: 1, wake: true},
		{desc: "past the cap", size: 200 << 10, cap: 64 << 10},
		{desc: "from inside the cut", size: 200 << 10, cap: 64 << 10, from: 40 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, b *testBundle) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				data := compileLog(tt.size)
				want := capped(data, cmpOr(tt.cap, logstore.DefaultCap))
				w := startWriter(t, b.rdb, base("compile"), fast(logstore.Options{Cap: tt.cap}))
				var wake chan struct{}
				if tt.wake {
					wake = make(chan struct{})
				}
				written := make(chan error, 1)
				go func() { written <- writeBursts(w, data, time.Millisecond) }()
				var out bytes.Buffer
				flushes := 0
				done := make(chan error, 1)
				go func() {
					done <- logstore.Follow(ctx, b.rdb, base("compile"), &out, func() { flushes++ }, tt.from, wake)
				}()
				if tt.wake {
					go func() {
						for {
							select {
							case wake <- struct{}{}:
							case <-ctx.Done():
								return
							}
							time.Sleep(time.Millisecond)
						}
					}()
				}
				require.NoError(t, <-written)
				require.NoError(t, <-done)
				require.Equal(t, len(want[tt.from:]), out.Len())
				sameBytes(t, want[tt.from:], out.Bytes())
				require.Positive(t, flushes)

				// Following a log that is over already writes the rest at once.
				var again bytes.Buffer
				require.NoError(t, logstore.Follow(ctx, b.rdb, base("compile"), &again, nil, tt.from, nil))
				sameBytes(t, want[tt.from:], again.Bytes())
			})
		})
	}
}

func TestFollowEndsWithContext(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		w := startWriter(t, b.rdb, base("compile"), fast(logstore.Options{}))
		_, err := w.Write([]byte("still building\n"))
		require.NoError(t, err)
		waitLive(t, b.rdb, base("compile"), 15)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		var out bytes.Buffer
		err = logstore.Follow(ctx, b.rdb, base("compile"), &out, nil, 0, nil)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, "still building\n", out.String())
	})
}

// Past Cap the middle is cut: the first Cap/2 and the last Cap-Cap/2 bytes
// stay, with one marker line between, however the input was written.
func TestCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc  string
		cap   int
		size  int
		piece int // bytes per Write; 0: one Write
	}{
		{desc: "one under", cap: 1000, size: 999},
		{desc: "exactly", cap: 1000, size: 1000},
		{desc: "one over", cap: 1000, size: 1001},
		{desc: "three times, one write", cap: 1000, size: 3000},
		{desc: "three times, small writes", cap: 1000, size: 3000, piece: 7},
		{desc: "three times, writes larger than the tail", cap: 1000, size: 3000, piece: 700},
		{desc: "odd cap", cap: 1001, size: 3003, piece: 13},
		{desc: "three times a cap of several chunks", cap: 4 * testChunk, size: 12 * testChunk, piece: 16 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, b *testBundle) {
				data := compileLog(tt.size)
				w := startWriter(t, b.rdb, base("compile"), fast(logstore.Options{Cap: tt.cap}))
				piece := cmpOr(tt.piece, tt.size)
				for p := data; len(p) > 0; p = p[min(piece, len(p)):] {
					_, err := w.Write(p[:min(piece, len(p))])
					require.NoError(t, err)
				}
				waitLive(t, b.rdb, base("compile"), int64(min(tt.size, tt.cap/2)))
				require.NoError(t, w.Close())
				l, got := stored(t, b.rdb, base("compile"))
				want := capped(data, tt.cap)
				require.Equal(t, len(want), len(got))
				sameBytes(t, want, got)
				require.Equal(t, int64(max(0, tt.size-tt.cap)), l.Cut)
				require.Equal(t, int64(tt.size), l.Written)
				if tt.size > tt.cap {
					sameBytes(t, data[:tt.cap/2], got[:tt.cap/2], "the head")
					sameBytes(t, data[tt.size-(tt.cap-tt.cap/2):], got[len(got)-(tt.cap-tt.cap/2):], "the tail")
					require.Contains(t, string(got), "bytes cut from the middle of this log]\n")
				}
			})
		})
	}
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// Redis going away mid-write loses nothing (the Writer holds at most Cap
// bytes meanwhile): a redis-server comes back empty and the Writer writes
// its live stream again; miniredis comes back with its data.
func TestRedisDownMidWrite(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		data := compileLog(600 << 10)
		first, second, third := data[:100<<10], data[100<<10:400<<10], data[400<<10:]
		w := startWriter(t, b.rdb, base("compile"), fast(logstore.Options{}))
		_, err := w.Write(first)
		require.NoError(t, err)
		waitLive(t, b.rdb, base("compile"), int64(len(first)))

		b.down(t)
		for p := second; len(p) > 0; p = p[min(len(p), 10<<10):] {
			_, err := w.Write(p[:min(len(p), 10<<10)]) // never blocks, never fails
			require.NoError(t, err)
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // flushes fail meanwhile
		b.up(t)

		_, err = w.Write(third)
		require.NoError(t, err)
		waitLive(t, b.rdb, base("compile"), int64(len(data)))
		_, got := stored(t, b.rdb, base("compile"))
		sameBytes(t, data, got, "the live stream is whole again")
		require.NoError(t, w.Close())
		l, got := stored(t, b.rdb, base("compile"))
		require.True(t, l.Done)
		sameBytes(t, data, got)
	})
}

// Close retries while Redis is away and stores the log once it is back;
// with Redis gone for good it gives up after CloseTimeout with an error.
func TestCloseWhileRedisDown(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		data := compileLog(50 << 10)
		w := startWriter(t, b.rdb, base("compile"), fast(logstore.Options{}))
		_, err := w.Write(data)
		require.NoError(t, err)
		b.down(t)
		closed := make(chan error, 1)
		go func() { closed <- w.Close() }()
		time.Sleep(300 * time.Millisecond)
		b.up(t)
		require.NoError(t, <-closed)
		l, got := stored(t, b.rdb, base("compile"))
		require.True(t, l.Done)
		sameBytes(t, data, got)

		w = startWriter(t, b.rdb, base("stage"), fast(logstore.Options{CloseTimeout: 200 * time.Millisecond}))
		_, err = w.Write(data)
		require.NoError(t, err)
		b.down(t)
		err = w.Close()
		require.Error(t, err)
		require.Contains(t, err.Error(), base("stage"))
		b.up(t)
	})
}

func TestClosePublishes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc, payload, want string
	}{
		{desc: "the run id", payload: "17", want: "17"},
		{desc: "default: the base key", want: base("compile")},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, b *testBundle) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				ps := b.rdb.Subscribe(ctx, "sando:{app}:events")
				defer ps.Close()
				_, err := ps.Receive(ctx) // the subscription is in place
				require.NoError(t, err)
				w := startWriter(t, b.rdb, base("compile"), fast(logstore.Options{Events: "sando:{app}:events", EventPayload: tt.payload}))
				_, err = w.Write([]byte("ok\n"))
				require.NoError(t, err)
				require.NoError(t, w.Close())
				msg, err := ps.ReceiveMessage(ctx)
				require.NoError(t, err)
				require.Equal(t, tt.want, msg.Payload)
			})
		})
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx := context.Background()
		_, err := logstore.Open(ctx, b.rdb, base("nope"))
		require.ErrorIs(t, err, logstore.ErrNotFound)
		err = logstore.Follow(ctx, b.rdb, base("nope"), io.Discard, nil, 0, nil)
		require.ErrorIs(t, err, logstore.ErrNotFound)
		require.NoError(t, logstore.Delete(ctx, b.rdb, base("nope")))
		require.NoError(t, logstore.Delete(ctx, b.rdb))

		for _, step := range []string{"fetch", "compile", "gate-unit"} {
			w := startWriter(t, b.rdb, base(step), fast(logstore.Options{}))
			_, err := w.Write([]byte(step))
			require.NoError(t, err)
			require.NoError(t, w.Close())
		}
		require.NoError(t, logstore.Delete(ctx, b.rdb, base("fetch"), base("compile"), base("gate-unit")))
		for _, step := range []string{"fetch", "compile", "gate-unit"} {
			_, err := logstore.Open(ctx, b.rdb, base(step))
			require.ErrorIs(t, err, logstore.ErrNotFound, step)
		}
	})
}

// A retried step (another worker, same base) starts the log afresh; the
// earlier writer stores nothing more.
func TestSecondWriterTakesOver(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		old := startWriter(t, b.rdb, base("compile"), fast(logstore.Options{}))
		_, err := old.Write([]byte("attempt 1\n"))
		require.NoError(t, err)
		waitLive(t, b.rdb, base("compile"), 10)

		retry := logstore.NewWriter(b.rdb, base("compile"), fast(logstore.Options{}))
		_, err = retry.Write([]byte("attempt 2\n"))
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			_, got, ok := storedNow(b.rdb, base("compile"))
			return ok && string(got) == "attempt 2\n"
		}, 5*time.Second, 2*time.Millisecond, "the retry takes the log over")

		_, err = old.Write([]byte("late output of attempt 1\n"))
		require.NoError(t, err)
		require.ErrorIs(t, old.Close(), logstore.ErrSuperseded)
		require.NoError(t, retry.Close())
		_, got := stored(t, b.rdb, base("compile"))
		require.Equal(t, "attempt 2\n", string(got))

		// A third attempt replaces a done log too.
		third := startWriter(t, b.rdb, base("compile"), fast(logstore.Options{}))
		require.Eventually(t, func() bool {
			l, got, ok := storedNow(b.rdb, base("compile"))
			return ok && !l.Done && len(got) == 0
		}, 5*time.Second, 2*time.Millisecond, "a new writer starts the log afresh")
		require.NoError(t, third.Close())
	})
}

// Readers and followers while the writer writes see prefixes of the final
// stream (run with -race).
func TestConcurrentReaders(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b *testBundle) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		data := compileLog(400 << 10)
		w := startWriter(t, b.rdb, base("gate-unit"), fast(logstore.Options{}))
		writing := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 3 {
			wg.Go(func() {
				var out bytes.Buffer
				if err := logstore.Follow(ctx, b.rdb, base("gate-unit"), &out, nil, 0, nil); err != nil {
					errs <- err
				} else if !bytes.Equal(out.Bytes(), data) {
					errs <- errors.New("a follower got other bytes than the log")
				}
			})
		}
		for range 3 {
			wg.Go(func() {
				for {
					select {
					case <-writing:
						return
					default:
					}
					l, err := logstore.Open(ctx, b.rdb, base("gate-unit"))
					if err != nil {
						errs <- err
						return
					}
					got, err := io.ReadAll(l)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.HasPrefix(data, got) {
						errs <- errors.New("a reader got what is not a prefix of the log")
						return
					}
				}
			})
		}
		go func() {
			defer close(writing)
			if err := writeBursts(w, data, 200*time.Microsecond); err != nil {
				errs <- err
			}
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	})
}

// On Redis Cluster every script finds its keys in one slot (else Redis
// answers CROSSSLOT): all of a log's keys carry the base's hash tag, and
// Delete spans logs of several tags.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	var rdb redis.UniversalClient = c.ClusterClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := compileLog(200 << 10)
	bases := []string{"sando:{app}:log:1:compile", "sando:{web}:log:2:compile", "sando:{api}:log:3:gate-unit"}
	for _, b := range bases {
		w := startWriter(t, rdb, b, fast(logstore.Options{Events: "sando:{app}:events", EventPayload: "1"}))
		done := make(chan error, 1)
		go func() { done <- writeBursts(w, data, 100*time.Microsecond) }()
		var out bytes.Buffer
		require.NoError(t, logstore.Follow(ctx, rdb, b, &out, nil, 0, nil))
		require.NoError(t, <-done)
		sameBytes(t, data, out.Bytes())
		_, got := stored(t, rdb, b)
		sameBytes(t, data, got)
	}
	require.NoError(t, logstore.Delete(ctx, rdb, bases...))
	for _, b := range bases {
		_, err := logstore.Open(ctx, rdb, b)
		require.ErrorIs(t, err, logstore.ErrNotFound)
	}
}

func TestMarker(t *testing.T) {
	t.Parallel()
	m := logstore.Marker(1234567)
	require.Equal(t, "\n[sando: 1234567 bytes cut from the middle of this log]\n", m)
	require.Equal(t, 1, strings.Count(strings.TrimSpace(m), "\n")+1, "one line")
}

// A log names itself in the caller's index with its first write to
// Redis, whichever that is: the registration, or a Close that comes first
// (Redis was away until then).
func TestIndex(t *testing.T) {
	t.Parallel()
	const index = "sando:{app}:logs:17"
	members := func(t *testing.T, rdb redis.UniversalClient) []string {
		m, err := rdb.SMembers(context.Background(), index).Result()
		require.NoError(t, err)
		return m
	}
	t.Run("registration", func(t *testing.T) {
		t.Parallel()
		eachBackend(t, func(t *testing.T, b *testBundle) {
			w := startWriter(t, b.rdb, base("compile"), fast(logstore.Options{Index: index}))
			require.Equal(t, []string{base("compile")}, members(t, b.rdb), "listed once registered")
			require.NoError(t, w.Close())
			require.Equal(t, []string{base("compile")}, members(t, b.rdb))
		})
	})
	t.Run("close first", func(t *testing.T) {
		t.Parallel()
		eachBackend(t, func(t *testing.T, b *testBundle) {
			b.down(t)
			w := logstore.NewWriter(b.rdb, base("gate-unit"), fast(logstore.Options{Index: index}))
			_, err := w.Write([]byte("ok\n"))
			require.NoError(t, err)
			closed := make(chan error, 1)
			go func() { closed <- w.Close() }()
			time.Sleep(100 * time.Millisecond) // Close is retrying: the flusher has stopped
			b.up(t)
			require.NoError(t, <-closed)
			l, got := stored(t, b.rdb, base("gate-unit"))
			require.True(t, l.Done)
			require.Equal(t, "ok\n", string(got))
			require.Equal(t, []string{base("gate-unit")}, members(t, b.rdb))
		})
	})
}
