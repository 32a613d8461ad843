// Package runwatch wakes long-poll waiters when a run changes. Every run
// write publishes the run id on the pipeline's events channel (see
// runstore); each API process holds ONE subscription to it while anyone
// waits and fans the news out to its in-process waiters. Ten thousand
// idle waiters cost one Redis connection and no Redis calls; none cost
// Redis no write to this process per run write either.
package runwatch

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Hub is one process's subscription and its waiters.
type Hub struct {
	mu        sync.Mutex
	waiters   map[int64]*entry
	all       chan struct{} // closed on (re)subscribe: every waiter re-reads
	listening bool          // subscribed, or about to be
	lastUse   time.Time     // of the last Watch or Close
	want      chan struct{} // a Watch found no subscription (cap 1)
	linger    time.Duration

	waiting atomic.Int64
	log     *slog.Logger
}

// Linger is how long the hub keeps its subscription after its last
// waiter: a poller's next long-poll usually comes within it, and no
// subscription is made per request.
const Linger = 30 * time.Second

// Start runs the hub until ctx ends. It subscribes to channel on rdb when
// the first waiter comes and unsubscribes once no one has waited for
// Linger: with no waiter, every run write of the fleet would otherwise
// cost Redis a write to this process for nothing.
func Start(ctx context.Context, rdb redis.UniversalClient, channel string, log *slog.Logger) *Hub {
	return start(ctx, rdb, channel, log, Linger)
}

func start(ctx context.Context, rdb redis.UniversalClient, channel string, log *slog.Logger, linger time.Duration) *Hub {
	h := &Hub{waiters: map[int64]*entry{}, all: make(chan struct{}), want: make(chan struct{}, 1), linger: linger, log: log}
	go h.run(ctx, rdb, channel)
	return h
}

func (h *Hub) run(ctx context.Context, rdb redis.UniversalClient, channel string) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.want:
		}
		h.listen(ctx, rdb, channel)
	}
}

// idle reports whether no one has waited for linger; then the hub stops
// listening, and the next Watch subscribes again. Waiters that come
// before that subscription is confirmed are woken by the confirmation
// (wakeAll), as after a reconnect, so none misses a change.
func (h *Hub) idle() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.waiters) > 0 || time.Since(h.lastUse) < h.linger {
		return false
	}
	h.listening = false
	return true
}

// listen holds the subscription until the hub is idle or ctx ends.
func (h *Hub) listen(ctx context.Context, rdb redis.UniversalClient, channel string) {
	ps := rdb.Subscribe(ctx, channel)
	defer ps.Close()
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.ReceiveTimeout(ctx, h.linger)
		if ctx.Err() != nil || h.idle() {
			return
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue // nothing published for linger: look at idle again
		}
		if err != nil {
			// go-redis reconnects and resubscribes on the next Receive; the
			// subscribe confirmation then wakes everyone, since messages
			// published meanwhile are lost.
			h.log.Debug("run events subscription interrupted", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			h.wakeAll()
		case *redis.Message:
			if id, err := strconv.ParseInt(m.Payload, 10, 64); err == nil {
				h.wake(id)
			}
		}
	}
}

// Watcher is one waiter's interest in one run.
type Watcher struct {
	h   *Hub
	id  int64
	e   *entry
	all <-chan struct{}
}

type entry struct {
	ch   chan struct{} // closed at the run's next change
	refs int
}

// Watch registers interest in run id. Call it BEFORE reading the run, so
// a change between the read and the wait is not lost; Close it after.
func (h *Hub) Watch(id int64) *Watcher {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastUse = time.Now()
	if !h.listening {
		h.listening = true
		select {
		case h.want <- struct{}{}:
		default:
		}
	}
	e, ok := h.waiters[id]
	if !ok {
		e = &entry{ch: make(chan struct{})}
		h.waiters[id] = e
	}
	e.refs++
	return &Watcher{h: h, id: id, e: e, all: h.all}
}

// Close drops the interest; the last one out removes the entry.
func (w *Watcher) Close() {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	w.h.lastUse = time.Now()
	w.e.refs--
	if w.e.refs == 0 && w.h.waiters[w.id] == w.e {
		delete(w.h.waiters, w.id)
	}
}

func (h *Hub) wake(id int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e, ok := h.waiters[id]; ok {
		close(e.ch)
		delete(h.waiters, id)
	}
}

func (h *Hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, e := range h.waiters {
		close(e.ch)
		delete(h.waiters, id)
	}
	close(h.all)
	h.all = make(chan struct{})
}

// Waiting is the number of requests now held in Wait (for metrics).
func (h *Hub) Waiting() int64 { return h.waiting.Load() }

// Wait blocks until the run changes, the subscription is re-established
// (changes may have been missed), ctx ends or d passes. It reports
// whether the run may have changed. A Watcher wakes once: after a true,
// Close it and Watch again.
func (w *Watcher) Wait(ctx context.Context, d time.Duration) bool {
	w.h.waiting.Add(1)
	defer w.h.waiting.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.e.ch:
		return true
	case <-w.all:
		return true
	case <-ctx.Done():
		return false
	case <-t.C:
		return false
	}
}
