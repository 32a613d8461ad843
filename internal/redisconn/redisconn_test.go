package redisconn

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/internal/testproc"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw   string
		kind  string
		addrs []string
		check func(t *testing.T, o Opt)
	}{
		{raw: "redis://127.0.0.1:6379", kind: "redis", addrs: []string{"127.0.0.1:6379"}},
		{raw: "  redis://h:1/3 ", kind: "redis", addrs: []string{"h:1"}, check: func(t *testing.T, o Opt) {
			require.Equal(t, 3, o.simple.DB)
		}},
		{raw: "redis://:s3cret@h:6379", kind: "redis", addrs: []string{"h:6379"}, check: func(t *testing.T, o Opt) {
			require.Equal(t, "s3cret", o.simple.Password)
		}},
		{raw: "rediss://h:6380", kind: "redis", addrs: []string{"h:6380"}, check: func(t *testing.T, o Opt) {
			require.NotNil(t, o.simple.TLSConfig)
			require.Equal(t, "h", o.simple.TLSConfig.ServerName)
		}},
		{raw: "redis-socket:///run/redis.sock?db=2", kind: "redis", addrs: []string{"/run/redis.sock"}, check: func(t *testing.T, o Opt) {
			require.Equal(t, "unix", o.simple.Network)
			require.Equal(t, 2, o.simple.DB)
		}},
		{raw: "127.0.0.1:6379", kind: "redis", addrs: []string{"127.0.0.1:6379"}},
		{raw: "redis-sentinel://:pw@s1:26379,s2:26379?master=mymaster", kind: "sentinel", addrs: []string{"s1:26379", "s2:26379"}, check: func(t *testing.T, o Opt) {
			require.Equal(t, "mymaster", o.failover.MasterName)
			require.Equal(t, "pw", o.failover.SentinelPassword)
		}},
		{raw: "a:7000,b:7001, c:7002", kind: "cluster", addrs: []string{"a:7000", "b:7001", "c:7002"}},
		{raw: "redis://a:7000,redis://b:7001", kind: "cluster", addrs: []string{"a:7000", "b:7001"}},
		{raw: "redis-cluster://a:7000", kind: "cluster", addrs: []string{"a:7000"}},
		{raw: "redis-cluster://u:p%40ss@a:7000,b:7001/", kind: "cluster", addrs: []string{"a:7000", "b:7001"}, check: func(t *testing.T, o Opt) {
			require.Equal(t, "u", o.cluster.Username)
			require.Equal(t, "p@ss", o.cluster.Password)
		}},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			c, err := Parse(tc.raw)
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Client.Close() })
			require.Equal(t, tc.kind, c.Kind)
			o := c.Asynq.(Opt)
			require.Equal(t, tc.addrs, o.Addrs())
			if tc.check != nil {
				tc.check(t, o)
			}
			// Every kind carries the timeouts, for both clients.
			switch o.kind {
			case "cluster":
				require.IsType(t, &redis.ClusterClient{}, c.Client)
				require.Equal(t, [5]any{DialTimeout, ReadTimeout, WriteTimeout, PoolTimeout, MaxRetries},
					[5]any{o.cluster.DialTimeout, o.cluster.ReadTimeout, o.cluster.WriteTimeout, o.cluster.PoolTimeout, o.cluster.MaxRetries})
			case "sentinel":
				require.IsType(t, &redis.Client{}, c.Client)
				require.Equal(t, [5]any{DialTimeout, ReadTimeout, WriteTimeout, PoolTimeout, MaxRetries},
					[5]any{o.failover.DialTimeout, o.failover.ReadTimeout, o.failover.WriteTimeout, o.failover.PoolTimeout, o.failover.MaxRetries})
			default:
				cl := c.Client.(*redis.Client)
				require.Equal(t, [5]any{DialTimeout, ReadTimeout, WriteTimeout, PoolTimeout, MaxRetries},
					[5]any{cl.Options().DialTimeout, cl.Options().ReadTimeout, cl.Options().WriteTimeout, cl.Options().PoolTimeout, cl.Options().MaxRetries})
			}
			// asynq (client, server, Inspector, Asynqmon) gets a fresh client
			// of the same kind from the option.
			made, ok := c.Asynq.MakeRedisClient().(redis.UniversalClient)
			require.True(t, ok)
			require.IsType(t, c.Client, made)
			require.NotSame(t, c.Client, made)
			_ = made.Close()
		})
	}
}

func TestParseErrorsNeverShowThePassword(t *testing.T) {
	t.Parallel()
	const pw = "Sup3r\"S3cr%21t"
	for _, tc := range []struct{ raw, want string }{
		{"", "REDIS_URL: empty"},
		{"localhost", `want host:port`},
		{"h:0", `port "0"`},
		{"h:99999", `port "99999"`},
		{"h:x,h:2", `cluster seed "h:x"`},
		{"h:1,", `cluster seed "": want host:port`},
		{"mysql://h:1", `unsupported scheme "mysql"`},
		{"redis://h:1/notadb", "database number"},
		{"redis-sentinel://s1:26379", "?master=<name>"},
		{"redis-cluster://a:1/0", "seeds only"},
		{"redis-cluster://:" + pw + "@a:x", `cluster seed "a:x"`},
		{"redis://:" + pw + "@h:1,b:2", "REDIS_URL"},
		{"redis://:" + pw + "@h:port", "REDIS_URL"},
		{"redis://u:" + pw + "@[::1", "REDIS_URL"},
		{"redis://u:" + pw + "@h:1/x", "REDIS_URL"},
		{"redis://u:pa55%21word@h:1/x", "database number"},
		{":" + pw + "@h:1,b:2", "no credentials"},
		{"u:" + pw + "@h:1", "want host:port"},
		{"redis-sentinel://:pa55%21word@s:1", "?master=<name>"},
		{"redis-cluster://u:%zz@a:1", "not validly escaped"},
	} {
		_, err := Parse(tc.raw)
		require.Error(t, err, "%q", tc.raw)
		msg := err.Error()
		require.Contains(t, msg, tc.want, "%q", tc.raw)
		require.True(t, strings.HasPrefix(msg, "REDIS_URL: "), msg)
		for _, leak := range []string{"Sup3r", "S3cr", pw, "pa55"} {
			require.NotContains(t, msg, leak, "%q leaked the password", tc.raw)
		}
	}
}

// An idle pub/sub subscription (runwatch's) is not cut by ReadTimeout:
// go-redis reads its messages without a deadline.
func TestIdleSubscriptionOutlivesReadTimeout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c, err := Parse(srv.URL())
	require.NoError(t, err)
	defer c.Client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps := c.Client.Subscribe(ctx, "events")
	defer ps.Close()
	msg, err := ps.Receive(ctx)
	require.NoError(t, err)
	require.IsType(t, &redis.Subscription{}, msg)

	got := make(chan any, 1)
	go func() {
		m, err := ps.Receive(ctx)
		if err != nil {
			got <- err
			return
		}
		got <- m
	}()
	time.Sleep(2*ReadTimeout + 500*time.Millisecond)
	select {
	case m := <-got:
		t.Fatalf("an idle Receive ended before any message: %v", m)
	default:
	}
	require.NoError(t, srv.Client(t).Publish(ctx, "events", "7").Err())
	select {
	case m := <-got:
		require.IsType(t, &redis.Message{}, m, "%v", m)
		require.Equal(t, "7", m.(*redis.Message).Payload)
	case <-time.After(5 * time.Second):
		t.Fatal("the message never arrived")
	}
}

// A Redis that is gone (refusing), or one that accepts and never answers,
// fails a call within a few seconds, for the run store's client and for
// asynq's; after Redis is back the next calls work without a restart.
func TestCallsFailFastAndRecover(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c, err := Parse(srv.URL())
	require.NoError(t, err)
	defer c.Client.Close()
	insp := asynq.NewInspector(c.Asynq)
	defer insp.Close()
	ctx := context.Background()
	require.NoError(t, c.Client.Set(ctx, "k", "v", 0).Err())

	srv.Stop()
	for range 3 {
		start := time.Now()
		require.Error(t, c.Client.Get(ctx, "k").Err())
		_, err := insp.Queues()
		require.Error(t, err)
		require.Less(t, time.Since(start), 3*time.Second, "a call to a stopped Redis must fail fast")
	}
	require.NoError(t, srv.Restart())
	require.Eventually(t, func() bool {
		_, qerr := insp.Queues()
		return c.Client.Ping(ctx).Err() == nil && qerr == nil
	}, 10*time.Second, 50*time.Millisecond, "the clients never recovered")

	// A server that accepts connections but never answers.
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	mute, err := Parse("redis://" + ln.Addr().String())
	require.NoError(t, err)
	defer mute.Client.Close()
	start := time.Now()
	err = mute.Client.Get(ctx, "k").Err()
	require.Error(t, err)
	var ne net.Error
	require.ErrorAs(t, err, &ne, "a timeout is a net.Error (the API maps it to 503)")
	require.Less(t, time.Since(start), (MaxRetries+1)*(ReadTimeout+WriteTimeout)+time.Second)

	// A sooner deadline of the caller's wins (ContextTimeoutEnabled).
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	require.Error(t, mute.Client.Ping(short).Err())
	require.Less(t, time.Since(start), 800*time.Millisecond)
}

// asynq's clients run a call whose context is already canceled (asynq's
// syncer retries a task's final move with one), bounded by the timeouts
// alone; the run store's client honours cancellation.
func TestAsynqClientsIgnoreCanceledContexts(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c, err := Parse(srv.URL())
	require.NoError(t, err)
	defer c.Client.Close()
	made := c.Asynq.MakeRedisClient().(redis.UniversalClient)
	defer made.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, made.Set(ctx, "k", "v", 0).Err())
	_, err = made.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, "k"); return nil })
	require.NoError(t, err)
	require.ErrorIs(t, c.Client.Get(ctx, "k").Err(), context.Canceled)
}

// go-redis's own complaints (here: a refused dial) come out through slog.
func TestSetLogger(t *testing.T) {
	var buf testproc.Buffer // go-redis logs from its own goroutines
	SetLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	c, err := Parse("redis://" + addr)
	require.NoError(t, err)
	defer c.Client.Close()
	require.Error(t, c.Client.Ping(context.Background()).Err())
	require.Eventually(t, func() bool {
		return strings.Contains(buf.String(), `"source":"go-redis"`) && strings.Contains(buf.String(), `"level":"WARN"`)
	}, 2*time.Second, 10*time.Millisecond, "logged: %s", buf.String())
}

// redis-sentinel:// finds the master through a real Sentinel, for the run
// store's client and asynq's alike.
func TestSentinel(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "sando")
	c, err := Parse("redis-sentinel://" + sentinel.Addr + "?master=sando")
	require.NoError(t, err)
	defer c.Client.Close()
	require.Equal(t, "sentinel", c.Kind)
	ctx := context.Background()
	require.NoError(t, c.Client.Set(ctx, "via", "sentinel", 0).Err())
	require.Equal(t, "sentinel", master.Client(t).Get(ctx, "via").Val(), "the write reached the master")

	q := asynq.NewClient(c.Asynq)
	defer q.Close()
	_, err = q.Enqueue(asynq.NewTask("t", nil), asynq.Queue("q"))
	require.NoError(t, err)
	insp := asynq.NewInspector(c.Asynq)
	defer insp.Close()
	info, err := insp.GetQueueInfo("q")
	require.NoError(t, err)
	require.Equal(t, 1, info.Pending)
}

// A password given apart from the URL (REDIS_PASSWORD_FILE) reaches both
// clients, the run store's and asynq's, and overrides a wrong one in the
// URL.
func TestParseWithPassword(t *testing.T) {
	t.Parallel()
	srv := redistest.StartAuth(t, "s3cret")
	ctx := context.Background()
	bare := fmt.Sprintf("redis://127.0.0.1:%d", srv.Port())
	c, err := Parse(bare)
	require.NoError(t, err)
	defer c.Client.Close()
	require.ErrorContains(t, c.Client.Ping(ctx).Err(), "NOAUTH", "without the password Redis refuses")
	for _, raw := range []string{bare, fmt.Sprintf("redis://:wrong@127.0.0.1:%d", srv.Port())} {
		c, err := ParseWithPassword(raw, "s3cret")
		require.NoError(t, err)
		require.NoError(t, c.Client.Ping(ctx).Err(), raw)
		insp := asynq.NewInspector(c.Asynq)
		_, err = insp.Queues()
		require.NoError(t, err, "asynq's clients get the password too")
		require.NoError(t, insp.Close())
		require.NoError(t, c.Client.Close())
	}
}
