package runwatch

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/redistest"
)

func TestWatchWakesOnPublish(t *testing.T) {
	t.Parallel()
	ctx, rdb, h := subscribed(t)

	const waiters = 500
	var wg sync.WaitGroup
	woke := make(chan bool, waiters)
	for range waiters {
		w := h.Watch(7)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			woke <- w.Wait(ctx, 10*time.Second)
		}()
	}
	other := h.Watch(8)
	require.Eventually(t, func() bool { return h.Waiting() == waiters }, 5*time.Second, 5*time.Millisecond)

	// Hundreds of waiters, one subscription: one pubsub connection.
	clients, err := rdb.ClientList(ctx).Result()
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(clients, "sub=1 "), clients)

	require.NoError(t, rdb.Publish(ctx, "events", "7").Err())
	wg.Wait()
	close(woke)
	for w := range woke {
		require.True(t, w)
	}
	require.False(t, other.Wait(ctx, 50*time.Millisecond), "run 8 did not change")
	other.Close()
	h.mu.Lock()
	require.Empty(t, h.waiters, "closed watchers leave no entries behind")
	h.mu.Unlock()
}

func TestResubscribeWakesEveryone(t *testing.T) {
	t.Parallel()
	ctx, rdb, h := subscribed(t)
	w := h.Watch(1)
	defer w.Close()
	// Kill the subscription's connection: changes published meanwhile are
	// lost, so the hub must wake its waiters once it is back.
	require.NoError(t, rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err())
	require.True(t, w.Wait(ctx, 10*time.Second))
}

// subscribed starts a hub on a fresh redis-server, has it subscribe (a
// first waiter, woken by the subscription's confirmation) and waits until
// its subscription is live.
func subscribed(t *testing.T) (context.Context, *redis.Client, *Hub) {
	t.Helper()
	ctx, rdb, h := started(t, Linger)
	w := h.Watch(0)
	require.True(t, w.Wait(ctx, 10*time.Second), "the subscription's confirmation wakes a waiter")
	w.Close()
	require.Equal(t, int64(1), numSub(t, ctx, rdb))
	return ctx, rdb, h
}

func started(t *testing.T, linger time.Duration) (context.Context, *redis.Client, *Hub) {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, rdb, start(ctx, rdb, "events", slog.New(slog.NewTextHandler(io.Discard, nil)), linger)
}

func numSub(t *testing.T, ctx context.Context, rdb *redis.Client) int64 { //nolint:revive // a test helper takes t first (thelper)
	t.Helper()
	n, err := rdb.PubSubNumSub(ctx, "events").Result()
	require.NoError(t, err)
	return n["events"]
}

// The hub subscribes only while someone waits (and for its linger
// after), so a process nobody long-polls costs Redis no write per run
// write; a waiter that comes meanwhile is woken by the new subscription's
// confirmation and then hears every change.
func TestSubscribedOnlyWhileWatched(t *testing.T) {
	t.Parallel()
	ctx, rdb, h := started(t, 50*time.Millisecond)
	require.Zero(t, numSub(t, ctx, rdb), "no waiter yet: no subscription")
	for round := range 2 {
		w := h.Watch(7)
		require.True(t, w.Wait(ctx, 10*time.Second), "round %d: the confirmation wakes the waiter", round)
		w.Close()
		require.Equal(t, int64(1), numSub(t, ctx, rdb), "round %d", round)
		w = h.Watch(7)
		require.NoError(t, rdb.Publish(ctx, "events", "7").Err())
		require.True(t, w.Wait(ctx, 10*time.Second), "round %d: a change wakes it", round)
		w.Close()
		require.Eventually(t, func() bool { return numSub(t, ctx, rdb) == 0 }, 10*time.Second, 5*time.Millisecond,
			"round %d: unsubscribed once no one waited for the linger", round)
	}
}
