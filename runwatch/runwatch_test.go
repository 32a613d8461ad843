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

	"sando/internal/redistest"
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

// subscribed starts a hub on a fresh redis-server and waits until its
// subscription is live.
func subscribed(t *testing.T) (context.Context, *redis.Client, *Hub) {
	t.Helper()
	rdb := redistest.Start(t).Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := Start(ctx, rdb, "events", slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.Eventually(t, func() bool {
		n, _ := rdb.PubSubNumSub(ctx, "events").Result()
		return n["events"] == 1
	}, 5*time.Second, 10*time.Millisecond)
	return ctx, rdb, h
}
