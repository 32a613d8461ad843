package runstore

import (
	"strconv"

	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/vocab"
)

// luaPrelude is put in front of every script of this package. It names
// the vocabulary from run's constants (so no script spells "building"),
// and holds the one terminal write, which create (supersede), settle and
// expire share.
//
// Keys a script cannot know beforehand, the run hashes a supersede walks
// over and the tier gates hash of a run's version (which a gate's phase
// write reads in the same step), are derived from KEYS[1] (a key of the
// pipeline's): its prefix up to and including the hash tag's "}:" is the
// pipeline's, so every derived key stays in KEYS[1]'s Redis Cluster slot.
//
// Every script that may settle a run takes the same first keys and
// arguments, which terminal() reads:
//
//	KEYS[1] building set
//	KEYS[2] last passed id
//	KEYS[3] outbox sorted set (used only when ARGV[4] is "1")
//	ARGV[1] events channel
//	ARGV[2] now (RFC 3339)
//	ARGV[3] now (unix ms): the outbox score
//	ARGV[4] "1" when the pipeline has webhooks (keeps an outbox), else "0"
var luaPrelude = `
local BUILDING, ABORTED, FAILED, PASSED = ` +
	strconv.Quote(string(vocab.ResultBuilding)) + `, ` + strconv.Quote(string(vocab.ResultAborted)) + `, ` +
	strconv.Quote(string(vocab.ResultFailed)) + `, ` + strconv.Quote(string(vocab.ResultPassed)) + `
local QUEUED, DONE = ` + strconv.Quote(string(vocab.PhaseQueued)) + `, ` + strconv.Quote(string(vocab.PhaseDone)) + `
local BLOCKED, PASSED_GATE = ` + strconv.Quote(string(vocab.GateBlocked)) + `, ` + strconv.Quote(string(vocab.GatePassed)) + `
local GATE_PREFIX, GATE_SEP = ` + strconv.Quote(gatePrefix) + `, ` + strconv.Quote(gateValSep) + `
local PHASE_PREFIX = ` + strconv.Quote(phasePrefix) + `
local FETCHING = ` + strconv.Quote(string(vocab.PhaseFetching)) + `

-- gatefield is part n (1: status, 2: log ref, 3: run id, 4: started,
-- 5: finished, 6: test counts) of an encoded gate, "" when absent.
local function gatefield(v, n)
  if not v then return "" end
  local i = 1
  for part in string.gmatch(v .. GATE_SEP, "(.-)" .. GATE_SEP) do
    if i == n then return part end
    i = i + 1
  end
  return ""
end

-- pipekey is the pipeline's key named rest: KEYS[1]'s prefix up to and
-- including its hash tag's "}:", then rest (Keys in keys.go, in Lua).
local function pipekey(rest)
  return string.match(KEYS[1], "^(.-}:)") .. rest
end

-- runkey is the hash of run id (Keys.Run).
local function runkey(id)
  return pipekey(` + strconv.Quote(runSegment) + ` .. id)
end

-- tierkey is the hash of the latest gate results of (tier, version)
-- (Keys.TierGates).
local function tierkey(tier, version)
  return pipekey(` + strconv.Quote(tierGatesSegment) + ` .. tier .. ":" .. version)
end

-- gateentry encodes a gate: status ("" while running), log ref, run id,
-- started, finished, test counts.
local function gateentry(status, logref, id, started, finished, tests)
  return table.concat({status, logref, id, started, finished, tests}, GATE_SEP)
end

-- terminal is the one terminal write: it settles run id (whose hash is
-- key and whose result the caller checked is BUILDING) with result and
-- summary ("" for none), reports every gate still running as blocked (its
-- task is stopped: once a run is terminal no gate is in flight), takes it
-- out of the building set, moves the last passed id forward, records it
-- in the outbox and announces it.
local function terminal(key, id, result, summary)
  local all = redis.call("HGETALL", key)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, #GATE_PREFIX) == GATE_PREFIX and gatefield(all[i + 1], 1) == "" then
      local v = all[i + 1]
      redis.call("HSET", key, all[i], gateentry(BLOCKED, gatefield(v, 2), gatefield(v, 3), gatefield(v, 4), ARGV[2], ""))
    end
  end
  if summary ~= "" then
    redis.call("HSET", key, "result", result, "phase", DONE, "finished_at", ARGV[2], "failure_summary", summary)
  else
    redis.call("HSET", key, "result", result, "phase", DONE, "finished_at", ARGV[2])
  end
  redis.call("SREM", KEYS[1], id)
  if result == PASSED then
    local last = tonumber(redis.call("GET", KEYS[2]) or "0")
    if tonumber(id) > last then redis.call("SET", KEYS[2], id) end
  end
  if ARGV[4] == "1" then redis.call("ZADD", KEYS[3], ARGV[3], id) end
  redis.call("PUBLISH", ARGV[1], id)
end
`

// newScript is redis.NewScript with luaPrelude in front of body.
func newScript(body string) *redis.Script { return redis.NewScript(luaPrelude + body) }

// terminalKeys and terminalArgs are the first KEYS and ARGV of every script
// that may settle a run (see luaPrelude); callers append their own.
func (s *Store) terminalKeys(more ...string) []string {
	return append([]string{s.keys.Building(), s.keys.LastPassed(), s.keys.Outbox()}, more...)
}

func (s *Store) terminalArgs(more ...any) []any {
	now := s.now()
	outbox := "0"
	if s.outbox {
		outbox = "1"
	}
	return append([]any{s.keys.Events(), now.UTC().Format(vocab.TimeLayout), now.UnixMilli(), outbox}, more...)
}
