package runstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Hash fields of a run that reuse: tree writes.
const (
	fReuseKey   = "reuse_key"   // git tree id ":" pipeline hash, once fetched
	fReusedFrom = "reused_from" // the passed run whose result a reused run carries
)

// CacheGeneration is the pipeline's cache generation (0 before any clear).
func (s *Store) CacheGeneration(ctx context.Context) (int64, error) {
	n, err := s.rdb.Get(ctx, s.keys.CacheGeneration()).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cache generation: %w", err)
	}
	return n, nil
}

// ClearCache moves the pipeline's cache generation on: every worker wipes
// its slots of an older one before the next run takes them (package
// cache). It returns the new generation.
func (s *Store) ClearCache(ctx context.Context) (int64, error) {
	n, err := s.rdb.Incr(ctx, s.keys.CacheGeneration()).Result()
	if err != nil {
		return 0, fmt.Errorf("clear cache: %w", err)
	}
	return n, nil
}

// SetFetchedReusable is SetFetched for a pipeline with reuse: tree: it
// also records the run's reuse key, which IndexPassed files once the run
// passes.
func (s *Store) SetFetchedReusable(ctx context.Context, id int64, sha, version, key string) (Outcome, error) {
	return s.setFields(ctx, "set sha, version and reuse key of", id, fSHA, sha, fVersion, version, fReuseKey, key)
}

// reuseScript settles a building run passed at once, with the result of
// the passed run its reuse key names: that run's gates (their log refs
// still the earlier run's) and version, and reused_from naming it. It is
// the run's one terminal write (luaPrelude's terminal). The earlier run's
// hash is derived from KEYS[1] (luaPrelude's runkey): which run it is is
// only known inside the script.
//
// KEYS[1..3], ARGV[1..4] as for every terminal write (luaPrelude)
// KEYS[4] run hash
// KEYS[5] reuse index
// KEYS[6] reused-by hash
// ARGV[5] run id
// ARGV[6] the run's full sha
// ARGV[7] its reuse key
//
// Returns {-1} no such run, {0} run is terminal, {1, earlier id} settled
// passed, {2} no passed run to reuse (an index entry naming a run that is
// gone or did not pass is dropped).
var reuseScript = newScript(`
local r = redis.call("HGET", KEYS[4], "result")
if not r then return {-1} end
if r ~= BUILDING then return {0} end
local from = redis.call("HGET", KEYS[5], ARGV[7])
if not from then return {2} end
local fkey = runkey(from)
local f = redis.call("HMGET", fkey, "result", "version")
if f[1] ~= PASSED then
  redis.call("HDEL", KEYS[5], ARGV[7])
  return {2}
end
local all = redis.call("HGETALL", fkey)
for i = 1, #all, 2 do
  if string.sub(all[i], 1, #GATE_PREFIX) == GATE_PREFIX then
    redis.call("HSET", KEYS[4], all[i], all[i + 1])
  end
end
redis.call("HSET", KEYS[4], "sha", ARGV[6], "version", f[2] or "", "reused_from", from, "reuse_key", ARGV[7])
redis.call("HSET", KEYS[6], from, ARGV[5])
terminal(KEYS[4], ARGV[5], PASSED, "")
return {1, tonumber(from)}
`)

// Reuse settles run id (fetched at sha, with reuse key key) passed with
// the result of the passed run key names, if there is one. It reports the
// outcome (Applied: settled; Finished: the run was already terminal) and
// the earlier run's id; with no run to reuse it returns 0, 0.
func (s *Store) Reuse(ctx context.Context, id int64, sha, key string) (Outcome, int64, error) {
	res, err := reuseScript.Run(ctx, s.rdb,
		s.terminalKeys(s.keys.Run(id), s.keys.ReuseIndex(), s.keys.ReusedBy()),
		s.terminalArgs(id, sha, key)...).Int64Slice()
	if err == nil && len(res) == 0 {
		err = errors.New("empty reply")
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reuse for run %d: %w", id, err)
	}
	switch res[0] {
	case 1:
		if len(res) < 2 {
			return 0, 0, fmt.Errorf("reuse for run %d: unexpected return %v", id, res)
		}
		return Applied, res[1], nil
	case 2:
		return 0, 0, nil
	}
	o, err := guardedCode("reuse for", id, res[0], nil)
	return o, 0, err
}

// indexScript files a passed run that built its tree under its reuse key,
// for later runs of the same tree and definition to reuse.
//
// KEYS[1] run hash
// KEYS[2] reuse index
// ARGV[1] run id
//
// Returns 1 filed, 0 not (not passed, no key, or itself a reuse).
var indexScript = newScript(`
local v = redis.call("HMGET", KEYS[1], "result", "reuse_key", "reused_from")
if v[1] == PASSED and v[2] and not v[3] then
  redis.call("HSET", KEYS[2], v[2], ARGV[1])
  return 1
end
return 0
`)

// IndexPassed files run id, once passed, in the reuse index. It reports
// whether it did.
func (s *Store) IndexPassed(ctx context.Context, id int64) (bool, error) {
	n, err := indexScript.Run(ctx, s.rdb, []string{s.keys.Run(id), s.keys.ReuseIndex()}, id).Int64()
	if err != nil {
		return false, fmt.Errorf("index run %d for reuse: %w", id, err)
	}
	return n == 1, nil
}
