package tasks

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"sando/datadir"
	"sando/gitfetch"
	"sando/headline"
	"sando/metrics"
	"sando/pipeline"
	"sando/proc"
	"sando/run"
	"sando/runstore"
	"sando/version"
)

// Runner does the work of every phase for one pipeline.
type Runner struct {
	Store    *runstore.Store
	Pipeline *pipeline.Pipeline
	Layout   datadir.Layout
	Queue    Enqueuer
	Logger   *slog.Logger
	// BaseEnv is what phase commands get from the worker (see BaseEnv).
	BaseEnv []string
	// BuildUser, when set, is whom phase commands run as (SANDO_BUILD_USER,
	// see builduser.go); nil: as the worker.
	BuildUser *proc.User
	// WatchInterval is how often a running phase re-reads its run's result,
	// so a cancel whose asynq message was lost still stops the build.
	WatchInterval time.Duration
	// WebhookSecret signs webhook deliveries (Sando-Signature).
	WebhookSecret string
	// Metrics, when set, records phase and gate durations and results.
	Metrics *metrics.Metrics
	// Retention says which finished runs the prune task deletes.
	Retention Retention

	inflight sync.WaitGroup // phase handlers running, for Drain
}

// Drain waits up to d for running phase handlers to return. asynq's
// Shutdown returns once it has handed unfinished tasks back, possibly
// before their handlers have killed their process groups.
func (r *Runner) Drain(d time.Duration) bool {
	done := make(chan struct{})
	go func() { r.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Register routes every phase's task type to the runner.
func (r *Runner) Register(mux *asynq.ServeMux) {
	for _, typ := range []string{TypeFetch, TypeCompile, TypeStage, TypeGate} {
		mux.HandleFunc(typ, r.handle)
	}
	mux.HandleFunc(TypeWebhook, r.deliver)
	mux.HandleFunc(TypeJanitor, r.sweep)
	mux.HandleFunc(TypePrune, r.prune)
}

// errSettled: the run was settled by someone else (cancel, supersede)
// while this phase worked; the phase stops without running more.
var errSettled = errors.New("run settled elsewhere")

// verdict is how a phase's work ended.
type verdict struct {
	// failure, when set, is a deterministic failure (compile error, red
	// gate, unknown sha): the run is failed with it and nothing retries.
	failure string
	// err is an infrastructure failure: the task is retried with backoff.
	err error
}

func (r *Runner) decode(t *asynq.Task) (Payload, step, error) {
	var p Payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return p, step{}, fmt.Errorf("undecodable payload: %v: %w", err, asynq.SkipRetry)
	}
	if p.RunID <= 0 {
		return p, step{}, fmt.Errorf("payload without run_id: %w", asynq.SkipRetry)
	}
	switch t.Type() {
	case TypeFetch:
		return p, fetchStep, nil
	case TypeCompile:
		return p, compileStep, nil
	case TypeStage:
		return p, stageStep, nil
	case TypeGate:
		if _, ok := r.Pipeline.Gate(p.Gate); !ok {
			return p, step{}, fmt.Errorf("gate %d not in the pipeline: %w", p.Gate, asynq.SkipRetry)
		}
		return p, gateStep(p.Gate), nil
	}
	return p, step{}, fmt.Errorf("unknown task type %q: %w", t.Type(), asynq.SkipRetry)
}

// handle runs one phase task: check the run is still building, move it to
// the phase, do the work, then enqueue the next phase or settle the run.
func (r *Runner) handle(ctx context.Context, t *asynq.Task) error {
	r.inflight.Add(1)
	defer r.inflight.Done()
	p, s, err := r.decode(t)
	if err != nil {
		r.Logger.Error("poison task", "type", t.Type(), "err", err)
		return err
	}
	log := r.Logger.With("run_id", p.RunID, "phase", s.phase)
	if g, ok := r.Pipeline.Gate(s.gate); ok && s.typ == TypeGate {
		log = log.With("gate", g.Kind)
	}
	taskID, _ := asynq.GetTaskID(ctx)
	o, cur, err := r.Store.SetPhase(ctx, p.RunID, s.phase, taskID)
	switch {
	case errors.Is(err, runstore.ErrNotFound):
		log.Warn("task for unknown run dropped")
		return fmt.Errorf("run %d: %w", p.RunID, asynq.SkipRetry)
	case err != nil:
		return err
	case o == runstore.Finished:
		log.Debug("run already finished; nothing to do", "result", cur.Result)
		r.cleanup(p.RunID)
		return nil
	case o == runstore.Stale:
		log.Info("run already past this phase; redelivery ignored", "run_phase", cur.Phase)
		return nil
	}
	log = log.With("sha", cur.SHA)
	log.Info("phase started")

	began := time.Now()
	workCtx, stop := r.watch(ctx, p.RunID)
	defer stop()
	var v verdict
	switch s.typ {
	case TypeFetch:
		v = r.fetch(workCtx, cur)
	case TypeCompile:
		v = r.command(workCtx, cur, "compile", r.Pipeline.Build, r.Pipeline.Timeouts.Compile, compileSummary)
	case TypeStage:
		v = r.stage(workCtx, cur)
	case TypeGate:
		v = r.gate(workCtx, cur, s.gate)
	}
	err = r.conclude(ctx, workCtx, log, p.RunID, s, v)
	r.Metrics.Phase(string(s.phase), outcomeOf(err, v, workCtx), time.Since(began))
	return err
}

// outcomeOf names how a phase task ended, for metrics.
func outcomeOf(err error, v verdict, workCtx context.Context) string {
	switch {
	case workCtx.Err() != nil || errors.Is(v.err, errSettled):
		return "canceled"
	case v.failure != "":
		return "failed"
	case err != nil:
		return "retry"
	}
	return "ok"
}

// conclude turns a phase's verdict into the next step of the chain.
func (r *Runner) conclude(ctx, workCtx context.Context, log *slog.Logger, id int64, s step, v verdict) error {
	// Settling writes must land even when the task's context is ending.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	switch {
	case workCtx.Err() != nil || errors.Is(v.err, errSettled):
		// Canceled (supersede, cancel) or shutting down. A finished run has
		// nothing left to do; otherwise hand the task back to asynq.
		if res, err := r.Store.Result(wctx, id); err == nil && res.Terminal() {
			log.Info("phase stopped: run settled elsewhere", "result", res)
			r.cleanup(id)
			if ctx.Err() == nil {
				return nil // our own watcher stopped it: the task is done
			}
		}
		return cmp.Or(ctx.Err(), workCtx.Err())
	case v.err != nil:
		log.Warn("phase failed; will retry", "err", v.err)
		return v.err
	case v.failure != "":
		won, err := r.Store.Fail(wctx, id, v.failure)
		if err != nil {
			return err // retried: the next attempt fails the run again
		}
		log.Info("run failed", "summary", v.failure, "won", won)
		r.settled(wctx, id, won, run.ResultFailed)
		return fmt.Errorf("%s: %w", v.failure, asynq.SkipRetry)
	}
	if nxt, ok := next(r.Pipeline, s); ok {
		return enqueue(wctx, r.Queue, r.Pipeline, id, nxt)
	}
	won, err := r.Store.Pass(wctx, id)
	if err != nil {
		return err
	}
	log.Info("run passed", "won", won)
	r.settled(wctx, id, won, run.ResultPassed)
	return nil
}

// settled follows a terminal write: the worktree goes, and the write that
// won announces the result to the pipeline's webhooks.
func (r *Runner) settled(ctx context.Context, id int64, won bool, result run.Result) {
	r.cleanup(id)
	if !won {
		return
	}
	r.Metrics.RunFinished(string(result))
	if err := Settled(ctx, r.Queue, r.Store, r.Pipeline, id); err != nil {
		r.Logger.Error("webhooks not enqueued", "run_id", id, "err", err)
	}
}

// watch returns a context that ends when ctx does or when the run is
// settled by someone else. Meanwhile it heartbeats the run, so the janitor
// knows the phase is alive; the heartbeat's answer is also how it learns
// the run was settled.
func (r *Runner) watch(ctx context.Context, id int64) (context.Context, func()) {
	wctx, cancel := context.WithCancel(ctx)
	interval := cmp.Or(r.WatchInterval, 2*time.Second)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				if o, err := r.Store.Heartbeat(wctx, id); err == nil && o == runstore.Finished {
					cancel()
					return
				}
			}
		}
	}()
	return wctx, cancel
}

// cleanup drops a settled run's worktree; logs and staged artifacts stay.
func (r *Runner) cleanup(id int64) {
	_ = os.RemoveAll(r.Layout.Worktree(id))
}

func (r *Runner) runVars(cur *run.Run) map[string]string {
	return map[string]string{
		"SANDO_RUN_ID":    strconv.FormatInt(cur.ID, 10),
		"SANDO_SHA":       cur.SHA,
		"SANDO_VERSION":   cur.Version,
		"SANDO_WORKTREE":  r.Layout.Worktree(cur.ID),
		"SANDO_STAGE_DIR": r.Layout.StageDir(cur.ID),
	}
}

func (r *Runner) fetch(ctx context.Context, cur *run.Run) verdict {
	logf, err := r.Layout.Create(cur.ID, "fetch")
	if err != nil {
		return verdict{err: err}
	}
	defer logf.Close()
	want := gitfetch.Want{SHA: cur.SHA, Ref: cmp.Or(cur.Ref, r.Pipeline.Branch)}
	if cur.SHA != "" {
		want.Ref = ""
	}
	dir := r.Layout.Worktree(cur.ID)
	sha, err := gitfetch.Fetch(ctx, gitfetch.Options{
		Repo: r.Pipeline.Repo, Dir: dir, Log: logf, Env: r.BaseEnv, Timeout: r.Pipeline.Timeouts.Fetch,
		Cache: r.Layout.GitCache(),
	}, want)
	var nf *gitfetch.NotFoundError
	switch {
	case errors.As(err, &nf):
		return verdict{failure: "fetch: " + nf.Error()}
	case err != nil:
		return verdict{err: fmt.Errorf("fetch: %w", err)}
	}
	ver, err := version.Read(dir, r.Pipeline.VersionFile, sha)
	if err != nil {
		return verdict{failure: "fetch: " + err.Error()}
	}
	if _, err := r.Store.SetFetched(ctx, cur.ID, sha, ver); err != nil {
		return verdict{err: err}
	}
	cur.SHA, cur.Version = sha, ver
	return verdict{}
}

func (r *Runner) stage(ctx context.Context, cur *run.Run) verdict {
	if err := os.MkdirAll(r.Layout.StageDir(cur.ID), 0o755); err != nil {
		return verdict{err: err}
	}
	return r.command(ctx, cur, "stage", r.Pipeline.Stage, r.Pipeline.Timeouts.Stage, func(out []byte, res proc.Result, timeout time.Duration) string {
		return "stage: " + cmp.Or(headline.Compile(out), res.Describe(timeout))
	})
}

func compileSummary(out []byte, res proc.Result, timeout time.Duration) string {
	if res.TimedOut {
		return "compile: " + res.Describe(timeout)
	}
	return cmp.Or(headline.Compile(out), "compile: "+res.Describe(timeout))
}

// command runs one shell command of the pipeline in the run's worktree,
// its output in the step's log, and judges it with summarize.
func (r *Runner) command(ctx context.Context, cur *run.Run, stepName, script string, timeout time.Duration,
	summarize func([]byte, proc.Result, time.Duration) string,
) verdict {
	res, out, err := r.exec(ctx, cur, stepName, script, timeout)
	switch {
	case err != nil:
		return verdict{err: err}
	case res.Canceled:
		return verdict{err: ctx.Err()}
	case !res.OK():
		return verdict{failure: summarize(out, res, timeout)}
	}
	return verdict{}
}

func (r *Runner) exec(ctx context.Context, cur *run.Run, stepName, script string, timeout time.Duration) (proc.Result, []byte, error) {
	dir := r.Layout.Worktree(cur.ID)
	if _, err := os.Stat(dir); err != nil {
		// Another host fetched this run and SANDO_DATA_DIR is not shared,
		// or the worktree was removed: refetching is the fix, so retry.
		return proc.Result{}, nil, fmt.Errorf("%s: worktree missing (is SANDO_DATA_DIR shared by all workers?): %w", stepName, err)
	}
	if err := r.handOver(cur.ID); err != nil {
		return proc.Result{}, nil, fmt.Errorf("%s: %w", stepName, err)
	}
	logf, err := r.Layout.Create(cur.ID, stepName)
	if err != nil {
		return proc.Result{}, nil, err
	}
	defer logf.Close()
	res, err := proc.Run(ctx, proc.Spec{
		Args: []string{"sh", "-c", script}, Dir: dir, Output: logf, Timeout: timeout,
		Env: phaseEnv(r.phaseBase(), r.Pipeline.Env, r.runVars(cur)), User: r.BuildUser,
	})
	if err != nil || res.OK() {
		return res, nil, err
	}
	out, rerr := readForSummary(logf.Name())
	if rerr != nil {
		return res, nil, rerr
	}
	return res, out, nil
}

// readForSummary reads what headline needs of a log: the first 4 MiB
// (where the first error is) and the last 64 KiB (the fallback lines).
func readForSummary(path string) ([]byte, error) {
	const head, tail = 4 << 20, 64 << 10
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() <= head+tail {
		return io.ReadAll(f)
	}
	buf := make([]byte, head+tail)
	if _, err := io.ReadFull(f, buf[:head]); err != nil {
		return nil, err
	}
	if _, err := f.ReadAt(buf[head:], st.Size()-tail); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf, nil
}

func (r *Runner) gate(ctx context.Context, cur *run.Run, i int) verdict {
	g, _ := r.Pipeline.Gate(i)
	step := "gate-" + g.Kind
	ref := datadir.LogRef(cur.ID, step)
	record := func(st run.GateStatus, kind, logRef string) error {
		o, err := r.Store.SetGate(ctx, cur.ID, r.Pipeline.Tier, cur.Version, run.Gate{Kind: kind, Status: st, LogRef: logRef})
		if err == nil && o == runstore.Finished {
			return errSettled // canceled or superseded since the phase began
		}
		return err
	}
	if err := record(run.GateRunning, g.Kind, ref); err != nil {
		return verdict{err: err}
	}
	res, out, err := r.exec(ctx, cur, step, g.Run, g.Timeout)
	if err == nil && !res.Canceled {
		status := run.GateFailed
		if res.OK() {
			status = run.GatePassed
		}
		r.Metrics.Gate(g.Kind, string(status), res.Duration)
	}
	switch {
	case err != nil:
		return verdict{err: err}
	case res.Canceled:
		return verdict{err: ctx.Err()}
	case res.OK():
		if err := record(run.GatePassed, g.Kind, ref); err != nil {
			return verdict{err: err}
		}
		return verdict{}
	}
	if err := record(run.GateFailed, g.Kind, ref); err != nil {
		return verdict{err: err}
	}
	for _, later := range r.Pipeline.Gates[i+1:] {
		if err := record(run.GateBlocked, later.Kind, ""); err != nil {
			return verdict{err: err}
		}
	}
	if res.TimedOut {
		return verdict{failure: g.Kind + ": " + res.Describe(g.Timeout)}
	}
	return verdict{failure: headline.Gate(g.Kind, out, res.Describe(g.Timeout))}
}
