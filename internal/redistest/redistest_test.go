package redistest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestClusterSpreadsKeys(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := StartCluster(t, 3)
	t.Logf("cluster up in %s", time.Since(start))
	cc := c.ClusterClient(t)
	ctx := context.Background()
	owners := map[string]bool{}
	for _, k := range []string{"{a}x", "{b}x", "{c}x", "{d}x", "{e}x", "{f}x"} {
		require.NoError(t, cc.Set(ctx, k, "1", 0).Err())
		slot, err := cc.ClusterKeySlot(ctx, k).Result()
		require.NoError(t, err)
		for i := range c.Nodes {
			lo, hi := int64(i*slots/3), int64((i+1)*slots/3-1)
			if slot >= lo && slot <= hi {
				owners[c.Nodes[i].Addr] = true
			}
		}
	}
	require.Len(t, owners, 3, "keys of different hash tags live on different nodes")
}

func TestPersistentRestartKeepsData(t *testing.T) {
	t.Parallel()
	s := StartPersistent(t)
	c := s.Client(t)
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	addr := s.Addr
	require.NoError(t, s.Restart())
	require.Equal(t, addr, s.Addr)
	require.Equal(t, "v", c.Get(ctx, "k").Val())

	require.NoError(t, s.Pause())
	impatient := redis.NewClient(&redis.Options{Addr: s.Addr, ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer impatient.Close()
	require.Error(t, impatient.Get(ctx, "k").Err(), "a paused server does not answer")
	require.NoError(t, s.Resume())
	require.Eventually(t, func() bool { return c.Get(ctx, "k").Val() == "v" }, 5*time.Second, 20*time.Millisecond)
}

// A server from StartAuth refuses clients without its password, takes the
// ones with it (Client, URL), and shows the password on no command line.
func TestStartAuth(t *testing.T) {
	t.Parallel()
	s := StartAuth(t, "pw-not-on-cmdline")
	ctx := context.Background()
	require.NoError(t, s.Client(t).Ping(ctx).Err())
	anon := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer anon.Close()
	require.ErrorContains(t, anon.Ping(ctx).Err(), "NOAUTH")
	opt, err := redis.ParseURL(s.URL())
	require.NoError(t, err)
	require.Equal(t, "pw-not-on-cmdline", opt.Password)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.PID()))
	require.NoError(t, err)
	require.NotContains(t, string(cmdline), "pw-not-on-cmdline")
}
