package logstore

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Options.
const (
	DefaultCap           = 16 << 20
	DefaultFlushEvery    = 250 * time.Millisecond
	DefaultFlushBytes    = 64 << 10
	DefaultCloseTimeout  = 10 * time.Second
	DefaultRegisterAfter = 25 * time.Millisecond
)

const (
	// chunkSize is the uncompressed size of one gzip member of a done log:
	// a Range read decompresses one chunk, not the whole log.
	chunkSize = 1 << 20
	// maxAppend bounds one flush command (a backlog after an outage goes
	// in several).
	maxAppend = 1 << 20
)

// ErrSuperseded is Close's answer when another Writer took the log over
// (a retried step on another worker starts the log afresh): this Writer's
// output is not stored.
var ErrSuperseded = errors.New("logstore: another writer took the log over")

// ErrClosed is Write's answer after Close.
var ErrClosed = errors.New("logstore: write after close")

// Options tune a Writer. Zero or negative values take the defaults.
type Options struct {
	// Cap bounds the stored stream: past it the middle is cut, keeping
	// the first Cap/2 and the last Cap-Cap/2 bytes, and a marker line is
	// put at the cut. It also bounds the Writer's memory. Default 16 MiB.
	Cap int
	// FlushEvery is how often buffered output is appended to Redis.
	// Default 250 ms.
	FlushEvery time.Duration
	// FlushBytes of unflushed output trigger a flush before the tick.
	// Default 64 KiB.
	FlushBytes int
	// CloseTimeout bounds how long Close retries while Redis is away.
	// Default 10 s.
	CloseTimeout time.Duration
	// RegisterAfter is how long the log may stay unknown to Redis after
	// NewWriter when nothing was written: a step that ends sooner (a no-op,
	// a fetch of a commit the mirror has) has its log stored by Close
	// alone, one script instead of two. FlushBytes of output register it
	// sooner. Until then Open and Follow answer ErrNotFound. Default 25 ms.
	RegisterAfter time.Duration
	// Events, when set, is a pub/sub channel Close publishes EventPayload
	// on once the log is done (the run's events channel, so followers and
	// waiters wake). EventPayload defaults to the base key; for Sando's
	// run events it must be the run id.
	Events, EventPayload string
	// Logger reports flushes that failed and recovered. Default: discard.
	Logger *slog.Logger
	// Index, when set, is a set the base key is added to by the log's
	// first write to Redis (the registration, or a Close that is the
	// first), in the same script: the caller's list of its logs (for
	// retention) costs no round trip of its own, and no log is stored
	// that the list misses. It must carry the base's hash tag.
	Index string

	chunk int // uncompressed bytes per gzip member; tests make it small
}

func (o Options) withDefaults(base string) Options {
	if o.Cap <= 0 {
		o.Cap = DefaultCap
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultFlushEvery
	}
	if o.FlushBytes <= 0 {
		o.FlushBytes = DefaultFlushBytes
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	if o.RegisterAfter <= 0 {
		o.RegisterAfter = DefaultRegisterAfter
	}
	if o.EventPayload == "" {
		o.EventPayload = base
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.chunk <= 0 {
		o.chunk = chunkSize
	}
	return o
}

// Writer is an io.WriteCloser that stores one step's log under a base key.
// Write and Close may be called from different goroutines.
type Writer struct {
	rdb   redis.UniversalClient
	base  string
	k     keys
	opts  Options
	token string // tells this Writer's writes from another's

	mu         sync.Mutex
	head       []byte // the first min(written, Cap/2) bytes; streamed live
	tail       ring   // the last bytes past head, at most Cap-Cap/2
	written    int64  // bytes written, before any cut
	closed     bool
	flushed    int  // bytes of head the live key holds
	claimed    bool // a write reached Redis: no later one takes the log over
	superseded bool

	kick    chan struct{} // FlushBytes are waiting
	stop    context.CancelFunc
	stopped chan struct{} // the flusher returned

	closeOnce sync.Once
	closeErr  error
}

// NewWriter starts a log under base (a key with the caller's hash tag) and
// its flusher, which after RegisterAfter registers the log (a live log,
// empty if nothing was written yet, so Open finds it before the first
// output) and takes it over from any earlier writer of the same base. The
// caller must Close it.
func NewWriter(rdb redis.UniversalClient, base string, opts Options) *Writer {
	opts = opts.withDefaults(base)
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		rdb: rdb, base: base, k: keysOf(base), opts: opts, token: hex.EncodeToString(tok[:]),
		tail: ring{size: opts.Cap - opts.Cap/2},
		kick: make(chan struct{}, 1), stop: cancel, stopped: make(chan struct{}),
	}
	go w.run(ctx)
	return w
}

// scriptKeys are the KEYS of flushScript and closeScript.
func (w *Writer) scriptKeys() []string {
	if w.opts.Index == "" {
		return w.k.all()
	}
	return append(w.k.all(), w.opts.Index)
}

// Write buffers p. It never blocks on Redis and never fails before Close.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	w.written += int64(len(p))
	rest := p
	if room := w.opts.Cap/2 - len(w.head); room > 0 {
		n := min(room, len(rest))
		w.head = appendBounded(w.head, rest[:n], w.opts.Cap/2)
		rest = rest[n:]
	}
	w.tail.write(rest)
	if len(w.head)-w.flushed >= w.opts.FlushBytes {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// run is the flusher: it appends what Write buffered every FlushEvery (or
// sooner, at FlushBytes) until Close stops it. A failed flush is retried
// at the next tick; the buffer keeps the bytes meanwhile.
func (w *Writer) run(ctx context.Context) {
	defer close(w.stopped)
	grace := time.NewTimer(w.opts.RegisterAfter)
	select {
	case <-ctx.Done(): // closed within RegisterAfter: Close stores it all
		grace.Stop()
		return
	case <-grace.C:
	case <-w.kick:
		grace.Stop()
	}
	t := time.NewTicker(w.opts.FlushEvery)
	defer t.Stop()
	failing := false
	for {
		err := w.flush(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !failing:
			failing = true
			w.opts.Logger.Warn("log flush to Redis failed; keeping it in memory and retrying", "log", w.base, "err", err)
		case err == nil && failing:
			failing = false
			w.opts.Logger.Info("log flush to Redis recovered", "log", w.base)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.kick:
		}
	}
}

// flushScript appends a Writer's next bytes to the live stream, if the log
// is still this Writer's and the live key holds exactly what it wrote.
//
// KEYS[1] meta hash
// KEYS[2] live string
// KEYS[3] done string
// KEYS[4] the caller's index set (Options.Index), if any
// ARGV[1] writer token
// ARGV[2] offset: the bytes the writer believes the live key holds; "0"
// (re)writes the live key from the start
// ARGV[3] the bytes to store at offset
// ARGV[4] "1" until a write of this Writer reached Redis: take the log
// over from any earlier writer (a retried step starts its log afresh)
// ARGV[5] the base key, for the index
//
// Returns {1, length} stored: the live key now holds length bytes;
// {2, length} the live key does not hold offset bytes of this writer
// (Redis lost them, say a restart without persistence): write again from
// offset 0; {3, 0} the log is not this writer's any more (another writer
// took it over, or this one closed it): write nothing more.
var flushScript = redis.NewScript(`
local m = redis.call("HMGET", KEYS[1], "state", "writer")
local state, holder = m[1], m[2]
if holder == ARGV[1] and state == "done" then return {3, 0} end
if holder and holder ~= ARGV[1] and ARGV[4] ~= "1" then return {3, 0} end
if holder ~= ARGV[1] then
  if ARGV[2] ~= "0" then return {2, 0} end
  redis.call("DEL", KEYS[1], KEYS[3])
  redis.call("HSET", KEYS[1], "state", "live", "writer", ARGV[1])
  if KEYS[4] then redis.call("SADD", KEYS[4], ARGV[5]) end
end
if ARGV[2] == "0" then
  redis.call("SET", KEYS[2], ARGV[3])
  return {1, #ARGV[3]}
end
local n = redis.call("STRLEN", KEYS[2])
if n ~= tonumber(ARGV[2]) then return {2, n} end
return {1, redis.call("APPEND", KEYS[2], ARGV[3])}
`)

// flush appends the head bytes not yet stored (at the first call, with no
// bytes, it registers the log) until none are left.
func (w *Writer) flush(ctx context.Context) error {
	for {
		w.mu.Lock()
		if w.closed { // Close stores the whole stream
			w.mu.Unlock()
			return nil
		}
		from, claim := w.flushed, !w.claimed
		// Bytes of head below len(head) never change, so the slice may be
		// sent without the lock.
		chunk := w.head[from:min(len(w.head), from+maxAppend)]
		done := w.superseded || (len(chunk) == 0 && !claim)
		w.mu.Unlock()
		if done {
			return nil
		}
		claimArg := "0"
		if claim {
			claimArg = "1"
		}
		res, err := flushScript.Run(ctx, w.rdb, w.scriptKeys(), w.token, from, chunk, claimArg, w.base).Int64Slice()
		if err != nil {
			return err
		}
		if len(res) != 2 {
			return fmt.Errorf("logstore: flush %s: unexpected reply %v", w.base, res)
		}
		w.mu.Lock()
		switch res[0] {
		case 1:
			w.flushed, w.claimed = from+len(chunk), true
		case 2:
			w.flushed, w.claimed = 0, true // write the head again from its start
			w.opts.Logger.Warn("live log lost in Redis; writing it again", "log", w.base, "had", from, "found", res[1])
		case 3:
			w.superseded = true
			w.opts.Logger.Warn("log taken over by another writer; no more output is stored", "log", w.base)
		default:
			w.mu.Unlock()
			return fmt.Errorf("logstore: flush %s: unexpected return %d", w.base, res[0])
		}
		w.mu.Unlock()
	}
}

// closeScript stores a log's final stream and ends it: the live key goes,
// the meta says done, and the caller's events channel hears of it.
//
// KEYS[1] meta hash
// KEYS[2] live string
// KEYS[3] done string
// KEYS[4] the caller's index set (Options.Index), if any
// ARGV[1] writer token
// ARGV[2] the final stream, compressed (gzip members of ARGV[6] bytes each)
// ARGV[3] size: length of the final stream, uncompressed
// ARGV[4] bytes cut from the middle
// ARGV[5] bytes the step wrote, before the cut
// ARGV[6] chunk: uncompressed bytes per gzip member
// ARGV[7] index: comma list of each member's end offset in ARGV[2]
// ARGV[8] events channel, "" for none
// ARGV[9] the message to publish on it
// ARGV[10] "1" when no write of this Writer reached Redis before: take
// the log over from any earlier writer (and add it to the index)
// ARGV[11] the base key, for the index
//
// Returns 1 stored (also when a retried Close stores it again); 2 the
// log is another writer's: nothing was written.
var closeScript = redis.NewScript(`
local holder = redis.call("HGET", KEYS[1], "writer")
if holder and holder ~= ARGV[1] and ARGV[10] ~= "1" then return 2 end
redis.call("DEL", KEYS[1], KEYS[2])
redis.call("SET", KEYS[3], ARGV[2])
redis.call("HSET", KEYS[1], "state", "done", "writer", ARGV[1], "size", ARGV[3],
  "stored", #ARGV[2], "cut", ARGV[4], "written", ARGV[5], "chunk", ARGV[6], "index", ARGV[7])
if KEYS[4] and ARGV[10] == "1" then redis.call("SADD", KEYS[4], ARGV[11]) end
if ARGV[8] ~= "" then redis.call("PUBLISH", ARGV[8], ARGV[9]) end
return 1
`)

// Close stores the final stream (head, marker, tail) compressed, marks
// the log done, deletes its live key and publishes on Options.Events, in
// one script. While Redis is away it retries with backoff for up to
// CloseTimeout, then returns the error; ErrSuperseded when another writer
// took the log over. Calls after the first return its result.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() { w.closeErr = w.close() })
	return w.closeErr
}

func (w *Writer) close() error {
	w.mu.Lock()
	w.closed = true // from here on head and tail never change
	head, tail1, tail2 := w.head, w.tail.oldest(), w.tail.newest()
	written := w.written
	w.mu.Unlock()
	w.stop()

	cut := written - int64(len(head)+len(tail1)+len(tail2))
	var marker []byte
	if cut > 0 {
		marker = []byte(Marker(cut))
	}
	size := len(head) + len(marker) + len(tail1) + len(tail2)
	gz, index, err := compress(w.opts.chunk, head, marker, tail1, tail2)
	if err != nil {
		return fmt.Errorf("logstore: compress %s: %w", w.base, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.opts.CloseTimeout)
	defer cancel()
	select { // a flush in flight is harmless (flushScript answers 3 after this), but wait for it
	case <-w.stopped:
	case <-ctx.Done():
	}
	w.mu.Lock()
	claimed, superseded := w.claimed, w.superseded
	w.head, w.tail.buf = nil, nil // the memory goes with the Writer's job
	w.mu.Unlock()
	if superseded {
		return ErrSuperseded
	}
	claimArg := "1"
	if claimed {
		claimArg = "0"
	}
	backoff := 50 * time.Millisecond
	for {
		code, err := closeScript.Run(ctx, w.rdb, w.scriptKeys(), w.token, gz, size, cut, written,
			w.opts.chunk, index, w.opts.Events, w.opts.EventPayload, claimArg, w.base).Int64()
		if err == nil {
			switch code {
			case 1:
				return nil
			case 2:
				return ErrSuperseded
			default:
				return fmt.Errorf("logstore: close %s: unexpected return %d", w.base, code)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("logstore: store %s (%d bytes) in Redis: %w", w.base, size, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// Marker is the line put at the cut of a log that was over its cap.
func Marker(cut int64) string {
	return fmt.Sprintf("\n[sando: %d bytes cut from the middle of this log]\n", cut)
}

// compress gzips the concatenation of parts in members of chunk bytes
// each (at least one member), and returns the members' end offsets as a
// comma list.
func compress(chunk int, parts ...[]byte) ([]byte, string, error) {
	var out bytes.Buffer
	var ends []string
	// A gzip writer's compressor state is most of a megabyte: every step's
	// log allocating one cost the no-op throughput bench a tenth of its
	// runs/s in garbage. Writers are reused.
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&out)
	in := 0 // bytes in the current member
	end := func() error {
		if err := zw.Close(); err != nil {
			return err
		}
		ends = append(ends, strconv.Itoa(out.Len()))
		zw.Reset(&out)
		in = 0
		return nil
	}
	for _, p := range parts {
		for len(p) > 0 {
			n := min(len(p), chunk-in)
			if _, err := zw.Write(p[:n]); err != nil {
				return nil, "", err
			}
			p, in = p[n:], in+n
			if in == chunk {
				if err := end(); err != nil {
					return nil, "", err
				}
			}
		}
	}
	if in > 0 || len(ends) == 0 {
		if err := end(); err != nil {
			return nil, "", err
		}
	}
	return out.Bytes(), strings.Join(ends, ","), nil
}

var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

// ring keeps the last size bytes written to it.
type ring struct {
	size int
	buf  []byte // grows to size, then wraps
	pos  int    // once full: where the oldest byte is, and the next write goes
}

func (r *ring) write(p []byte) {
	if len(p) == 0 || r.size == 0 {
		return
	}
	if len(p) >= r.size {
		r.buf = appendBounded(r.buf[:0], p[len(p)-r.size:], r.size)
		r.pos = 0
		return
	}
	if room := r.size - len(r.buf); room > 0 {
		n := min(room, len(p))
		r.buf = appendBounded(r.buf, p[:n], r.size)
		p = p[n:]
	}
	for len(p) > 0 {
		n := copy(r.buf[r.pos:], p)
		p = p[n:]
		r.pos = (r.pos + n) % r.size
	}
}

// appendBounded is append(buf, p...) for a buf that never holds more
// than limit bytes: it grows by doubling, but never past limit, so the
// Writer's memory stays within Cap.
func appendBounded(buf, p []byte, limit int) []byte {
	if need := len(buf) + len(p); need > cap(buf) {
		grown := make([]byte, len(buf), min(limit, max(need, 2*cap(buf), 4096)))
		copy(grown, buf)
		buf = grown
	}
	return append(buf, p...)
}

// oldest and newest are the kept bytes in two parts, oldest first.
func (r *ring) oldest() []byte { return r.buf[r.pos:] }
func (r *ring) newest() []byte { return r.buf[:r.pos] }
