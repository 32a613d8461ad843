package runstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/failure"
	"sando.dev/sando/internal/vocab"
)

// heartbeatScript records that a running phase is alive. It changes no
// field of the view (no publish): long-poll waiters do not
// wake for it.
//
// KEYS[1] run hash
// ARGV[1] now (RFC 3339)
//
// Returns -1 no such run, 0 run is terminal, 1 applied.
var heartbeatScript = newScript(`
local r = redis.call("HGET", KEYS[1], "result")
if not r then return -1 end
if r ~= BUILDING then return 0 end
redis.call("HSET", KEYS[1], "progress_at", ARGV[1])
return 1
`)

// Heartbeat refreshes a building run's progress_at.
func (s *Store) Heartbeat(ctx context.Context, id int64) (Outcome, error) {
	code, err := heartbeatScript.Run(ctx, s.rdb, []string{s.keys.Run(id)}, s.stamp()).Int64()
	return guardedCode("heartbeat of", id, code, err)
}

// Building lists the runs still building with their phase, last sign of
// life and definition: one SMEMBERS and one pipelined HMGET per run.
func (s *Store) Building(ctx context.Context) ([]*vocab.Run, error) {
	ids, err := s.rdb.SMembers(ctx, s.keys.Building()).Result()
	if err != nil {
		return nil, fmt.Errorf("building runs: %w", err)
	}
	cmds := make([]*redis.SliceCmd, len(ids))
	nums := make([]int64, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, raw := range ids {
			nums[i], _ = strconv.ParseInt(raw, 10, 64)
			cmds[i] = p.HMGet(ctx, s.keys.Run(nums[i]), fResult, fPhase, fProgress, fStarted, fDef, fDisk, fWorker)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("building runs: %w", err)
	}
	out := make([]*vocab.Run, 0, len(ids))
	for i, c := range cmds {
		v := c.Val()
		if len(v) < 7 || v[0] == nil {
			continue
		}
		str := func(x any) string { s, _ := x.(string); return s }
		r := &vocab.Run{ID: nums[i], Pipeline: s.pipeline, Result: vocab.Result(str(v[0])), Phase: vocab.Phase(str(v[1])), Definition: str(v[4]),
			Disk: str(v[5]), Worker: str(v[6])}
		r.ProgressAt, _ = time.Parse(time.RFC3339Nano, str(v[2]))
		r.StartedAt, _ = time.Parse(time.RFC3339Nano, str(v[3]))
		if r.Result == vocab.ResultBuilding {
			out = append(out, r)
		}
	}
	return out, nil
}

// expireScript fails a building run only if it made no progress since the
// janitor looked: a heartbeat in between saves it.
//
// KEYS[1..3], ARGV[1..4] as for every terminal write (luaPrelude)
// KEYS[4] run hash
// ARGV[5] run id
// ARGV[6] progress_at the janitor saw
// ARGV[7] failure summary
//
// Returns -1 no such run, 0 already terminal, 1 failed it, 2 it progressed.
var expireScript = newScript(`
local cur = redis.call("HMGET", KEYS[4], "result", "progress_at")
if not cur[1] then return -1 end
if cur[1] ~= BUILDING then return 0 end
if (cur[2] or "") ~= ARGV[6] then return 2 end
terminal(KEYS[4], ARGV[5], FAILED, ARGV[7])
return 1
`)

// Expire fails a run the janitor found stalled, unless it progressed since
// (seen is the progress_at the janitor read). It reports whether it failed
// the run.
func (s *Store) Expire(ctx context.Context, id int64, seen time.Time, summary string) (bool, error) {
	code, err := expireScript.Run(ctx, s.rdb, s.terminalKeys(s.keys.Run(id)),
		s.terminalArgs(id, seen.UTC().Format(vocab.TimeLayout), failure.Truncate(summary))...).Int64()
	o, err := guardedCode("expire", id, code, err)
	return o == Applied, err
}

// CountBuilding is how many runs are building (one SCARD).
func (s *Store) CountBuilding(ctx context.Context) (int64, error) {
	return s.rdb.SCard(ctx, s.keys.Building()).Result()
}

// pruneScript deletes finished runs older than a cutoff, oldest first,
// never the newest keep runs and never the last passed run (/state shows
// it). The run hashes are derived from KEYS[1] (luaPrelude's runkey): which
// runs are old enough is only known inside the script.
//
// A run another kept run reused is kept too (its gates' logs are this
// run's); a deleted run leaves the reuse index if the index names it.
//
// KEYS[1] building set (only its hash tag is read, for runkey)
// KEYS[2] last passed id
// KEYS[3] runs sorted set
// KEYS[4] reuse index
// KEYS[5] reused-by hash
// ARGV[1] cutoff (RFC 3339 UTC with milliseconds: compares as a string)
// ARGV[2] how many of the newest runs to keep whatever their age
// ARGV[3] most runs to delete in this call
//
// Returns the deleted ids.
var pruneScript = newScript(`
local keep = tonumber(ARGV[2])
local candidates = redis.call("ZRANGE", KEYS[3], 0, -(keep + 1))
local protect = redis.call("GET", KEYS[2]) or ""
local deleted = {}
local function reused(id)
  local by = redis.call("HGET", KEYS[5], id)
  return by and redis.call("EXISTS", runkey(by)) == 1
end
for _, id in ipairs(candidates) do
  if #deleted >= tonumber(ARGV[3]) then break end
  local key = runkey(id)
  local r = redis.call("HMGET", key, "result", "finished_at")
  if not r[1] then
    redis.call("ZREM", KEYS[3], id)
  elseif r[1] ~= BUILDING and id ~= protect and r[2] and r[2] < ARGV[1] and not reused(id) then
    local rk = redis.call("HGET", key, "reuse_key")
    if rk and redis.call("HGET", KEYS[4], rk) == id then redis.call("HDEL", KEYS[4], rk) end
    redis.call("HDEL", KEYS[5], id)
    redis.call("DEL", key)
    redis.call("ZREM", KEYS[3], id)
    table.insert(deleted, tonumber(id))
  end
end
return deleted
`)

// Prune deletes up to limit finished runs that ended before cutoff, keeping
// the newest keep runs and the last passed one. It returns the deleted ids
// so their logs and staged artifacts can go too.
func (s *Store) Prune(ctx context.Context, cutoff time.Time, keep, limit int) ([]int64, error) {
	ids, err := pruneScript.Run(ctx, s.rdb, []string{s.keys.Building(), s.keys.LastPassed(), s.keys.Runs(),
		s.keys.ReuseIndex(), s.keys.ReusedBy()},
		cutoff.UTC().Format(vocab.TimeLayout), keep, limit,
	).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("prune runs: %w", err)
	}
	if err := s.fleet.forget(ctx, ids); err != nil {
		return ids, fmt.Errorf("prune runs: %w", err)
	}
	return ids, nil
}

// Suspect records that the janitor found run id's worker silent with the
// run's progress at seen, and reports whether it had already, at the same
// progress: then the run is lost.
func (s *Store) Suspect(ctx context.Context, id int64, seen time.Time) (bool, error) {
	stamp := seen.UTC().Format(vocab.TimeLayout)
	field := strconv.FormatInt(id, 10)
	prev, err := s.rdb.HGet(ctx, s.keys.Suspects(), field).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("suspect run %d: %w", id, err)
	}
	if prev == stamp {
		return true, nil
	}
	if err := s.rdb.HSet(ctx, s.keys.Suspects(), field, stamp).Err(); err != nil {
		return false, fmt.Errorf("suspect run %d: %w", id, err)
	}
	return false, nil
}

// Clear drops run ids from the janitor's suspects.
func (s *Store) Clear(ctx context.Context, ids ...int64) error {
	return hdelIDs(ctx, s.rdb, s.keys.Suspects(), ids)
}
