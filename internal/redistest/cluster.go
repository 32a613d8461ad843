package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of masters only, each a redis-server child
// on loopback, owned by a test.
type Cluster struct {
	Nodes []*Server
}

// slots is the number of hash slots of a Redis Cluster.
const slots = 16384

// StartCluster starts masters (at least 3 makes a real cluster: keys of
// different hash tags land on different processes) and joins them: each
// node gets an equal range of slots and meets the others, as
// `redis-cli --cluster create … --cluster-replicas 0` does. It returns once
// every node reports cluster_state:ok and sees every slot covered.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	c := &Cluster{}
	buses := make([]int, masters)
	for i := range masters {
		c.Nodes = append(c.Nodes, startWith(t, func() ([]string, error) {
			bus, err := FreePort() // the cluster bus; port+10000 may be out of range
			if err != nil {
				return nil, err
			}
			buses[i] = bus
			return []string{
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "5000",
			}, nil
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := make([]*redis.Client, len(c.Nodes))
	for i, n := range c.Nodes {
		clients[i] = n.Client(t)
		lo, hi := i*slots/masters, (i+1)*slots/masters-1
		args := []any{"CLUSTER", "ADDSLOTS"}
		for s := lo; s <= hi; s++ {
			args = append(args, s)
		}
		if err := clients[i].Do(ctx, args...).Err(); err != nil {
			t.Fatalf("cluster node %s: ADDSLOTS %d-%d: %v", n.Addr, lo, hi, err)
		}
		if err := clients[i].Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			t.Fatalf("cluster node %s: SET-CONFIG-EPOCH: %v", n.Addr, err)
		}
	}
	for i, n := range c.Nodes[1:] {
		host, port, _ := strings.Cut(n.Addr, ":")
		// The bus port is named: it is not port+10000 here.
		if err := clients[0].Do(ctx, "CLUSTER", "MEET", host, port, buses[i+1]).Err(); err != nil {
			t.Fatalf("cluster: MEET %s: %v", n.Addr, err)
		}
	}
	for i, n := range c.Nodes {
		for {
			info, err := clients[i].ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_slots_ok:"+strconv.Itoa(slots)) &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(masters)) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("cluster node %s never reached cluster_state:ok: %v\n%s", n.Addr, err, info)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return c
}

// Addrs are the nodes' host:port, the cluster's seeds.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// URL is REDIS_URL for the cluster: the comma list of its seeds.
func (c *Cluster) URL() string { return strings.Join(c.Addrs(), ",") }

// ClusterClient returns a go-redis cluster client closed when the test
// ends.
func (c *Cluster) ClusterClient(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func (c *Cluster) String() string { return fmt.Sprintf("cluster %s", c.URL()) }
