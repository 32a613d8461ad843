package runstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/failure"
	"sando.dev/sando/internal/vocab"
)

// Every script publishes the run id on the events channel after it
// changes a run, so waiters (long-polls, a phase watching for cancel) wake
// on the write instead of polling. Return codes are small integers mapped
// in one switch on the Go side.

// createScript makes a run and, unless told not to, aborts every older run
// of the pipeline that is still building: all in one step, so of many
// racing rebuilds exactly the newest survives. The run hashes it walks are
// derived from KEYS[1] (luaPrelude's runkey): which runs are building is
// only known inside the script.
//
// KEYS[1..3], ARGV[1..4] as for every terminal write (luaPrelude)
// KEYS[4] runs sorted set
// KEYS[5] idempotency key (unused when ARGV[8] is "")
// ARGV[5] requested sha
// ARGV[6] requested ref
// ARGV[7] failure summary for superseded runs
// ARGV[8] "1" to supersede, "0" not to
// ARGV[9] request fingerprint for the idempotency key, "" for none
// ARGV[10] idempotency TTL in seconds
// ARGV[11] the new run's id (Fleet.Allocate)
// ARGV[12] pipeline name
// ARGV[13] the pipeline's definition as the run is built with it
//
// Returns {1, id, aborted id, its task id, ...} for a new run,
// {2, id} when the idempotency key already names a run with the same
// fingerprint, {3, id} when it names one started by a different request.
var createScript = newScript(`
if ARGV[9] ~= "" then
  local seen = redis.call("HMGET", KEYS[5], "id", "fp")
  if seen[1] then
    if seen[2] == ARGV[9] then return {2, tonumber(seen[1])} end
    return {3, tonumber(seen[1])}
  end
end
local id = tonumber(ARGV[11])
local out = {1, id}
if ARGV[8] == "1" then
  for _, m in ipairs(redis.call("SMEMBERS", KEYS[1])) do
    if tonumber(m) < id then
      local key = runkey(m)
      if redis.call("HGET", key, "result") == BUILDING then
        terminal(key, m, ABORTED, ARGV[7])
        table.insert(out, tonumber(m))
        table.insert(out, redis.call("HGET", key, "task_id") or "")
      else
        redis.call("SREM", KEYS[1], m)
      end
    end
  end
end
redis.call("HSET", runkey(id), "phase", QUEUED, "result", BUILDING,
  "started_at", ARGV[2], "progress_at", ARGV[2], "sha", ARGV[5], "ref", ARGV[6],
  "pipeline", ARGV[12], "def", ARGV[13])
redis.call("ZADD", KEYS[4], id, id)
redis.call("SADD", KEYS[1], id)
if ARGV[9] ~= "" then
  redis.call("HSET", KEYS[5], "id", id, "fp", ARGV[9])
  redis.call("EXPIRE", KEYS[5], ARGV[10])
end
redis.call("PUBLISH", ARGV[1], id)
return out
`)

// CreateRequest is what a trigger asks for.
type CreateRequest struct {
	SHA, Ref string
	// Definition is the pipeline as the run is built with it (a snapshot
	// taken at the trigger; workers read it from the run, not a file).
	Definition []byte
	// NoSupersede keeps older building runs alive (benchmarks, tests).
	NoSupersede bool
	// IdempotencyKey, when set, makes a retried trigger return the run the
	// first one started; Fingerprint tells a retry from a different request.
	IdempotencyKey, Fingerprint string
	IdempotencyTTL              time.Duration
}

// Superseded is an older run a create aborted, with the task to cancel.
type Superseded struct {
	ID     int64
	TaskID string
}

// Created is what Create did.
type Created struct {
	ID         int64
	Superseded []Superseded
	// Replayed: the idempotency key named an existing run; nothing was made.
	Replayed bool
}

// ErrIdempotencyConflict means the key was used before with a different request.
var ErrIdempotencyConflict = errors.New("idempotency key reused with a different request")

// Create starts a run in phase queued, aborting older building runs.
func (s *Store) Create(ctx context.Context, req CreateRequest) (Created, error) {
	supersede := "1"
	if req.NoSupersede {
		supersede = "0"
	}
	ttl := req.IdempotencyTTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	fp := ""
	if req.IdempotencyKey != "" {
		fp = cmp.Or(req.Fingerprint, "-")
	}
	// The id comes first, from the deployment's counter (another slot of
	// a Redis Cluster than the pipeline's keys). An idempotent replay
	// leaves it unused: ids are unique and increasing, not dense.
	newID, err := s.fleet.Allocate(ctx, s.pipeline)
	if err != nil {
		return Created{}, fmt.Errorf("create run: %w", err)
	}
	keys := s.terminalKeys(s.keys.Runs(), s.keys.Idempotency(req.IdempotencyKey))
	args := s.terminalArgs(req.SHA, req.Ref, vocab.SummarySuperseded, supersede, fp, int64(ttl/time.Second),
		newID, s.pipeline, string(req.Definition))
	res, err := createScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return Created{}, fmt.Errorf("create run: %w", err)
	}
	if len(res) < 2 {
		return Created{}, fmt.Errorf("create run: unexpected return %v", res)
	}
	id, _ := res[1].(int64)
	switch res[0] {
	case int64(1):
		c := Created{ID: id}
		for i := 2; i+1 < len(res); i += 2 {
			sid, _ := res[i].(int64)
			task, _ := res[i+1].(string)
			c.Superseded = append(c.Superseded, Superseded{ID: sid, TaskID: task})
		}
		return c, nil
	case int64(2):
		return Created{ID: id, Replayed: true}, nil
	case int64(3):
		return Created{ID: id}, ErrIdempotencyConflict
	default:
		return Created{}, fmt.Errorf("create run: unexpected return %v", res[0])
	}
}

// guardedCode maps the common return of the guarded scripts below:
// -1 no such run, 0 run is terminal, 1 applied, 2 stale phase.
func guardedCode(what string, id int64, code int64, err error) (Outcome, error) {
	if err != nil {
		return 0, fmt.Errorf("%s run %d: %w", what, id, err)
	}
	switch code {
	case -1:
		return 0, ErrNotFound
	case 0:
		return Finished, nil
	case 1:
		return Applied, nil
	case 2:
		return Stale, nil
	default:
		return 0, fmt.Errorf("%s run %d: unexpected return %d", what, id, code)
	}
}

// phaseScript moves a building run to a phase, records the asynq task
// now running it (the one a cancel must reach) and where it runs (the
// data dir, for the janitor's lost-worker check, and the worker, for the
// run's phases), and returns the run: the phase needs it, and reading it
// here saves a round trip per phase. Entering a phase records its start
// ("phase:<phase>" = started, worker, log ref); re-entering it (a
// redelivered task, another gate) records the worker now running it.
//
// Two writes of a step ride on it, each saving a round trip: a gate's
// "running" entry, in the run and in its version's tier gates hash (as
// gateScript writes it), and what the fetch learned (sha, version), which
// the fetch hands to the compile in its task. The fetched fields apply
// only on the step from fetching to compiling and only if no fetch
// recorded its own (SetFetched: a redelivered fetch does), so a compile
// task an earlier try of the fetch queued never overwrites a later try's.
//
// KEYS[1] run hash
// KEYS[2] the pipeline's cache generation (read on entering fetching)
// ARGV[1] new phase
// ARGV[2] task id ("" keeps the recorded one)
// ARGV[3] events channel
// ARGV[4] run id
// ARGV[5] now (RFC 3339): the run's progress_at
// ARGV[6] data dir id of the worker
// ARGV[7] worker name
// ARGV[8] log ref of the phase's step ("" for gating: each gate has its own)
// ARGV[9] gate kind to record running ("" for none)
// ARGV[10] that gate's tier
// ARGV[11] that gate's log ref
// ARGV[12] "1" when ARGV[13] and ARGV[14] are the fetched sha and version
// ARGV[15..] phases the run may be in for the write to apply
//
// Returns {-1} no such run, else {code, entered before, cache generation,
// field, value, ...} with the run's hash after the write: code 0 run is
// terminal, 1 applied, 2 run is past this phase; entered before is 1 when
// the run had entered this phase before (a re-entry), else 0; the cache
// generation ("" before any clear, and for every phase but fetching) is
// what the fetch's slot needs, read here to save the fetch a round trip.
var phaseScript = newScript(`
local pf = PHASE_PREFIX .. ARGV[1]
local cur = redis.call("HMGET", KEYS[1], "result", "phase", pf, "version")
if not cur[1] then return {-1} end
local code = 2
if cur[1] ~= BUILDING then
  code = 0
else
  for i = 15, #ARGV do
    if ARGV[i] == cur[2] then
      local started = gatefield(cur[3], 1)
      if started == "" then started = ARGV[5] end
      -- one HSET for every field
      local set = {"phase", ARGV[1], "progress_at", ARGV[5], "disk", ARGV[6], "worker", ARGV[7],
        pf, table.concat({started, ARGV[7], ARGV[8]}, GATE_SEP)}
      if ARGV[2] ~= "" then
        table.insert(set, "task_id")
        table.insert(set, ARGV[2])
      end
      local version = cur[4]
      if ARGV[12] == "1" and cur[2] == FETCHING and not version then
        version = ARGV[14]
        for _, v in ipairs({"sha", ARGV[13], "version", version}) do table.insert(set, v) end
      end
      if ARGV[9] ~= "" then
        local v = gateentry("", ARGV[11], ARGV[4], ARGV[5], "", "")
        table.insert(set, GATE_PREFIX .. ARGV[9])
        table.insert(set, v)
        redis.call("HSET", tierkey(ARGV[10], version or ""), ARGV[9], v)
      end
      redis.call("HSET", KEYS[1], unpack(set))
      redis.call("PUBLISH", ARGV[3], ARGV[4])
      code = 1
      break
    end
  end
end
local out = redis.call("HGETALL", KEYS[1])
table.insert(out, 1, code)
table.insert(out, 2, cur[3] and "1" or "0")
local gen = ""
if ARGV[1] == FETCHING then gen = redis.call("GET", KEYS[2]) or "" end
table.insert(out, 3, gen)
return out
`)

// Where is the worker running a step: its data dir's id and its name.
type Where struct{ Disk, Worker string }

// Entry is what a step's phase write records besides the phase (Enter).
type Entry struct {
	TaskID string
	Where  Where
	// LogRef is the log of the phase's step ("" for gating: each gate has
	// its own).
	LogRef string
	// Gate, when set, is the gate whose task this is: it is recorded
	// running in the same write, as SetGate records it.
	Gate *GateStart
	// Fetched, when set, is what the run's fetch learned: the step from
	// fetching to compiling records it, unless a fetch recorded its own.
	Fetched *Fetched
}

// GateStart names a gate that starts running: its kind, its pipeline's
// tier and its log.
type GateStart struct{ Kind, Tier, LogRef string }

// Fetched is what a fetch learned: the full commit id and the version
// read from the worktree.
type Fetched struct{ SHA, Version string }

// Entered is what Enter did.
type Entered struct {
	Outcome Outcome
	// Run is the run as it is after the write.
	Run *vocab.Run
	// Again: the run had entered this phase before (a redelivered task,
	// another gate).
	Again bool
	// CacheGeneration is the pipeline's cache generation as the write
	// found it (CacheGeneration), for the fetch's slot: read only when
	// entering fetching, 0 otherwise.
	CacheGeneration int64
}

// SetPhase moves a building run forward to phase (or re-enters the phase
// it is in, for a redelivered task), run by the task taskID of the worker
// at w, whose step writes the log logRef ("" for none). It never moves a
// run backwards or touches a finished one. It returns the run as it is
// after the write.
func (s *Store) SetPhase(ctx context.Context, id int64, phase vocab.Phase, taskID string, w Where, logRef string) (Outcome, *vocab.Run, error) {
	e, err := s.Enter(ctx, id, phase, Entry{TaskID: taskID, Where: w, LogRef: logRef})
	return e.Outcome, e.Run, err
}

// Enter is SetPhase with the writes that ride on it (Entry).
func (s *Store) Enter(ctx context.Context, id int64, phase vocab.Phase, e Entry) (Entered, error) {
	from := vocab.AdvanceFrom(phase)
	if len(from) == 0 {
		return Entered{}, fmt.Errorf("set phase of run %d: %q is not a phase a run advances to", id, phase)
	}
	args := []any{string(phase), e.TaskID, s.keys.Events(), id, s.stamp(), e.Where.Disk, e.Where.Worker, e.LogRef}
	var g GateStart
	if e.Gate != nil {
		g = *e.Gate
	}
	args = append(args, g.Kind, g.Tier, g.LogRef)
	if e.Fetched != nil {
		args = append(args, "1", e.Fetched.SHA, e.Fetched.Version)
	} else {
		args = append(args, "0", "", "")
	}
	for _, p := range from {
		args = append(args, string(p))
	}
	o, pairs, err := guardedPairs("set phase of", id, phaseScript.Run(ctx, s.rdb, []string{s.keys.Run(id), s.keys.CacheGeneration()}, args...))
	if err != nil || pairs == nil {
		return Entered{Outcome: o}, err
	}
	if len(pairs) < 2 {
		return Entered{Outcome: o}, fmt.Errorf("set phase of run %d: short reply %q", id, pairs)
	}
	again, gen, pairs := pairs[0] == "1", pairs[1], pairs[2:]
	m := make(map[string]string, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	out := Entered{Outcome: o, Run: s.decodeRun(id, m), Again: again}
	if gen != "" {
		if out.CacheGeneration, err = strconv.ParseInt(gen, 10, 64); err != nil {
			return Entered{Outcome: o}, fmt.Errorf("set phase of run %d: cache generation %q: %w", id, gen, err)
		}
	}
	return out, nil
}

// guardedPairs maps the reply of a guarded script that returns {code,
// field, value, ...}: the outcome, and the pairs after the code (nil
// unless the script returned any).
func guardedPairs(what string, id int64, cmd *redis.Cmd) (Outcome, []string, error) {
	res, err := cmd.Slice()
	if err == nil && len(res) == 0 {
		err = errors.New("empty reply")
	}
	if err != nil {
		o, err := guardedCode(what, id, 0, err)
		return o, nil, err
	}
	code, _ := res[0].(int64)
	o, err := guardedCode(what, id, code, nil)
	if err != nil || len(res) == 1 {
		return o, nil, err
	}
	pairs := make([]string, len(res)-1)
	for i, v := range res[1:] {
		pairs[i], _ = v.(string)
	}
	return o, pairs, nil
}

// fieldsScript sets fields of a run only while it is building.
//
// KEYS[1] run hash
// ARGV[1] events channel
// ARGV[2] run id
// ARGV[3..] field, value pairs
//
// Returns -1 no such run, 0 run is terminal, 1 applied.
var fieldsScript = newScript(`
local r = redis.call("HGET", KEYS[1], "result")
if not r then return -1 end
if r ~= BUILDING then return 0 end
redis.call("HSET", KEYS[1], unpack(ARGV, 3))
redis.call("PUBLISH", ARGV[1], ARGV[2])
return 1
`)

func (s *Store) setFields(ctx context.Context, what string, id int64, pairs ...string) (Outcome, error) {
	args := []any{s.keys.Events(), id}
	for _, p := range pairs {
		args = append(args, p)
	}
	code, err := fieldsScript.Run(ctx, s.rdb, []string{s.keys.Run(id)}, args...).Int64()
	return guardedCode(what, id, code, err)
}

// gateScript records one gate's status on a building run and in the
// per-(tier, version) results, and returns every gate of the run, so the
// caller sees which gates the write made ready (a join) in the same step
// as the write: of gates passing at once, the last to write sees them all.
// It times the gate: a running gate starts now; a passed or failed one ends
// now and keeps its start; a blocked one ends now only if it had started.
// Given how many gates the run passes with, the write that makes that many
// passed also settles the run passed, with the one terminal write (saving
// the last gate a round trip).
//
// KEYS[1..3], ARGV[1..4] as for every terminal write (luaPrelude)
// KEYS[4] run hash
// KEYS[5] tier gates hash
// ARGV[5] gate kind
// ARGV[6] status ("" while running)
// ARGV[7] log ref
// ARGV[8] run id
// ARGV[9] test counts of its report, "passed failed skipped" ("" for none)
// ARGV[10] gates the run passes with: this many passed settle it ("0": never)
//
// Returns {-1} no such run, {0} run is terminal, else {1, settled, kind,
// encoded gate, kind, encoded gate, ...} with the run's gates after the
// write; settled is "1" when this write settled the run passed.
var gateScript = newScript(`
local field = GATE_PREFIX .. ARGV[5]
local cur = redis.call("HMGET", KEYS[4], "result", field)
if not cur[1] then return {-1} end
if cur[1] ~= BUILDING then return {0} end
local started, finished = ARGV[2], ""
if ARGV[6] ~= "" then
  started = gatefield(cur[2], 4)
  if ARGV[6] ~= BLOCKED and started == "" then started = ARGV[2] end
  if started ~= "" then finished = ARGV[2] end
end
local v = gateentry(ARGV[6], ARGV[7], ARGV[8], started, finished, ARGV[9])
redis.call("HSET", KEYS[4], field, v)
redis.call("HSET", KEYS[5], ARGV[5], v)
local out, passed = {1, "0"}, 0
local all = redis.call("HGETALL", KEYS[4])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, #GATE_PREFIX) == GATE_PREFIX then
    table.insert(out, string.sub(all[i], #GATE_PREFIX + 1))
    table.insert(out, all[i + 1])
    if gatefield(all[i + 1], 1) == PASSED_GATE then passed = passed + 1 end
  end
end
if ARGV[10] ~= "0" and passed == tonumber(ARGV[10]) then
  terminal(KEYS[4], ARGV[8], PASSED, "") -- publishes the change
  out[2] = "1"
else
  redis.call("PUBLISH", ARGV[1], ARGV[8])
end
return out
`)

// SetGate records the latest status of one gate kind for a building run,
// and for its (tier, version), and returns the run's gates after the
// write. A redelivered gate overwrites its own entry: a gate is never
// recorded twice.
func (s *Store) SetGate(ctx context.Context, id int64, tier, version string, g vocab.Gate) (Outcome, []vocab.Gate, error) {
	o, gates, _, err := s.setGate(ctx, id, tier, version, g, 0)
	return o, gates, err
}

// PassGate records gate g passed, as SetGate does, and when with it the
// run's gates passed number gates (the pipeline's), settles the run
// passed in the same write, as Pass would: the first of racing settles
// wins. It reports whether this write settled the run.
func (s *Store) PassGate(ctx context.Context, id int64, tier, version string, g vocab.Gate, gates int) (Outcome, []vocab.Gate, bool, error) {
	if gates < 1 {
		return 0, nil, false, fmt.Errorf("pass gate of run %d: a run passes with at least one gate, not %d", id, gates)
	}
	g.Status = vocab.GatePassed
	return s.setGate(ctx, id, tier, version, g, gates)
}

func (s *Store) setGate(ctx context.Context, id int64, tier, version string, g vocab.Gate, settleAt int) (Outcome, []vocab.Gate, bool, error) {
	o, pairs, err := guardedPairs("set gate of", id, gateScript.Run(ctx, s.rdb,
		s.terminalKeys(s.keys.Run(id), s.keys.TierGates(tier, version)),
		s.terminalArgs(g.Kind, string(g.Status), g.LogRef, id, encodeTests(g.Tests), settleAt)...))
	if err != nil || o != Applied {
		return o, nil, false, err
	}
	if len(pairs) == 0 {
		return o, nil, false, fmt.Errorf("set gate of run %d: short reply", id)
	}
	settled, pairs := pairs[0] == "1", pairs[1:]
	gates := make([]vocab.Gate, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		gates = append(gates, decodeGate(pairs[i], pairs[i+1]))
	}
	sortGates(gates)
	return o, gates, settled, nil
}

// settleScript settles a run with the one terminal write (luaPrelude's
// terminal), only while it is building: the first of any racing settles
// wins.
//
// KEYS[1..3], ARGV[1..4] as for every terminal write (luaPrelude)
// KEYS[4] run hash
// ARGV[5] run id
// ARGV[6] result (passed, failed, aborted)
// ARGV[7] failure summary ("" for none)
//
// Returns -1 no such run, 0 already terminal (this write lost), 1 won.
var settleScript = newScript(`
local r = redis.call("HGET", KEYS[4], "result")
if not r then return -1 end
if r ~= BUILDING then return 0 end
terminal(KEYS[4], ARGV[5], ARGV[6], ARGV[7])
return 1
`)

func (s *Store) settle(ctx context.Context, id int64, result vocab.Result, summary string) (bool, error) {
	code, err := settleScript.Run(ctx, s.rdb, s.terminalKeys(s.keys.Run(id)),
		s.terminalArgs(id, string(result), failure.Truncate(summary))...).Int64()
	o, err := guardedCode("settle", id, code, err)
	return o == Applied, err
}

// Pass settles a run passed. It reports whether this write won.
func (s *Store) Pass(ctx context.Context, id int64) (bool, error) {
	return s.settle(ctx, id, vocab.ResultPassed, "")
}

// Fail settles a run failed with a summary (cut to 600 characters).
func (s *Store) Fail(ctx context.Context, id int64, summary string) (bool, error) {
	return s.settle(ctx, id, vocab.ResultFailed, summary)
}

// Abort settles a run aborted (canceled or superseded).
func (s *Store) Abort(ctx context.Context, id int64, summary string) (bool, error) {
	return s.settle(ctx, id, vocab.ResultAborted, summary)
}

// SetFetched records what the fetch phase learned: the full commit id and
// the version read from the worktree, in one guarded write.
func (s *Store) SetFetched(ctx context.Context, id int64, sha, version string) (Outcome, error) {
	return s.setFields(ctx, "set sha and version of", id, fSHA, sha, fVersion, version)
}
