package runstore

import (
	"strconv"
)

// Keys names every Redis key Sando's run store uses. All of a pipeline's
// keys carry one hash tag, {pipeline}, so each Lua script's keys (and the
// run hashes a supersede touches) share one Redis Cluster slot.
type Keys struct {
	prefix string // "sando:{<pipeline>}:"
}

// NewKeys returns the key names of one pipeline.
func NewKeys(pipeline string) Keys {
	return Keys{prefix: "sando:{" + pipeline + "}:"}
}

// Seq is the counter of the pipeline's run ids from before ids were
// deployment-wide (FleetKeys.Seq); Fleet.Adopt reads it so new ids stay
// above it.
func (k Keys) Seq() string { return k.prefix + "seq" }

// Runs is the sorted set of every run id (score = id), newest last.
func (k Keys) Runs() string { return k.prefix + "runs" }

// Building is the set of ids still building, which a newer rebuild aborts.
func (k Keys) Building() string { return k.prefix + "building" }

// runSegment follows the pipeline's prefix in a run hash's name; scripts
// derive run keys with it (luaPrelude's runkey).
const runSegment = "run:"

// RunPrefix is the prefix of run hashes.
func (k Keys) RunPrefix() string { return k.prefix + runSegment }

// Run is the hash of one run: scalar fields plus one "gate:<kind>" field
// per gate, so a whole view is one HGETALL.
func (k Keys) Run(id int64) string { return k.RunPrefix() + strconv.FormatInt(id, 10) }

// LastPassed holds the id of the newest passed run (for /state).
func (k Keys) LastPassed() string { return k.prefix + "last_passed" }

// TierGates is the hash kind → gate of the latest result per gate kind for
// one (tier, version).
func (k Keys) TierGates(tier, version string) string {
	return k.prefix + tierGatesSegment + tier + ":" + version
}

// tierGatesSegment follows the pipeline's prefix in a tier gates hash's
// name; the phase script derives one with it (luaPrelude's tierkey).
const tierGatesSegment = "gates:"

// CacheGeneration is the pipeline's cache generation, INCR'd by an
// operator's cache clear: a worker wipes a cache slot of an older
// generation before a run takes it (package cache), so the clear reaches
// every data dir without the API touching any.
func (k Keys) CacheGeneration() string { return k.prefix + "cache_gen" }

// ReuseIndex is the hash reuse key (git tree id ":" pipeline hash) → the
// id of the run that built it and passed (reuse: tree).
func (k Keys) ReuseIndex() string { return k.prefix + "reuse" }

// ReusedBy is the hash run id → the newest run that reused it: retention
// keeps a run while that one is kept (its gates' logs are the run's).
func (k Keys) ReusedBy() string { return k.prefix + "reused_by" }

// Idempotency maps a client's Idempotency-Key to the run it started.
func (k Keys) Idempotency(key string) string { return k.prefix + "idem:" + key }

// Log is the base key of one step's log in Redis (package logstore adds
// its suffixes): workers write it, the API serves it, whoever's disk the
// step ran on.
func (k Keys) Log(id int64, step string) string {
	return k.prefix + "log:" + strconv.FormatInt(id, 10) + ":" + step
}

// Logs is the set of one run's log base keys, so retention finds them.
func (k Keys) Logs(id int64) string { return k.prefix + "logs:" + strconv.FormatInt(id, 10) }

// Outbox is the sorted set of finished runs whose webhooks are not known
// to be enqueued (score = settle time, unix ms). The terminal write adds
// the id in the same script, so a settler that dies before enqueueing
// leaves it for the janitor instead of losing the delivery.
func (k Keys) Outbox() string { return k.prefix + "outbox" }

// Events is the pub/sub channel on which every run write announces the
// id. It is the fleet's (FleetKeys.Events), not the pipeline's: run ids
// are unique across pipelines, and one subscription per API process then
// serves every pipeline's waiters. A channel is not a key: it needs no
// hash tag, and on Redis Cluster a PUBLISH reaches every node.
func (k Keys) Events() string { return FleetKeys{}.Events() }

// fleetPrefix names the keys shared by every pipeline of a deployment. Its
// hash tag, "_fleet", can never be a pipeline's: names start with a letter
// or digit.
const fleetPrefix = "sando:{_fleet}:"

// FleetKeys names the deployment-wide keys: run ids are unique across
// pipelines, so /runs/{id} and /logs need no pipeline name.
type FleetKeys struct{}

// Seq is the counter INCR'd for run ids of every pipeline.
func (FleetKeys) Seq() string { return fleetPrefix + "seq" }

// RunPipeline is the hash run id → the pipeline it belongs to.
func (FleetKeys) RunPipeline() string { return fleetPrefix + "run_pipeline" }

// Pipelines is the set of every pipeline that has had a run, so workers,
// which read no pipeline file, know whose runs to sweep.
func (FleetKeys) Pipelines() string { return fleetPrefix + "pipelines" }

// Events is the pub/sub channel every run write publishes the run id on.
func (FleetKeys) Events() string { return fleetPrefix + "events" }

// Disks is the sorted set of data dir ids by the last time a worker on
// that dir said it was alive (unix ms): the janitor's lost-worker check.
func (FleetKeys) Disks() string { return fleetPrefix + "disks" }

// Suspects is the hash run id → the progress_at the janitor saw when it
// first found the run's worker silent; the next sweep fails the run only
// if it has not moved since, so a Redis outage (which silences every
// worker at once) never fails a run.
func (k Keys) Suspects() string { return k.prefix + "suspects" }
