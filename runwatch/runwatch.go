// Package runwatch wakes long-poll waiters when a run changes. Every run
// write publishes the run id on the pipeline's events channel (see
// runstore); each API process holds ONE subscription to it and fans the
// news out to its in-process waiters. Ten thousand idle waiters cost one
// Redis connection and no Redis calls.
package runwatch

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Hub is one process's subscription and its waiters.
type Hub struct {
	mu      sync.Mutex
	waiters map[int64]*entry
	all     chan struct{} // closed on (re)subscribe: every waiter re-reads

	waiting atomic.Int64
	log     *slog.Logger
}

// Start subscribes to channel on rdb and runs until ctx ends.
func Start(ctx context.Context, rdb redis.UniversalClient, channel string, log *slog.Logger) *Hub {
	h := &Hub{waiters: map[int64]*entry{}, all: make(chan struct{}), log: log}
	go h.run(ctx, rdb, channel)
	return h
}

func (h *Hub) run(ctx context.Context, rdb redis.UniversalClient, channel string) {
	ps := rdb.Subscribe(ctx, channel)
	defer ps.Close()
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
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
