package httpapi

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Concurrent reads of one run share Redis round trips, and a request never
// gets a read that started before it arrived. synctest.Wait, not a sleep,
// says when every request has queued: each is then blocked on a channel.
func TestReadsShareButNeverAnOlderOne(t *testing.T) { synctest.Test(t, readsShareButNeverAnOlderOne) }

func readsShareButNeverAnOlderOne(t *testing.T) {
	b := newReads()
	var state, fetches atomic.Int64
	release := make(chan struct{})
	fetch := func() (rendered, error) { //nolint:unparam // the type reads.do takes
		fetches.Add(1)
		v := state.Load() // what "Redis" holds when the read starts
		<-release
		return rendered{etag: strconv.FormatInt(v, 10)}, nil
	}

	first := make(chan rendered)
	go func() { v, _ := b.do(1, fetch); first <- v }()
	synctest.Wait() // the first read is in flight, holding on release
	state.Store(1)  // a write lands while the first read is in flight

	var wg sync.WaitGroup
	got := make([]rendered, 100)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i], _ = b.do(1, fetch) }()
	}
	synctest.Wait() // every request has queued behind the first read
	close(release)
	if v := <-first; v.etag != "0" {
		t.Fatalf("first read: %q", v.etag)
	}
	wg.Wait()
	for i, v := range got {
		if v.etag != "1" {
			t.Fatalf("request %d arrived after the write but got %q", i, v.etag)
		}
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("%d reads for 101 requests, want 2", n)
	}
	if len(b.m) != 0 {
		t.Fatalf("reads left behind: %v", b.m)
	}
}

// Reads of different runs never wait for each other.
func TestReadsOfOtherRunsDoNotWait(t *testing.T) {
	b := newReads()
	block := make(chan struct{})
	defer close(block)
	go func() { _, _ = b.do(1, func() (rendered, error) { <-block; return rendered{}, nil }) }()
	done := make(chan struct{})
	go func() {
		_, _ = b.do(2, func() (rendered, error) { return rendered{}, nil })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a read of run 2 waited for run 1's")
	}
}

// A read that panics fails the requests sharing it; none waits forever,
// and the next read of the run starts afresh.
func TestReadsSurviveAPanickingRead(t *testing.T) { synctest.Test(t, readsSurviveAPanickingRead) }

func readsSurviveAPanickingRead(t *testing.T) {
	b := newReads()
	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		defer func() { _ = recover() }() // the leader's request: Gin's recovery answers 500
		_, _ = b.do(1, func() (rendered, error) { close(started); <-release; panic("boom") })
	}()
	<-started
	follower := make(chan error, 1)
	go func() {
		_, err := b.do(1, func() (rendered, error) { return rendered{etag: "next"}, nil })
		follower <- err
	}()
	synctest.Wait() // the follower has queued behind the panicking read
	close(release)
	select {
	case err := <-follower:
		// It either shared the next read (which succeeded) or, had it
		// joined the panicking one, got its error; never a hang.
		if err != nil && !errors.Is(err, errReadPanicked) {
			t.Fatalf("follower: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a request sharing a panicking read waited forever")
	}
	v, err := b.do(1, func() (rendered, error) { return rendered{etag: "fresh"}, nil })
	if err != nil || v.etag != "fresh" {
		t.Fatalf("next read: %v %q", err, v.etag)
	}
}
