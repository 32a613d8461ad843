package runstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/vocab"
)

// Deployment is what a pipeline's /state is made of: its newest passed
// run with the gates of its tier at that run's version, and its newest
// run of any result. A nil run: there is none.
type Deployment struct {
	LastPassed *vocab.Run
	TierGates  []vocab.Gate
	Latest     *vocab.Run
}

// Deployments reads the Deployment of each store (tiers[i] is stores[i]'s
// tier) in three pipelined round trips, whatever the number of stores: the
// last passed pointers and newest ids, then those runs, then the tier
// gates. GET /pipelines with fifty pipelines costs three round trips, not
// one hundred and fifty. The stores must share rdb (a Redis Cluster client
// splits each pipeline by node itself).
func Deployments(ctx context.Context, rdb redis.UniversalClient, stores []*Store, tiers []string) ([]Deployment, error) {
	out := make([]Deployment, len(stores))
	if len(stores) == 0 {
		return out, nil
	}
	passed := make([]*redis.StringCmd, len(stores))
	newest := make([]*redis.StringSliceCmd, len(stores))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range stores {
			passed[i] = p.Get(ctx, s.keys.LastPassed())
			newest[i] = p.ZRevRange(ctx, s.keys.Runs(), 0, 0)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) { // no passed run yet: Nil
		return nil, fmt.Errorf("deployments: %w", err)
	}
	type read struct {
		id  int64
		cmd *redis.MapStringStringCmd
	}
	lastRuns := make([]read, len(stores))
	latestRuns := make([]read, len(stores))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range stores {
			if id, err := passed[i].Int64(); err == nil {
				lastRuns[i] = read{id, p.HGetAll(ctx, s.keys.Run(id))}
			}
			if ids := newest[i].Val(); len(ids) > 0 {
				id, _ := strconv.ParseInt(ids[0], 10, 64)
				latestRuns[i] = read{id, p.HGetAll(ctx, s.keys.Run(id))}
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("deployments: %w", err)
	}
	decoded := func(s *Store, r read) *vocab.Run {
		if r.cmd == nil || len(r.cmd.Val()) == 0 { // none, or pruned meanwhile
			return nil
		}
		return s.decodeRun(r.id, r.cmd.Val())
	}
	gates := make([]*redis.MapStringStringCmd, len(stores))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range stores {
			out[i].Latest = decoded(s, latestRuns[i])
			if out[i].LastPassed = decoded(s, lastRuns[i]); out[i].LastPassed != nil {
				gates[i] = p.HGetAll(ctx, s.keys.TierGates(tiers[i], out[i].LastPassed.Version))
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("deployments: %w", err)
	}
	for i, g := range gates {
		if g != nil {
			out[i].TierGates = decodeTierGates(g.Val())
		}
	}
	return out, nil
}
