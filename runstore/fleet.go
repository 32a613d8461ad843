package runstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fleet reads and writes the keys every pipeline of a deployment shares:
// the run id counter, which pipeline each run belongs to, and the
// pipelines that have runs.
type Fleet struct {
	rdb  redis.UniversalClient
	keys FleetKeys
}

// NewFleet returns the deployment's shared keys on rdb.
func NewFleet(rdb redis.UniversalClient) *Fleet { return &Fleet{rdb: rdb} }

// allocateScript hands out the next run id for a pipeline and records
// whose it is, in one step, so no run exists that /runs/{id} cannot find.
//
// KEYS[1] fleet seq counter
// KEYS[2] run id → pipeline hash
// KEYS[3] pipelines set
// ARGV[1] pipeline name
//
// Returns the new id.
var allocateScript = redis.NewScript(`
local id = redis.call("INCR", KEYS[1])
redis.call("HSET", KEYS[2], id, ARGV[1])
redis.call("SADD", KEYS[3], ARGV[1])
return id
`)

// Allocate returns a new run id for pipeline, unique across the deployment.
func (f *Fleet) Allocate(ctx context.Context, pipeline string) (int64, error) {
	id, err := allocateScript.Run(ctx, f.rdb,
		[]string{f.keys.Seq(), f.keys.RunPipeline(), f.keys.Pipelines()}, pipeline).Int64()
	if err != nil {
		return 0, fmt.Errorf("allocate run id: %w", err)
	}
	return id, nil
}

// PipelineOf is the pipeline run id belongs to, or ErrNotFound.
func (f *Fleet) PipelineOf(ctx context.Context, id int64) (string, error) {
	name, err := f.rdb.HGet(ctx, f.keys.RunPipeline(), strconv.FormatInt(id, 10)).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("pipeline of run %d: %w", id, err)
	}
	return name, nil
}

// Adopted reports whether the fleet's counter exists: an API of this
// version has started (Adopt) or made a run, so every run is indexed.
func (f *Fleet) Adopted(ctx context.Context) (bool, error) {
	n, err := f.rdb.Exists(ctx, f.keys.Seq()).Result()
	if err != nil {
		return false, fmt.Errorf("fleet counter: %w", err)
	}
	return n == 1, nil
}

// Pipelines lists every pipeline that has had a run, sorted.
func (f *Fleet) Pipelines(ctx context.Context) ([]string, error) {
	names, err := f.rdb.SMembers(ctx, f.keys.Pipelines()).Result()
	if err != nil {
		return nil, fmt.Errorf("pipelines: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

// raiseScript sets a counter to at least ARGV[1].
//
// KEYS[1] counter
// ARGV[1] floor
//
// Returns the counter's value after.
var raiseScript = redis.NewScript(`
local cur = tonumber(redis.call("GET", KEYS[1]) or "0")
local floor = tonumber(ARGV[1])
if floor > cur then redis.call("SET", KEYS[1], floor); return floor end
return cur
`)

// Adopt makes the pipelines known to the fleet and keeps run ids above
// every id they handed out before ids were deployment-wide (each
// pipeline then counted its own, in its seq key), and indexes their runs,
// so an upgrade keeps every existing run and its id. It is idempotent; the
// API calls it at start and on reload.
func (f *Fleet) Adopt(ctx context.Context, pipelines []string) error {
	if len(pipelines) == 0 {
		return nil
	}
	members := make([]any, len(pipelines))
	for i, p := range pipelines {
		members[i] = p
	}
	if err := f.rdb.SAdd(ctx, f.keys.Pipelines(), members...).Err(); err != nil {
		return fmt.Errorf("adopt pipelines: %w", err)
	}

	for _, p := range pipelines {
		k := NewKeys(p)
		old, err := f.rdb.Get(ctx, k.Seq()).Int64()
		if errors.Is(err, redis.Nil) {
			continue // a pipeline born deployment-wide: nothing to carry over
		}
		if err != nil {
			return fmt.Errorf("adopt pipeline %s: %w", p, err)
		}
		if err := raiseScript.Run(ctx, f.rdb, []string{f.keys.Seq()}, old).Err(); err != nil {
			return fmt.Errorf("adopt pipeline %s: %w", p, err)
		}
		ids, err := f.rdb.ZRange(ctx, k.Runs(), 0, -1).Result()
		if err != nil {
			return fmt.Errorf("adopt pipeline %s: %w", p, err)
		}
		if len(ids) == 0 {
			continue
		}
		index := make([]any, 0, 2*len(ids))
		for _, id := range ids {
			index = append(index, id, p)
		}
		// A run id belongs to one pipeline forever, so writing the same
		// pairs again on every start is harmless (and bounded by retention).
		if err := f.rdb.HSet(ctx, f.keys.RunPipeline(), index...).Err(); err != nil {
			return fmt.Errorf("adopt pipeline %s: %w", p, err)
		}
	}
	// Every old run is indexed: the counter exists from now on (Adopted),
	// at 0 if nothing was carried over.
	if err := f.rdb.IncrBy(ctx, f.keys.Seq(), 0).Err(); err != nil {
		return fmt.Errorf("adopt pipelines: %w", err)
	}
	return nil
}

// forget drops pruned runs from the index.
func (f *Fleet) forget(ctx context.Context, ids []int64) error {
	return hdelIDs(ctx, f.rdb, f.keys.RunPipeline(), ids)
}

// hdelIDs deletes the fields named by run ids from hash key.
func hdelIDs(ctx context.Context, rdb redis.UniversalClient, key string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	fields := make([]string, len(ids))
	for i, id := range ids {
		fields[i] = strconv.FormatInt(id, 10)
	}
	return rdb.HDel(ctx, key, fields...).Err()
}

// Beat records that a worker on data dir disk is alive now.
func (f *Fleet) Beat(ctx context.Context, disk string, now time.Time) error {
	if err := f.rdb.ZAdd(ctx, f.keys.Disks(), redis.Z{Score: float64(now.UnixMilli()), Member: disk}).Err(); err != nil {
		return fmt.Errorf("worker heartbeat: %w", err)
	}
	return nil
}

// LastSeen is when a worker on data dir disk last said it was alive; zero
// if none ever did.
func (f *Fleet) LastSeen(ctx context.Context, disk string) (time.Time, error) {
	ms, err := f.rdb.ZScore(ctx, f.keys.Disks(), disk).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("last seen of %s: %w", disk, err)
	}
	return time.UnixMilli(int64(ms)), nil
}
