package runstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"sando/headline"
	"sando/run"
)

// heartbeatScript records that a running phase is alive. It changes no
// field of the view (no publish): long-poll waiters do not
// wake for it.
//
// KEYS[1] run hash
// ARGV[1] now (RFC 3339)
//
// Returns -1 no such run, 0 run is terminal, 1 applied.
var heartbeatScript = redis.NewScript(`
local r = redis.call("HGET", KEYS[1], "result")
if not r then return -1 end
if r ~= "building" then return 0 end
redis.call("HSET", KEYS[1], "progress_at", ARGV[1])
return 1
`)

// Heartbeat refreshes a building run's progress_at.
func (s *Store) Heartbeat(ctx context.Context, id int64) (Outcome, error) {
	code, err := heartbeatScript.Run(ctx, s.rdb, []string{s.keys.Run(id)}, s.stamp()).Int64()
	return guardedCode("heartbeat of", id, code, err)
}

// Building lists the runs still building with their phase and last sign
// of life: one SMEMBERS and one pipelined HMGET per run.
func (s *Store) Building(ctx context.Context) ([]*run.Run, error) {
	ids, err := s.rdb.SMembers(ctx, s.keys.Building()).Result()
	if err != nil {
		return nil, fmt.Errorf("building runs: %w", err)
	}
	cmds := make([]*redis.SliceCmd, len(ids))
	nums := make([]int64, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, raw := range ids {
			nums[i], _ = strconv.ParseInt(raw, 10, 64)
			cmds[i] = p.HMGet(ctx, s.keys.Run(nums[i]), fResult, fPhase, fProgress, fStarted)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("building runs: %w", err)
	}
	out := make([]*run.Run, 0, len(ids))
	for i, c := range cmds {
		v := c.Val()
		if len(v) < 4 || v[0] == nil {
			continue
		}
		str := func(x any) string { s, _ := x.(string); return s }
		r := &run.Run{ID: nums[i], Result: run.Result(str(v[0])), Phase: run.Phase(str(v[1]))}
		r.ProgressAt, _ = time.Parse(time.RFC3339Nano, str(v[2]))
		r.StartedAt, _ = time.Parse(time.RFC3339Nano, str(v[3]))
		if r.Result == run.ResultBuilding {
			out = append(out, r)
		}
	}
	return out, nil
}

// expireScript fails a building run only if it made no progress since the
// janitor looked: a heartbeat in between saves it.
//
// KEYS[1] run hash
// KEYS[2] building set
// KEYS[3] outbox sorted set, only when the pipeline has webhooks
// ARGV[1] progress_at the janitor saw
// ARGV[2] failure summary
// ARGV[3] now (RFC 3339)
// ARGV[4] run id
// ARGV[5] events channel
// ARGV[6] now (unix ms): the outbox score, with KEYS[3]
//
// Returns -1 no such run, 0 already terminal, 1 failed it, 2 it progressed.
var expireScript = redis.NewScript(`
local cur = redis.call("HMGET", KEYS[1], "result", "progress_at")
if not cur[1] then return -1 end
if cur[1] ~= "building" then return 0 end
if (cur[2] or "") ~= ARGV[1] then return 2 end
redis.call("HSET", KEYS[1], "result", "failed", "phase", "done", "finished_at", ARGV[3],
  "failure_summary", ARGV[2])
redis.call("SREM", KEYS[2], ARGV[4])
if KEYS[3] then redis.call("ZADD", KEYS[3], ARGV[6], ARGV[4]) end
redis.call("PUBLISH", ARGV[5], ARGV[4])
return 1
`)

// Expire fails a run the janitor found stalled, unless it progressed since
// (seen is the progress_at the janitor read). It reports whether it failed
// the run.
func (s *Store) Expire(ctx context.Context, id int64, seen time.Time, summary string) (bool, error) {
	now := s.now()
	keys, args := s.outboxArgs([]string{s.keys.Run(id), s.keys.Building()},
		[]any{seen.UTC().Format(timeLayout), headline.Truncate(summary), now.UTC().Format(timeLayout), id, s.keys.Events()},
		now)
	code, err := expireScript.Run(ctx, s.rdb, keys, args...).Int64()
	o, err := guardedCode("expire", id, code, err)
	return o == Applied, err
}

// CountBuilding is how many runs are building (one SCARD).
func (s *Store) CountBuilding(ctx context.Context) (int64, error) {
	return s.rdb.SCard(ctx, s.keys.Building()).Result()
}

// pruneScript deletes finished runs older than a cutoff, oldest first,
// never the newest keep runs and never the last passed run (/state shows
// it).
//
// KEYS[1] runs sorted set
// KEYS[2] last passed id
// ARGV[1] run hash prefix
// ARGV[2] cutoff (RFC 3339 UTC with milliseconds: compares as a string)
// ARGV[3] how many of the newest runs to keep whatever their age
// ARGV[4] most runs to delete in this call
//
// Returns the deleted ids.
var pruneScript = redis.NewScript(`
local keep = tonumber(ARGV[3])
local candidates = redis.call("ZRANGE", KEYS[1], 0, -(keep + 1))
local protect = redis.call("GET", KEYS[2]) or ""
local deleted = {}
for _, id in ipairs(candidates) do
  if #deleted >= tonumber(ARGV[4]) then break end
  local key = ARGV[1] .. id
  local r = redis.call("HMGET", key, "result", "finished_at")
  if not r[1] then
    redis.call("ZREM", KEYS[1], id)
  elseif r[1] ~= "building" and id ~= protect and r[2] and r[2] < ARGV[2] then
    redis.call("DEL", key)
    redis.call("ZREM", KEYS[1], id)
    table.insert(deleted, tonumber(id))
  end
end
return deleted
`)

// Prune deletes up to limit finished runs that ended before cutoff, keeping
// the newest keep runs and the last passed one. It returns the deleted ids
// so their logs and staged artifacts can go too.
func (s *Store) Prune(ctx context.Context, cutoff time.Time, keep, limit int) ([]int64, error) {
	ids, err := pruneScript.Run(ctx, s.rdb, []string{s.keys.Runs(), s.keys.LastPassed()},
		s.keys.RunPrefix(), cutoff.UTC().Format(timeLayout), keep, limit,
	).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("prune runs: %w", err)
	}
	return ids, nil
}
