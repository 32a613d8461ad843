package runstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/vocab"
)

// Recent returns up to n newest runs of each store, in the stores' order,
// in two pipelined round trips whatever the number of stores: one
// ZREVRANGE per store, then one HGETALL per run. The stores must share rdb
// (a Redis Cluster client splits each pipeline by node itself).
func Recent(ctx context.Context, rdb redis.UniversalClient, stores []*Store, n int) ([][]*vocab.Run, error) {
	out := make([][]*vocab.Run, len(stores))
	if len(stores) == 0 || n <= 0 {
		return out, nil
	}
	ranges := make([]*redis.StringSliceCmd, len(stores))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range stores {
			ranges[i] = p.ZRevRange(ctx, s.keys.Runs(), 0, int64(n-1))
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("recent runs: %w", err)
	}
	type at struct {
		store int
		id    int64
		cmd   *redis.MapStringStringCmd
	}
	var gets []at
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range stores {
			for _, raw := range ranges[i].Val() {
				id, _ := strconv.ParseInt(raw, 10, 64)
				gets = append(gets, at{store: i, id: id, cmd: p.HGetAll(ctx, s.keys.Run(id))})
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("recent runs: %w", err)
	}
	for _, g := range gets {
		if m := g.cmd.Val(); len(m) > 0 { // pruned between the two calls: skip
			out[g.store] = append(out[g.store], stores[g.store].decodeRun(g.id, m))
		}
	}
	return out, nil
}
