// Package steps describes each step of a run once: the asynq task type
// and queue that carry it, the phase the run is in while it runs, the name
// its log and task id use, its timeout and its retries. Adding a step kind
// is one entry in Kinds; everything else (the worker's handlers, the
// queues a worker serves, the janitor's deadlines, /logs' follow) reads it
// from here.
package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/vocab"
)

// Kind is one kind of step.
type Kind struct {
	Type string // asynq task type
	// Queue is the asynq queue of a step of this kind; "" for the queue of
	// the disk the run was fetched on (DiskQueue), where its worktree is.
	Queue string
	Phase vocab.Phase // the run's phase while a step of this kind runs
	// Name is the step's name in its log_ref and task id; a gate's is
	// Name + "-" + its kind ("gate-unit").
	Name string
	// Retries is asynq's MaxRetry: only infrastructure failures (a worker
	// lost, Redis away, a git remote timing out) are retried; a compile
	// error or a red gate ends the run.
	Retries int
	timeout func(p *pipeline.Pipeline, gate string) time.Duration
}

// The kinds, in chain order: fetch → compile → stage → gate…
var (
	// Fetch talks to a network and gets more tries.
	Fetch = &Kind{Type: "sando:fetch", Queue: "fetch", Phase: vocab.PhaseFetching, Name: "fetch", Retries: 5,
		timeout: func(p *pipeline.Pipeline, _ string) time.Duration { return p.Timeouts.Fetch }}
	Compile = &Kind{Type: "sando:compile", Phase: vocab.PhaseCompiling, Name: "compile", Retries: 3,
		timeout: func(p *pipeline.Pipeline, _ string) time.Duration { return p.Timeouts.Compile }}
	Stage = &Kind{Type: "sando:stage", Phase: vocab.PhaseStaging, Name: "stage", Retries: 3,
		timeout: func(p *pipeline.Pipeline, _ string) time.Duration { return p.Timeouts.Stage }}
	Gate = &Kind{Type: "sando:gate", Phase: vocab.PhaseGating, Name: "gate", Retries: 3,
		timeout: func(p *pipeline.Pipeline, gate string) time.Duration {
			for _, g := range p.Gates {
				if g.Kind == gate {
					return g.Timeout
				}
			}
			return 0
		}}
)

// Kinds lists every kind in chain order.
var Kinds = []*Kind{Fetch, Compile, Stage, Gate}

// DiskQueue is the queue of the steps of the runs fetched on the data dir
// whose id is disk: every worker on that disk serves it, and only they,
// so a step runs where its run's worktree is. Workers that share a disk
// share its queue; asynq's recovery of a killed worker's task then works
// as long as one of them lives.
func DiskQueue(disk string) string { return "disk:" + disk }

// Queues are the queues a worker on disk serves, with their priorities, in
// strict priority: its disk's queue first, so a run that has started
// finishes before a new one is fetched (the bench's benchmark 6 measures
// what that buys under a backlog, and costs), then the fleet's fetch
// queue. Two queues: each costs a dequeue script per poll tick.
func Queues(disk string) map[string]int {
	return map[string]int{DiskQueue(disk): 2, Fetch.Queue: 1}
}

// LegacyQueues are the phase queues of versions before DiskQueue. A
// worker also serves those that still hold tasks when it starts, last, so
// an upgrade loses no run.
var LegacyQueues = []string{"compile", "stage", "gate"}

// QueueOn is the queue of step s of a run fetched on disk.
func (s Step) QueueOn(disk string) string {
	if s.Queue != "" {
		return s.Queue
	}
	return DiskQueue(disk)
}

// SystemQueue holds webhook deliveries, the janitor's sweep and the prune.
// A worker serves it with an asynq server of its own: a slow webhook
// receiver never holds a build's slot, these tasks never wait behind a
// backlog of phases, and no phase dequeue pays a look at this queue first.
const SystemQueue = "system"

// ByType is the kind whose task type is typ.
func ByType(typ string) (*Kind, bool) {
	for _, k := range Kinds {
		if k.Type == typ {
			return k, true
		}
	}
	return nil, false
}

// Step is one step of one run: a kind, and for a gate, which gate.
type Step struct {
	*Kind
	Gate string // the gate's kind; "" for every other step
}

// Name is the step's name in its log_ref and task id: "compile", "gate-unit".
func (s Step) Name() string {
	if s.Kind == Gate {
		return Gate.Name + "-" + s.Gate
	}
	return s.Kind.Name
}

// Timeout is how long the step's command may run under p.
func (s Step) Timeout(p *pipeline.Pipeline) time.Duration { return s.timeout(p, s.Gate) }

// Parse is the step named name ("fetch", "gate-unit"), the inverse of Name.
func Parse(name string) (Step, bool) {
	if gate, ok := strings.CutPrefix(name, Gate.Name+"-"); ok && gate != "" {
		return Step{Kind: Gate, Gate: gate}, true
	}
	for _, k := range Kinds {
		if k != Gate && k.Name == name {
			return Step{Kind: k}, true
		}
	}
	return Step{}, false
}

// First is the step every run starts with.
func First() Step { return Step{Kind: Fetch} }

// After lists the steps that follow s in p's chain once s succeeded: none
// after the last. A gate's successors depend on which other gates have
// passed: see GatesAfter.
func After(p *pipeline.Pipeline, s Step) []Step {
	switch s.Kind {
	case Fetch:
		return []Step{{Kind: Compile}}
	case Compile:
		if p.Stage != "" {
			return []Step{{Kind: Stage}}
		}
		return gates(p.Roots())
	case Stage:
		return gates(p.Roots())
	}
	return nil
}

// GatesAfter lists the gates that gate kind's pass makes ready, given
// every gate that has passed: the join of the gates' needs.
func GatesAfter(p *pipeline.Pipeline, kind string, passed map[string]bool) []Step {
	return gates(p.Unblocked(kind, passed))
}

func gates(gs []pipeline.Gate) []Step {
	out := make([]Step, len(gs))
	for i, g := range gs {
		out[i] = Step{Kind: Gate, Gate: g.Kind}
	}
	return out
}

// Longest is the longest timeout a step in phase may have under p: what
// the janitor allows a run in that phase before it calls it stalled. It is
// false for a phase no step runs in (queued, done).
func Longest(p *pipeline.Pipeline, phase vocab.Phase) (time.Duration, bool) {
	for _, k := range Kinds {
		if k.Phase != phase {
			continue
		}
		if k != Gate {
			return k.timeout(p, ""), true
		}
		longest := time.Duration(0)
		for _, g := range p.Gates {
			longest = max(longest, g.Timeout)
		}
		return longest, true
	}
	return 0, false
}

// Payload is the body of every step's task.
type Payload struct {
	RunID int64 `json:"run_id"`
	// Pipeline names the run's pipeline; tasks of older versions have
	// none, and the fleet's index of run ids finds it.
	Pipeline string `json:"pipeline,omitempty"`
	Gate     string `json:"gate_kind,omitempty"`
	// LegacyGate is the gate's index, as tasks enqueued before gates were
	// named by kind carry it.
	LegacyGate int `json:"gate,omitempty"`
	// Tier, in a gate's task, is its pipeline's tier: the gate's phase
	// write records it running in its version's tier gates in the same
	// step. Tasks of older versions have none and record it apart.
	Tier string `json:"tier,omitempty"`
	// Fetched, in a compile's task, is what the fetch learned, which the
	// compile's phase write records (runstore.Entry): the fetch writes the
	// run once less.
	Fetched *Fetched `json:"fetched,omitempty"`
}

// Fetched is what a fetch learned: the full commit id and the version.
type Fetched struct {
	SHA     string `json:"sha"`
	Version string `json:"version"`
}

// DecodePayload reads a step task's kind and payload. A task that can
// never be run (unknown type, undecodable body, no run id) is an error
// wrapping asynq.SkipRetry: retrying cannot help.
func DecodePayload(t *asynq.Task) (Payload, *Kind, error) {
	var pl Payload
	k, ok := ByType(t.Type())
	if !ok {
		return pl, nil, fmt.Errorf("unknown task type %q: %w", t.Type(), asynq.SkipRetry)
	}
	if err := json.Unmarshal(t.Payload(), &pl); err != nil {
		return pl, nil, fmt.Errorf("undecodable payload: %w: %w", err, asynq.SkipRetry)
	}
	if pl.RunID <= 0 {
		return pl, nil, fmt.Errorf("payload without run_id: %w", asynq.SkipRetry)
	}
	return pl, k, nil
}

// Resolve is the step of kind k that payload pl names in pipeline p: for
// a gate, the gate by kind, or by index for a task of an older version.
// A gate p does not have is an error wrapping asynq.SkipRetry.
func Resolve(p *pipeline.Pipeline, k *Kind, pl Payload) (Step, error) {
	s := Step{Kind: k}
	if k != Gate {
		return s, nil
	}
	switch {
	case pl.Gate != "":
		s.Gate = pl.Gate
	case pl.LegacyGate >= 0 && pl.LegacyGate < len(p.Gates):
		s.Gate = p.Gates[pl.LegacyGate].Kind
	}
	if _, ok := p.GateByKind(s.Gate); !ok {
		return Step{}, fmt.Errorf("gate %q (index %d) not in the pipeline: %w", pl.Gate, pl.LegacyGate, asynq.SkipRetry)
	}
	return s, nil
}

// Decode is DecodePayload then Resolve.
func Decode(p *pipeline.Pipeline, t *asynq.Task) (Payload, Step, error) {
	pl, k, err := DecodePayload(t)
	if err != nil {
		return pl, Step{}, err
	}
	s, err := Resolve(p, k, pl)
	return pl, s, err
}

// EnqueueFirst queues the first step of run runID, on the fleet's fetch
// queue: any worker may take it.
func EnqueueFirst(ctx context.Context, q Enqueuer, p *pipeline.Pipeline, runID int64) error {
	return Enqueue(ctx, q, p, runID, First(), "", nil)
}

// taskRetention keeps a finished task's id taken for this long, so a
// redelivered predecessor (lease expiry, crash) cannot enqueue it again.
const taskRetention = time.Hour

// TaskID is the deterministic id of one run's step:
// "<pipeline>:<run>:<step>".
func TaskID(pipelineName string, runID int64, s Step) string {
	return pipelineName + ":" + strconv.FormatInt(runID, 10) + ":" + s.Name()
}

// Enqueuer is the part of *asynq.Client the chain uses.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Enqueue queues step s of run runID, fetched (for every step but the
// fetch) on disk; fetched, for a compile, is what the fetch learned (nil
// when the fetch recorded it itself). A step already queued, running or
// done (its task id taken) counts as enqueued: a redelivered predecessor
// enqueues again, harmlessly.
func Enqueue(ctx context.Context, q Enqueuer, p *pipeline.Pipeline, runID int64, s Step, disk string, fetched *Fetched) error {
	pl := Payload{RunID: runID, Pipeline: p.Name, Gate: s.Gate}
	if s.Kind == Gate {
		pl.Tier = p.Tier
	}
	if s.Kind == Compile {
		pl.Fetched = fetched
	}
	body, err := json.Marshal(pl)
	if err != nil {
		return err
	}
	_, err = q.EnqueueContext(ctx, asynq.NewTask(s.Type, body),
		asynq.Queue(s.QueueOn(disk)),
		asynq.TaskID(TaskID(p.Name, runID, s)),
		asynq.MaxRetry(s.Retries),
		// asynq's deadline sits above the command's own timeout, so a
		// timed-out build is reported as such, not as a lost task.
		asynq.Timeout(s.Timeout(p)+time.Minute),
		asynq.Retention(taskRetention),
	)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("enqueue %s of run %d: %w", s.Name(), runID, err)
	}
	return nil
}
