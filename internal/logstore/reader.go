package logstore

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound means there is no log under the base key (never written, or
// deleted by retention).
var ErrNotFound = errors.New("logstore: no such log")

const (
	// liveWindow is how much a sequential Read of a live log fetches with
	// one GETRANGE.
	liveWindow = 256 << 10
	// pollEvery is the longest a follower waits between two looks.
	pollEvery = 250 * time.Millisecond
)

// Log is a snapshot of one log as Open found it, and a reader over its
// stored stream: an io.ReadSeeker and io.ReaderAt of Size bytes, as
// http.ServeContent wants (Range offsets are offsets into the stream). A
// live log is read with GETRANGE, a window at a time; a done log one
// decompressed chunk at a time. A live log that is done by the time it is
// read is read from the done stream: the bytes at each offset are the
// same. A Log is not safe for concurrent use.
type Log struct {
	// Size is the length of the stream when Open looked; reads end there.
	Size int64
	// Done: the step ended and the log is final.
	Done bool
	// Cut is how many bytes were cut from the middle (done logs).
	Cut int64
	// Written is how many bytes the step wrote before the cut (done logs;
	// Size for live ones).
	Written int64

	ctx   context.Context
	rdb   redis.UniversalClient
	k     keys
	done  bool    // read from the done key (may turn true after Open)
	chunk int64   // uncompressed bytes per gzip member
	ends  []int64 // each member's end offset in the done key
	pos   int64
	win   []byte // the bytes at winAt, the last fetched
	winAt int64
}

// openScript reads a log's meta, and a live log's length, in one step.
//
// KEYS[1] meta hash
// KEYS[2] live string
//
// Returns {0} no such log; {1, length} live; {2, size, cut, written,
// chunk, index} done (the fields closeScript wrote, as strings).
var openScript = redis.NewScript(`
local m = redis.call("HMGET", KEYS[1], "state", "size", "cut", "written", "chunk", "index")
if not m[1] then return {0} end
if m[1] == "done" then return {2, m[2], m[3], m[4], m[5], m[6]} end
return {1, redis.call("STRLEN", KEYS[2])}
`)

// Open reads what is stored under base. ctx is used by the Log's reads
// too. ErrNotFound when there is no such log.
func Open(ctx context.Context, rdb redis.UniversalClient, base string) (*Log, error) {
	l := &Log{ctx: ctx, rdb: rdb, k: keysOf(base)}
	res, err := openScript.Run(ctx, rdb, []string{l.k.meta, l.k.live}).Slice()
	if err != nil {
		return nil, fmt.Errorf("logstore: open %s: %w", base, err)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("logstore: open %s: empty reply", base)
	}
	code, _ := res[0].(int64)
	switch code {
	case 0:
		return nil, ErrNotFound
	case 1:
		if len(res) != 2 {
			return nil, fmt.Errorf("logstore: open %s: unexpected reply %v", base, res)
		}
		l.Size, _ = res[1].(int64)
		l.Written = l.Size
		return l, nil
	case 2:
		m, err := parseDone(res)
		if err != nil {
			return nil, fmt.Errorf("logstore: open %s: %w", base, err)
		}
		l.Size, l.Done, l.Cut, l.Written = m.size, true, m.cut, m.written
		l.done, l.chunk, l.ends = true, m.chunk, m.ends
		return l, nil
	default:
		return nil, fmt.Errorf("logstore: open %s: unexpected return %v", base, res[0])
	}
}

// doneMeta is what closeScript recorded of a done log.
type doneMeta struct {
	size, cut, written, chunk int64
	ends                      []int64 // each gzip member's end offset in the done key
}

// parseDone reads a done log's fields from openScript's reply.
func parseDone(res []any) (doneMeta, error) {
	if len(res) != 6 {
		return doneMeta{}, fmt.Errorf("unexpected reply %v", res)
	}
	var n [4]int64
	for i := range n {
		s, _ := res[i+1].(string)
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return doneMeta{}, fmt.Errorf("meta field %d: %w", i+1, err)
		}
		n[i] = v
	}
	m := doneMeta{size: n[0], cut: n[1], written: n[2], chunk: n[3]}
	index, _ := res[5].(string)
	for f := range strings.SplitSeq(index, ",") {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return doneMeta{}, fmt.Errorf("meta index: %w", err)
		}
		m.ends = append(m.ends, v)
	}
	if m.chunk <= 0 || int64(len(m.ends)) < (m.size+m.chunk-1)/m.chunk {
		return doneMeta{}, fmt.Errorf("meta index of %d chunks does not cover %d bytes", len(m.ends), m.size)
	}
	return m, nil
}

// Read reads the stream from the current offset up to Size.
func (l *Log) Read(p []byte) (int, error) {
	if l.pos >= l.Size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	win, err := l.at(l.pos, len(p))
	if err != nil {
		return 0, err
	}
	n := copy(p, win)
	l.pos += int64(n)
	return n, nil
}

// ReadAt reads len(p) bytes at off (io.EOF past Size).
func (l *Log) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("logstore: negative offset")
	}
	n := 0
	for n < len(p) {
		if off+int64(n) >= l.Size {
			return n, io.EOF
		}
		win, err := l.at(off+int64(n), len(p)-n)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], win)
	}
	return n, nil
}

// Seek sets the offset of the next Read.
func (l *Log) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += l.pos
	case io.SeekEnd:
		offset += l.Size
	default:
		return 0, errors.New("logstore: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("logstore: negative offset")
	}
	l.pos = offset
	return offset, nil
}

// at returns stream bytes from off (off < Size), at least one and up to
// the end of the fetched window, fetching one when off is outside it.
func (l *Log) at(off int64, want int) ([]byte, error) {
	if off >= l.winAt && off < l.winAt+int64(len(l.win)) {
		return l.win[off-l.winAt:], nil
	}
	if !l.done {
		end := min(l.Size, off+int64(max(want, liveWindow)))
		state, b, err := readLive(l.ctx, l.rdb, l.k, off, end-off)
		if err != nil {
			return nil, err
		}
		switch state {
		case stateMissing:
			return nil, ErrNotFound
		case stateLive:
			if len(b) == 0 {
				return nil, io.ErrUnexpectedEOF // the live key shrank: Redis lost it
			}
			l.win, l.winAt = b, off
			return b, nil
		}
		// Done since Open: read on in the final stream, of which the live
		// one was a prefix.
		if err := l.loadDone(); err != nil {
			return nil, err
		}
	}
	i := off / l.chunk
	if i >= int64(len(l.ends)) {
		return nil, io.ErrUnexpectedEOF
	}
	b, err := l.member(i)
	if err != nil {
		return nil, err
	}
	start := i * l.chunk
	b = b[:min(int64(len(b)), l.Size-start)] // a Log opened live ends at its Size
	if int64(len(b)) <= off-start {
		return nil, io.ErrUnexpectedEOF
	}
	l.win, l.winAt = b, start
	return b[off-start:], nil
}

// loadDone reads the meta of a log that became done after Open.
func (l *Log) loadDone() error {
	res, err := openScript.Run(l.ctx, l.rdb, []string{l.k.meta, l.k.live}).Slice()
	if err != nil {
		return err
	}
	if len(res) == 0 {
		return errors.New("logstore: empty reply")
	}
	if code, _ := res[0].(int64); code != int64(stateDone) {
		if code == int64(stateMissing) {
			return ErrNotFound
		}
		return errors.New("logstore: the log was started afresh while read")
	}
	m, err := parseDone(res)
	if err != nil {
		return err
	}
	l.done, l.chunk, l.ends = true, m.chunk, m.ends // Size, Done, Cut stay as Open saw them
	return nil
}

// member fetches and decompresses the i-th gzip member of the done key.
func (l *Log) member(i int64) ([]byte, error) {
	start := int64(0)
	if i > 0 {
		start = l.ends[i-1]
	}
	z, err := l.rdb.GetRange(l.ctx, l.k.done, start, l.ends[i]-1).Bytes()
	if err != nil {
		return nil, err
	}
	if int64(len(z)) != l.ends[i]-start {
		return nil, ErrNotFound // deleted while read
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	zr.Multistream(false)
	return io.ReadAll(io.LimitReader(zr, l.chunk))
}

// states of a log, as openScript and rangeScript return them.
const (
	stateMissing = 0
	stateLive    = 1
	stateDone    = 2
)

// rangeScript reads bytes of a live log, and tells a done or missing one.
//
// KEYS[1] meta hash
// KEYS[2] live string
// ARGV[1] first offset
// ARGV[2] last offset (inclusive; below ARGV[1] reads nothing)
//
// Returns {1, bytes} live (bytes may be empty: nothing at those offsets
// yet); {2, ""} done (read the done key); {0, ""} no such log.
var rangeScript = redis.NewScript(`
local state = redis.call("HGET", KEYS[1], "state")
if not state then return {0, ""} end
if state == "done" then return {2, ""} end
if tonumber(ARGV[2]) < tonumber(ARGV[1]) then return {1, ""} end
return {1, redis.call("GETRANGE", KEYS[2], ARGV[1], ARGV[2])}
`)

// readLive reads up to n bytes at off of a live log: one command, so an
// idle follower costs one cheap script per poll.
func readLive(ctx context.Context, rdb redis.UniversalClient, k keys, off, n int64) (int, []byte, error) {
	res, err := rangeScript.Run(ctx, rdb, []string{k.meta, k.live}, off, off+n-1).Slice()
	if err != nil {
		return 0, nil, err
	}
	if len(res) != 2 {
		return 0, nil, fmt.Errorf("logstore: read %s: unexpected reply %v", k.live, res)
	}
	code, _ := res[0].(int64)
	s, _ := res[1].(string)
	switch code {
	case stateMissing, stateLive, stateDone:
		return int(code), []byte(s), nil
	default:
		return 0, nil, fmt.Errorf("logstore: read %s: unexpected return %d", k.live, code)
	}
}

// followChunk is the most one look of a follower reads; a follower that
// got that much looks again at once.
const followChunk = 256 << 10

// Follow writes the stream under base from offset from to w as it grows,
// calling flush (if not nil) after each write, until the log is done (it
// writes the rest and returns nil) or ctx ends (ctx's error). It looks at
// the log every 250 ms, and at once when wake fires (the caller wakes it
// on the run's events; nil never fires). Each look is one command. A
// failed look (Redis away) is tried again at the next; ErrNotFound when
// the log is not there (never written or deleted).
func Follow(ctx context.Context, rdb redis.UniversalClient, base string, w io.Writer, flush func(), from int64, wake <-chan struct{}) error {
	k := keysOf(base)
	timer := time.NewTimer(pollEvery)
	defer timer.Stop()
	for {
		state, b, err := readLive(ctx, rdb, k, from, followChunk)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
		case state == stateMissing:
			return ErrNotFound
		case state == stateDone:
			return copyDone(ctx, rdb, base, w, flush, from)
		case len(b) > 0:
			if _, err := w.Write(b); err != nil {
				return err
			}
			if flush != nil {
				flush()
			}
			from += int64(len(b))
			if len(b) == followChunk {
				continue // there may be more already
			}
		}
		timer.Reset(pollEvery)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-timer.C:
		}
	}
}

// copyDone writes a done log from offset from to its end.
func copyDone(ctx context.Context, rdb redis.UniversalClient, base string, w io.Writer, flush func(), from int64) error {
	l, err := Open(ctx, rdb, base)
	if err != nil {
		return err
	}
	if from >= l.Size {
		return nil
	}
	if _, err := l.Seek(from, io.SeekStart); err != nil {
		return err
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := l.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush != nil {
				flush()
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Delete drops the logs under the bases (retention). Deleting a log that
// is not there is no error. It is for logs whose step ended: a Writer
// still running stores its log again at its next flush (it cannot tell a
// deletion from a Redis that lost its data).
func Delete(ctx context.Context, rdb redis.UniversalClient, bases ...string) error {
	if len(bases) == 0 {
		return nil
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, b := range bases {
			p.Del(ctx, Keys(b)...) // one slot per base: its keys share the hash tag
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("logstore: delete: %w", err)
	}
	return nil
}
