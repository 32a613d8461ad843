// Package runstore keeps run state in Redis hashes. Every write that must
// not touch a finished run is a Lua script that checks the run is still
// building first, so the first terminal write wins and anything later is a
// no-op the caller can see. Each script sits above the one method that runs
// it (scripts.go, progress.go); lua.go holds what every script shares, the
// terminal write among it; key names live in keys.go.
package runstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/vocab"
)

// ErrNotFound is returned for a run id that does not exist.
var ErrNotFound = errors.New("run not found")

// Outcome says what a guarded write did.
type Outcome int

const (
	// Applied means the write took effect.
	Applied Outcome = iota + 1
	// Finished means the run is terminal; nothing changed.
	Finished
	// Stale means the run is already in a later phase; nothing changed.
	Stale
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Finished:
		return "finished"
	case Stale:
		return "stale"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Store reads and writes one pipeline's runs.
type Store struct {
	rdb      redis.UniversalClient
	pipeline string
	keys     Keys
	fleet    *Fleet
	now      func() time.Time
	// outbox: terminal writes also record the run in Keys.Outbox, for
	// pipelines with webhooks (see WithWebhooks).
	outbox bool
}

// Option configures a Store.
type Option func(*Store)

// WithClock injects the time source, so elapsed-time logic is tested
// without sleeping.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns the store of pipeline's runs on rdb.
func New(rdb redis.UniversalClient, pipeline string, opts ...Option) *Store {
	s := &Store{rdb: rdb, pipeline: pipeline, keys: NewKeys(pipeline), fleet: NewFleet(rdb), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Keys exposes the key names (for the events channel and for tests).
func (s *Store) Keys() Keys { return s.keys }

func (s *Store) stamp() string { return s.now().UTC().Format(vocab.TimeLayout) }

// Get returns one run with its gates.
func (s *Store) Get(ctx context.Context, id int64) (*vocab.Run, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.Run(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("get run %d: %w", id, err)
	}
	if len(m) == 0 {
		return nil, ErrNotFound
	}
	return s.decodeRun(id, m), nil
}

// List returns up to limit runs, newest first, with ids below before (0:
// from the newest). One ZREVRANGEBYSCORE and one pipelined HGETALL each.
func (s *Store) List(ctx context.Context, before int64, limit int) ([]*vocab.Run, error) {
	maxScore := "+inf"
	if before > 0 {
		maxScore = "(" + strconv.FormatInt(before, 10)
	}
	ids, err := s.rdb.ZRevRangeByScore(ctx, s.keys.Runs(), &redis.ZRangeBy{
		Max: maxScore, Min: "-inf", Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	nums := make([]int64, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, raw := range ids {
			nums[i], _ = strconv.ParseInt(raw, 10, 64)
			cmds[i] = p.HGetAll(ctx, s.keys.Run(nums[i]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	out := make([]*vocab.Run, 0, len(ids))
	for i, c := range cmds {
		if m := c.Val(); len(m) > 0 { // pruned between the two calls: skip
			out = append(out, s.decodeRun(nums[i], m))
		}
	}
	return out, nil
}

// TierGates returns the latest gate results recorded for (tier, version),
// sorted by kind.
func (s *Store) TierGates(ctx context.Context, tier, version string) ([]vocab.Gate, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.TierGates(tier, version)).Result()
	if err != nil {
		return nil, fmt.Errorf("tier gates: %w", err)
	}
	return decodeTierGates(m), nil
}

// decodeTierGates turns a tier gates hash (kind → gate value) into gates
// sorted by kind.
func decodeTierGates(m map[string]string) []vocab.Gate {
	gates := make([]vocab.Gate, 0, len(m))
	for kind, v := range m {
		gates = append(gates, decodeGate(kind, v))
	}
	sortGates(gates)
	return gates
}

// Hash field names of a run.
const (
	fSHA       = "sha"
	fRef       = "ref"
	fVersion   = "version"
	fPhase     = "phase"
	fResult    = "result"
	fStarted   = "started_at"
	fFinished  = "finished_at"
	fSummary   = "failure_summary"
	fTask      = "task_id"
	fPipeline  = "pipeline"
	fDef       = "def"         // the pipeline definition the run is built with
	fProgress  = "progress_at" // last sign of life: phase start or heartbeat
	fDisk      = "disk"        // the data dir id of the worker that ran the latest step
	fWorker    = "worker"      // and its name
	gatePrefix = "gate:"
	// phasePrefix: one field per phase entered, "started\tworker\tlog_ref".
	phasePrefix = "phase:"
	gateValSep  = "\t"
)

func (s *Store) decodeRun(id int64, m map[string]string) *vocab.Run {
	r := &vocab.Run{
		ID:             id,
		SHA:            m[fSHA],
		Ref:            m[fRef],
		Version:        m[fVersion],
		Phase:          vocab.Phase(m[fPhase]),
		Result:         vocab.Result(m[fResult]),
		FailureSummary: m[fSummary],
		TaskID:         m[fTask],
		Pipeline:       cmp.Or(m[fPipeline], s.pipeline), // older runs did not name theirs
		Disk:           m[fDisk],
		Worker:         m[fWorker],
		Definition:     m[fDef],
		Gates:          []vocab.Gate{},
	}
	r.ReusedFrom, _ = strconv.ParseInt(m[fReusedFrom], 10, 64)
	r.StartedAt, _ = time.Parse(time.RFC3339Nano, m[fStarted])
	r.FinishedAt, _ = time.Parse(time.RFC3339Nano, m[fFinished])
	r.ProgressAt, _ = time.Parse(time.RFC3339Nano, m[fProgress])
	for f, v := range m {
		if kind, ok := strings.CutPrefix(f, gatePrefix); ok {
			r.Gates = append(r.Gates, decodeGate(kind, v))
		}
		if phase, ok := strings.CutPrefix(f, phasePrefix); ok {
			r.Phases = append(r.Phases, decodePhase(vocab.Phase(phase), v))
		}
	}
	sortGates(r.Gates)
	vocab.SortPhases(r.Phases, r.FinishedAt)
	return r
}

// A gate is stored as
// "status\tlog_ref\trun_id\tstarted_at\tfinished_at\ttests" (gateScript
// writes it; older runs have only the first three or five parts), tests as
// encodeTests writes them.
func decodeGate(kind, v string) vocab.Gate {
	parts := strings.SplitN(v, gateValSep, 6)
	g := vocab.Gate{Kind: kind, Status: vocab.GateStatus(parts[0])}
	if len(parts) > 1 {
		g.LogRef = parts[1]
	}
	if len(parts) > 2 {
		g.RunID, _ = strconv.ParseInt(parts[2], 10, 64)
	}
	if len(parts) > 4 {
		g.StartedAt, _ = time.Parse(time.RFC3339Nano, parts[3])
		g.FinishedAt, _ = time.Parse(time.RFC3339Nano, parts[4])
	}
	if len(parts) > 5 {
		g.Tests = decodeTests(parts[5])
	}
	return g
}

// encodeTests writes a gate's test counts as "passed failed skipped", ""
// for a gate without a report.
func encodeTests(t *vocab.Tests) string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf("%d %d %d", t.Passed, t.Failed, t.Skipped)
}

func decodeTests(s string) *vocab.Tests {
	var t vocab.Tests
	if _, err := fmt.Sscanf(s, "%d %d %d", &t.Passed, &t.Failed, &t.Skipped); err != nil {
		return nil
	}
	return &t
}

// A phase entered is stored as "started_at\tworker\tlog_ref".
func decodePhase(phase vocab.Phase, v string) vocab.PhaseRun {
	parts := strings.SplitN(v, gateValSep, 3)
	p := vocab.PhaseRun{Phase: phase}
	p.StartedAt, _ = time.Parse(time.RFC3339Nano, parts[0])
	if len(parts) > 1 {
		p.Worker = parts[1]
	}
	if len(parts) > 2 {
		p.LogRef = parts[2]
	}
	return p
}

func sortGates(g []vocab.Gate) {
	sort.Slice(g, func(i, j int) bool { return g[i].Kind < g[j].Kind })
}

// Result is the run's result alone: the cheap check a running phase makes
// to notice it was canceled or superseded.
func (s *Store) Result(ctx context.Context, id int64) (vocab.Result, error) {
	v, err := s.rdb.HGet(ctx, s.keys.Run(id), fResult).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("result of run %d: %w", id, err)
	}
	return vocab.Result(v), nil
}
