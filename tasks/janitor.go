package tasks

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// TypeJanitor fails runs that stopped making progress: a worker killed
// mid-phase whose task asynq could not hand to another (retries used up,
// or its Redis state lost), or a queued run no worker ever took.
const TypeJanitor = "sando:janitor"

// JanitorInterval is how often the fleet sweeps.
const JanitorInterval = 30 * time.Second

// deadlineMargin is added to a phase's timeout: long enough to cover
// heartbeats (every 2 s), asynq's lease recovery (about 90 s) and one retry
// delay, so only a run nobody works on anymore is failed.
const deadlineMargin = 2 * time.Minute

// queuedDeadline is how long a run may wait for a worker to take it.
const queuedDeadline = time.Hour

// lostAfter is how long a run's step and every worker on its data dir may
// be silent before the janitor suspects the worker is gone for good (a
// worker beats every BeatInterval, a running step every 2 s). A suspect
// still silent, at the same progress, one sweep later is failed: within
// about two minutes of the loss, whatever the phase's timeout. A worker
// that shares the data dir keeps it alive, and asynq's lease recovery
// hands it the step instead.
const lostAfter = 45 * time.Second

// BeatInterval is how often a worker records that its data dir is alive.
const BeatInterval = 5 * time.Second

// Deadline is how long a building run in phase may go without progress:
// its longest step's timeout and a margin, or queuedDeadline for a run no
// step has taken yet.
func Deadline(p *pipeline.Pipeline, phase vocab.Phase) time.Duration {
	if longest, ok := steps.Longest(p, phase); ok {
		return longest + deadlineMargin
	}
	return queuedDeadline
}

// EnqueueJanitor queues this window's sweep of every pipeline's runs.
// Every worker calls it every interval; the task id names the window, so
// the fleet sweeps once per interval however many workers there are.
func EnqueueJanitor(ctx context.Context, q steps.Enqueuer, now time.Time) error {
	return enqueuePeriodic(ctx, q, TypeJanitor, "janitor", JanitorInterval, now)
}

// enqueuePeriodic queues a fleet-wide maintenance task once per window of
// interval: the window is in the task id, and the id stays taken (as
// pending, active or retained) for the rest of the window.
func enqueuePeriodic(ctx context.Context, q steps.Enqueuer, typ, name string, interval time.Duration, now time.Time) error {
	window := now.Unix() / int64(interval/time.Second)
	body, _ := json.Marshal(struct{}{})
	_, err := q.EnqueueContext(ctx, asynq.NewTask(typ, body),
		asynq.Queue(steps.SystemQueue),
		asynq.TaskID("fleet:"+name+":"+strconv.FormatInt(window, 10)),
		asynq.MaxRetry(0), // the next window runs it again
		asynq.Timeout(interval),
		asynq.Retention(2*interval),
	)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	return err
}

// outboxGrace is how long a settled run may sit in the outbox before the
// janitor takes its webhooks as lost: the settler enqueues them within
// moments of its terminal write. Racing it would be harmless anyway, since
// the webhook task ids dedupe.
const outboxGrace = 30 * time.Second

// outboxBatch bounds one sweep's recoveries; the next window takes the rest.
const outboxBatch = 100

// sweep fails stalled runs and enqueues the webhooks of runs whose settler
// did not live to do it, for every pipeline that has runs.
func (r *Runner) sweep(ctx context.Context, _ *asynq.Task) error {
	return r.eachPipeline(ctx, func(name string, store *runstore.Store) error {
		return errors.Join(r.expireStalled(ctx, name, store), r.drainOutbox(ctx, name, store))
	})
}

// eachPipeline runs fn on the store of every pipeline the fleet knows (a
// worker reads no pipeline file): the fleet's chores sweep them all. One
// pipeline's error does not keep fn from the others; all are returned.
func (r *Runner) eachPipeline(ctx context.Context, fn func(name string, store *runstore.Store) error) error {
	names, err := r.Fleet.Pipelines(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		errs = append(errs, fn(name, runstore.New(r.Redis, name)))
	}
	return errors.Join(errs...)
}

// drainOutbox announces runs that settled more than outboxGrace ago and
// are still in the outbox: the process that won their terminal write died
// (or lost Redis) before enqueueing their webhooks.
func (r *Runner) drainOutbox(ctx context.Context, name string, store *runstore.Store) error {
	ids, err := store.Undelivered(ctx, r.now().Add(-outboxGrace), outboxBatch)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		j, _, err := r.openID(ctx, steps.Payload{RunID: id, Pipeline: name})
		if err == nil {
			err = j.life.Announce(ctx, id)
		}
		if err != nil {
			errs = append(errs, err) // still in the outbox: the next sweep tries again
			continue
		}
		r.Logger.Warn("webhooks recovered from the outbox", "run_id", id, "pipeline", name)
	}
	return errors.Join(errs...)
}

// expireStalled fails every building run whose worker is lost (see
// lostAfter), or whose last progress is older than its phase's deadline
// under its own definition, with a summary naming the phase.
func (r *Runner) expireStalled(ctx context.Context, name string, store *runstore.Store) error {
	runs, err := store.Building(ctx)
	if err != nil {
		return err
	}
	now := r.now()
	seen := map[string]time.Time{} // data dir → last beat, read once per sweep
	var alive []int64
	for _, cur := range runs {
		since := cur.ProgressAt
		if since.IsZero() {
			since = cur.StartedAt
		}
		idle := now.Sub(since)
		summary := ""
		lost, suspect, err := r.lost(ctx, store, cur, since, now, seen)
		if err != nil {
			return err
		}
		switch {
		case lost != "":
			summary = lost
		case since.IsZero():
			continue
		default:
			if !suspect {
				alive = append(alive, cur.ID)
			}
			deadline := queuedDeadline // a run with no definition no worker can build: see Runner.open
			if p, err := r.definition(cur.Definition); err == nil {
				deadline = Deadline(p, cur.Phase)
			}
			if idle <= deadline {
				continue
			}
			why := "worker lost?"
			if cur.Phase == vocab.PhaseQueued {
				why = "no worker took it?"
			}
			summary = fmt.Sprintf("%s: no progress for %s (%s)", cur.Phase, idle.Round(time.Second), why)
		}
		j, _, err := r.openID(ctx, steps.Payload{RunID: cur.ID, Pipeline: name})
		if err != nil {
			continue // open failed the run itself, or Redis is away: the next sweep looks again
		}
		won, err := j.life.Expire(ctx, cur.ID, cur.ProgressAt, summary)
		if err != nil {
			return err
		}
		_ = store.Clear(ctx, cur.ID)
		if won {
			r.Logger.Warn("janitor failed a stalled run", "run_id", cur.ID, "pipeline", name, "phase", cur.Phase, "summary", summary)
		}
	}
	return store.Clear(ctx, alive...)
}

// lost is the failure summary of a run whose worker is gone for good, or
// "": its step and every worker on its data dir have been silent for
// lostAfter, and were so at the previous sweep too, at the same progress.
// suspect says the run is silent for the first time: the next sweep tells.
func (r *Runner) lost(ctx context.Context, store *runstore.Store, cur *vocab.Run, since, now time.Time, seen map[string]time.Time) (summary string, suspect bool, err error) {
	// A fetch waits on the fleet's queue: any live worker's asynq takes a
	// lost one back (and fetches anew on its own disk), so only the steps
	// bound to a data dir can be stranded with it.
	if cur.Disk == "" || cur.Phase == vocab.PhaseQueued || cur.Phase == vocab.PhaseFetching || now.Sub(since) <= lostAfter {
		return "", false, nil
	}
	last, ok := seen[cur.Disk]
	if !ok {
		if last, err = r.Fleet.LastSeen(ctx, cur.Disk); err != nil {
			return "", false, err
		}
		seen[cur.Disk] = last
	}
	if now.Sub(last) <= lostAfter {
		return "", false, nil // a worker on its disk lives: asynq hands it the step
	}
	again, err := store.Suspect(ctx, cur.ID, cur.ProgressAt)
	if err != nil || !again {
		return "", err == nil, err
	}
	silent := now.Sub(since)
	if !last.IsZero() {
		silent = min(silent, now.Sub(last))
	}
	return fmt.Sprintf("%s: worker lost (%s, silent for %s); rebuild to run it elsewhere",
		cur.Phase, cmp.Or(cur.Worker, "data dir "+cur.Disk), silent.Round(time.Second)), false, nil
}
