// Package tasks is Sando's task chain on asynq: one task type per phase,
// fetch → compile → stage → gate(0) → gate(1) → …, where each successful
// phase enqueues the next under a deterministic TaskID, so a redelivered
// task never enqueues its successor twice.
package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"sando/pipeline"
	"sando/run"
)

// Task types, one per phase.
const (
	TypeFetch   = "sando:fetch"
	TypeCompile = "sando:compile"
	TypeStage   = "sando:stage"
	TypeGate    = "sando:gate"
)

// PhaseQueues, one per phase, so operators see in Asynqmon where runs
// wait. Workers serve them in strict priority, later phases first: a run
// that has started finishes before a new one is fetched (the bench's
// benchmark 6 measures what that buys under a backlog, and costs).
var PhaseQueues = map[string]int{"gate": 4, "stage": 3, "compile": 2, "fetch": 1}

// SystemQueue holds webhook deliveries, the janitor's sweep and the prune.
// A worker serves it with an asynq server of its own: a slow webhook
// receiver never holds a build's slot, these tasks never wait behind a
// backlog of phases, and no phase dequeue pays a look at this queue first.
const SystemQueue = "system"

// Payload is the body of every phase task.
type Payload struct {
	RunID int64 `json:"run_id"`
	Gate  int   `json:"gate,omitempty"` // index into the pipeline's gates
}

// step is one link of the chain.
type step struct {
	typ   string
	queue string
	phase run.Phase
	gate  int
}

func (s step) name() string {
	if s.typ == TypeGate {
		return "gate-" + strconv.Itoa(s.gate)
	}
	return s.queue
}

var (
	fetchStep   = step{TypeFetch, "fetch", run.PhaseFetching, 0}
	compileStep = step{TypeCompile, "compile", run.PhaseCompiling, 0}
	stageStep   = step{TypeStage, "stage", run.PhaseStaging, 0}
)

func gateStep(i int) step { return step{TypeGate, "gate", run.PhaseGating, i} }

// next is the step after s in p's chain, or false when s was the last.
func next(p *pipeline.Pipeline, s step) (step, bool) {
	switch s.typ {
	case TypeFetch:
		return compileStep, true
	case TypeCompile:
		if p.Stage != "" {
			return stageStep, true
		}
		return gateOrEnd(p, 0)
	case TypeStage:
		return gateOrEnd(p, 0)
	default:
		return gateOrEnd(p, s.gate+1)
	}
}

func gateOrEnd(p *pipeline.Pipeline, i int) (step, bool) {
	if i < len(p.Gates) {
		return gateStep(i), true
	}
	return step{}, false
}

// taskRetention keeps a finished task's id taken for this long, so a
// redelivered predecessor (lease expiry, crash) cannot enqueue it again.
const taskRetention = time.Hour

// TaskID is the deterministic id of one run's step:
// "<pipeline>:<run>:<step>".
func TaskID(pipelineName string, runID int64, s step) string {
	return pipelineName + ":" + strconv.FormatInt(runID, 10) + ":" + s.name()
}

// Enqueuer is the part of *asynq.Client the chain uses.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// timeoutOf is how long the step's command may run.
func timeoutOf(p *pipeline.Pipeline, s step) time.Duration {
	switch s.typ {
	case TypeFetch:
		return p.Timeouts.Fetch
	case TypeCompile:
		return p.Timeouts.Compile
	case TypeStage:
		return p.Timeouts.Stage
	default:
		g, _ := p.Gate(s.gate)
		return g.Timeout
	}
}

// maxRetry: fetch talks to a network and gets more tries; the others
// retry only infrastructure failures (a worker lost, Redis away).
func maxRetry(s step) int {
	if s.typ == TypeFetch {
		return 5
	}
	return 3
}

func enqueue(ctx context.Context, q Enqueuer, p *pipeline.Pipeline, runID int64, s step) error {
	body, err := json.Marshal(Payload{RunID: runID, Gate: s.gate})
	if err != nil {
		return err
	}
	_, err = q.EnqueueContext(ctx, asynq.NewTask(s.typ, body),
		asynq.Queue(s.queue),
		asynq.TaskID(TaskID(p.Name, runID, s)),
		asynq.MaxRetry(maxRetry(s)),
		// asynq's deadline sits above the command's own timeout, so a
		// timed-out build is reported as such, not as a lost task.
		asynq.Timeout(timeoutOf(p, s)+time.Minute),
		asynq.Retention(taskRetention),
	)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil // a redelivered predecessor: the step is already queued or done
	}
	if err != nil {
		return fmt.Errorf("enqueue %s of run %d: %w", s.name(), runID, err)
	}
	return nil
}

// EnqueueFirst queues the fetch of a new run; the API calls it right after
// creating the run.
func EnqueueFirst(ctx context.Context, q Enqueuer, p *pipeline.Pipeline, runID int64) error {
	return enqueue(ctx, q, p, runID, fetchStep)
}
