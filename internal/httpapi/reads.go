package httpapi

import (
	"errors"
	"sync"
)

// reads coalesces the Redis reads of one run. N concurrent polls of a
// building run then cost about one HGETALL per Redis round trip instead of
// N, and waking ten thousand long-polls costs two reads, not ten thousand
// through a pool of twenty connections.
//
// A request never shares a read that started before it arrived: that read
// could miss a write that finished just before the request (its own
// cancel, say). It waits for the read in flight to end, then shares the
// next one with every request that arrived meanwhile. That is why this is
// not singleflight, which joins the read in flight.
type reads struct {
	mu sync.Mutex
	m  map[int64]*read // the read in flight (or just ended) per run
}

type read struct {
	done chan struct{}
	next *read // requests that arrived while this one was in flight
	v    rendered
	err  error
}

func newReads() *reads { return &reads{m: map[int64]*read{}} }

func (b *reads) do(id int64, fetch func() (rendered, error)) (rendered, error) {
	b.mu.Lock()
	cur := b.m[id]
	if cur == nil {
		mine := &read{done: make(chan struct{})}
		b.m[id] = mine
		b.mu.Unlock()
		return b.run(id, mine, fetch)
	}
	if cur.next == nil {
		cur.next = &read{done: make(chan struct{})}
	}
	mine := cur.next
	b.mu.Unlock()
	<-cur.done
	b.mu.Lock()
	if b.m[id] == cur { // the first one out starts the next read
		b.m[id] = mine
		b.mu.Unlock()
		return b.run(id, mine, fetch)
	}
	b.mu.Unlock()
	<-mine.done
	return mine.v, mine.err
}

func (b *reads) run(id int64, mine *read, fetch func() (rendered, error)) (rendered, error) {
	// Even if fetch panics (the leader's request then answers 500), the
	// requests sharing this read get an error instead of waiting forever.
	mine.err = errReadPanicked
	defer func() {
		b.mu.Lock()
		if b.m[id] == mine && mine.next == nil {
			delete(b.m, id)
		}
		b.mu.Unlock()
		close(mine.done)
	}()
	mine.v, mine.err = fetch()
	return mine.v, mine.err
}

var errReadPanicked = errors.New("the shared read of this run failed")
