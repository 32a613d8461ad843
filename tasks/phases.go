package tasks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/cache"
	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/failure"
	"sando.dev/sando/internal/gitfetch"
	"sando.dev/sando/internal/lifecycle"
	"sando.dev/sando/internal/metrics"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/proc"
	"sando.dev/sando/internal/projversion"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// Runner does the work of every step of every pipeline's runs. It reads
// no pipeline file: each run carries its pipeline's definition.
type Runner struct {
	Redis  redis.UniversalClient
	Fleet  *runstore.Fleet
	Layout datadir.Layout
	// Disk is the id of Layout's data dir (datadir.Layout.Identity): the
	// steps after a fetch go to its queue, where the worktree is.
	Disk string
	// Name names this worker in a run's phases ("host:/data/dir").
	Name   string
	Queue  steps.Enqueuer
	Logger *slog.Logger
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

	// Now is the clock of the janitor and the prune (time.Now when nil).
	Now func() time.Time

	inflight sync.WaitGroup // phase handlers running, for Drain
	defs     definitions
}

func (r *Runner) where() runstore.Where { return runstore.Where{Disk: r.Disk, Worker: r.Name} }

func (r *Runner) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
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

// Register routes every step kind's task type to the runner.
func (r *Runner) Register(mux *asynq.ServeMux) {
	for _, k := range steps.Kinds {
		mux.HandleFunc(k.Type, r.handle)
	}
	mux.HandleFunc(lifecycle.TypeWebhook, r.deliver)
	mux.HandleFunc(TypeJanitor, r.sweep)
	mux.HandleFunc(TypePrune, r.prune)
}

// settling is how a settling write (and what follows it: webhooks, the
// slot's release) gets to land: a context of its own, not the phase's,
// which ends when the phase is stopped or sees its run settled.
func settling(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
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
	// passed, for a gate that passed, is every gate of the run that has.
	passed map[string]bool
	// settled: the step settled the run itself (a fetch whose tree an
	// earlier run passed, reuse: tree; the last gate to pass); nothing
	// follows.
	settled bool
	// fetched, for a fetch that did not record what it learned, goes to
	// the compile's task, whose phase write records it.
	fetched *steps.Fetched
}

// handle runs one step's task: check the run is still building, move it
// to the step's phase, do the work, then enqueue what comes next or settle
// the run.
func (r *Runner) handle(ctx context.Context, t *asynq.Task) error {
	r.inflight.Add(1)
	defer r.inflight.Done()
	pl, k, err := steps.DecodePayload(t)
	if err != nil {
		r.Logger.Error("poison task", "type", t.Type(), "err", err)
		return err
	}
	log := r.logFor(pl, k)
	name, err := r.pipelineOf(ctx, pl)
	if errors.Is(err, runstore.ErrNotFound) {
		log.Warn("task for unknown run dropped")
		return fmt.Errorf("run %d: %w", pl.RunID, asynq.SkipRetry)
	} else if err != nil {
		return err
	}
	taskID, _ := asynq.GetTaskID(ctx)
	logRef := "" // a gate's log is its gate entry's
	if k != steps.Gate {
		logRef = datadir.LogRef(pl.RunID, k.Name)
	}
	e := runstore.Entry{TaskID: taskID, Where: r.where(), LogRef: logRef}
	if pl.Fetched != nil {
		e.Fetched = &runstore.Fetched{SHA: pl.Fetched.SHA, Version: pl.Fetched.Version}
	}
	if k == steps.Gate && pl.Gate != "" && pl.Tier != "" {
		// The gate's "running" entry rides on the phase write (a task of an
		// older version, without the tier, records it apart).
		e.Gate = &runstore.GateStart{Kind: pl.Gate, Tier: pl.Tier, LogRef: datadir.LogRef(pl.RunID, steps.Step{Kind: steps.Gate, Gate: pl.Gate}.Name())}
	}
	entered, err := runstore.New(r.Redis, name).Enter(ctx, pl.RunID, k.Phase, e)
	o, cur := entered.Outcome, entered.Run
	switch {
	case errors.Is(err, runstore.ErrNotFound):
		log.Warn("task for unknown run dropped")
		return fmt.Errorf("run %d: %w", pl.RunID, asynq.SkipRetry)
	case err != nil:
		return err
	case o == runstore.Finished:
		log.Debug("run already finished; nothing to do", "result", cur.Result)
		r.Cleanup(pl.RunID)
		return nil
	case o == runstore.Stale:
		log.Info("run already past this phase; redelivery ignored", "run_phase", cur.Phase)
		return nil
	}
	j, err := r.open(ctx, name, cur)
	if err != nil {
		log.Error("run cannot be built", "err", err)
		return err
	}
	s, err := steps.Resolve(j.p, k, pl)
	if err != nil {
		log.Error("poison task", "err", err)
		if _, ferr := j.life.Fail(ctx, pl.RunID, fmt.Sprintf("%s: %v", k.Phase, err)); ferr != nil {
			return ferr
		}
		return err
	}
	log = log.With("sha", cur.SHA)
	log.Info("phase started")

	began := time.Now()
	workCtx, stop := r.watch(ctx, j, pl.RunID)
	defer stop()
	var v verdict
	switch s.Kind {
	case steps.Fetch:
		v = r.fetch(workCtx, j, cur, s, entered)
	case steps.Compile:
		v = r.command(workCtx, j, cur, s, j.p.Build, compileSummary)
	case steps.Stage:
		v = r.stage(workCtx, j, cur, s)
	case steps.Gate:
		v = r.gate(workCtx, j, cur, s, e.Gate != nil && e.Gate.Tier == j.p.Tier)
	}
	err = r.conclude(ctx, workCtx, log, j, pl.RunID, s, v)
	r.Metrics.Phase(string(s.Phase), outcomeOf(workCtx, err, v), time.Since(began))
	return err
}

// outcomeOf names how a phase task ended, for metrics.
func outcomeOf(workCtx context.Context, err error, v verdict) string {
	switch {
	case v.settled && err == nil:
		return "ok"
	case workCtx.Err() != nil || errors.Is(v.err, errSettled):
		return "canceled"
	case v.failure != "":
		return "failed"
	case err != nil:
		return "retry"
	}
	return "ok"
}

// conclude turns a step's verdict into what comes next: the steps it made
// ready, the run's pass once its last gate passed, or its failure.
func (r *Runner) conclude(ctx, workCtx context.Context, log *slog.Logger, j *job, id int64, s steps.Step, v verdict) error {
	wctx, cancel := settling(ctx)
	defer cancel()
	switch {
	case v.settled:
		// First: the step's own settle may have ended workCtx as the
		// watch saw the run settled.
		if s.Kind == steps.Gate {
			log.Info("run passed", "won", true)
		}
		return nil
	case workCtx.Err() != nil || errors.Is(v.err, errSettled):
		// Canceled (supersede, cancel, a sibling gate's failure) or shutting
		// down. A finished run has nothing left to do; otherwise hand the
		// task back to asynq.
		if res, err := j.store.Result(wctx, id); err == nil && res.Terminal() {
			log.Info("phase stopped: run settled elsewhere", "result", res)
			r.Cleanup(id)
			if ctx.Err() == nil {
				return nil // our own watcher stopped it: the task is done
			}
		}
		return cmp.Or(ctx.Err(), workCtx.Err())
	case v.err != nil:
		log.Warn("phase failed; will retry", "err", v.err)
		return v.err
	case v.failure != "":
		won, err := j.life.Fail(wctx, id, v.failure)
		if err != nil {
			return err // retried: the next attempt fails the run again
		}
		log.Info("run failed", "summary", v.failure, "won", won)
		// The step ran and found the build red: it did its job, so its
		// task completes. Asynqmon's failed and archived lists, and its
		// error rate, are then infrastructure trouble only.
		return nil
	}
	next := steps.After(j.p, s)
	last := len(next) == 0 // the compile or stage of a pipeline without gates
	if s.Kind == steps.Gate {
		// The pass that made every gate passed settled the run in its
		// own write (v.settled, above): this one starts what it made
		// ready.
		next, last = steps.GatesAfter(j.p, s.Gate, v.passed), false
	}
	if !last {
		var errs []error
		for _, n := range next {
			errs = append(errs, steps.Enqueue(wctx, r.Queue, j.p, id, n, r.Disk, v.fetched))
		}
		return errors.Join(errs...)
	}
	won, err := j.life.Pass(wctx, id)
	if err != nil {
		return err
	}
	log.Info("run passed", "won", won)
	return nil
}

// watch returns a context that ends when ctx does or when the run is
// settled by someone else. Meanwhile it heartbeats the run, so the janitor
// knows the phase is alive; the heartbeat's answer is also how it learns
// the run was settled.
func (r *Runner) watch(ctx context.Context, j *job, id int64) (context.Context, func()) {
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
				if o, err := j.store.Heartbeat(wctx, id); err == nil && o == runstore.Finished {
					cancel()
					return
				}
			}
		}
	}()
	return wctx, cancel
}

// Cleanup releases a settled run's cache slot and drops the link to its
// worktree (or, for a run of an older version, the worktree itself); the
// slot's worktree and cache stay for the next run, logs and staged
// artifacts for this one's readers.
func (r *Runner) Cleanup(id int64) {
	r.releaseSlot(id)
	_ = os.RemoveAll(r.Layout.Worktree(id))
}

// runVars are the SANDO_* variables of a phase command in worktree dir
// with cache slot slot.
func (r *Runner) runVars(cur *vocab.Run, dir string, slot cache.Slot) map[string]string {
	return map[string]string{
		"SANDO_RUN_ID":    strconv.FormatInt(cur.ID, 10),
		"SANDO_SHA":       cur.SHA,
		"SANDO_VERSION":   cur.Version,
		"SANDO_WORKTREE":  dir,
		"SANDO_STAGE_DIR": r.Layout.StageDir(cur.ID),
		"SANDO_CACHE_DIR": slot.Cache(),
	}
}

// fetch fetches the run's commit into its slot's worktree. What it
// learned (sha, version) rides on the compile's task and phase write; a
// fetch that runs again (again: redelivered) records it itself, so the
// compile task an earlier try queued, with what that try learned, changes
// nothing (runstore.Entry).
// entered is the fetch's phase write: whether the run entered fetching
// before, and the cache generation its slot must have.
func (r *Runner) fetch(ctx context.Context, j *job, cur *vocab.Run, s steps.Step, entered runstore.Entered) verdict {
	again := entered.Again
	logw, _, closeLog, err := r.openLog(j, cur.ID, s)
	if err != nil {
		return verdict{err: err}
	}
	defer closeLog()
	want := gitfetch.Want{SHA: cur.SHA, Ref: cmp.Or(cur.Ref, j.p.Branch)}
	if cur.SHA != "" {
		want.Ref = ""
	}
	slot, err := r.takeSlot(ctx, j, cur, entered.CacheGeneration)
	if err != nil {
		return verdict{err: fmt.Errorf("fetch: %w", err)}
	}
	dir := slot.Worktree()
	opts := gitfetch.Options{
		Repo: j.p.Repo, Dir: dir, Log: logw, Env: r.BaseEnv, Timeout: s.Timeout(j.p),
		Cache: r.Layout.GitCache(), Reuse: true,
	}
	if r.BuildUser != nil {
		// The worker checks out in place a tree an earlier run handed to
		// the build user: git refuses a repository of another owner, and
		// handOver gives the tree back whole once its top is not the
		// user's.
		_ = os.Lchown(dir, os.Getuid(), os.Getgid())
		_ = os.Lchown(filepath.Join(dir, ".git"), os.Getuid(), os.Getgid())
	}
	sha, err := gitfetch.Fetch(ctx, opts, want)
	var nf *gitfetch.NotFoundError
	switch {
	case errors.As(err, &nf):
		return verdict{failure: "fetch: " + nf.Error()}
	case err != nil:
		return verdict{err: fmt.Errorf("fetch: %w", err)}
	}
	ver, err := projversion.Read(dir, j.p.VersionFile, sha)
	if err != nil {
		return verdict{failure: "fetch: " + err.Error()}
	}
	if j.p.Reuse == pipeline.ReuseTree {
		return r.reuseOrRecord(ctx, j, cur, opts, sha, ver)
	}
	if !again {
		return verdict{fetched: &steps.Fetched{SHA: sha, Version: ver}}
	}
	if _, err := j.store.SetFetched(ctx, cur.ID, sha, ver); err != nil {
		return verdict{err: err}
	}
	return verdict{}
}

// reuseOrRecord, for a pipeline with reuse: tree, settles the run passed
// at once if a run of the same tree and definition passed, and otherwise
// records what the fetch learned with the run's reuse key, under which
// the run is filed once it passes.
func (r *Runner) reuseOrRecord(ctx context.Context, j *job, cur *vocab.Run, opts gitfetch.Options, sha, ver string) verdict {
	opts.Log = nil
	tree, err := gitfetch.TreeOf(ctx, opts, sha)
	if err != nil {
		return verdict{err: fmt.Errorf("fetch: %w", err)}
	}
	key := tree + ":" + j.p.Hash()
	from, settled, err := j.life.Reuse(ctx, cur.ID, sha, key)
	switch {
	case err != nil:
		return verdict{err: err}
	case settled:
		r.logFor(steps.Payload{RunID: cur.ID, Pipeline: j.p.Name}, steps.Fetch).Info("run passed: its tree and definition passed before", "reused_from", from)
		return verdict{settled: true}
	}
	if _, err := j.store.SetFetchedReusable(ctx, cur.ID, sha, ver, key); err != nil {
		return verdict{err: err}
	}
	cur.SHA, cur.Version = sha, ver
	return verdict{}
}

func (r *Runner) stage(ctx context.Context, j *job, cur *vocab.Run, s steps.Step) verdict {
	if err := os.MkdirAll(r.Layout.StageDir(cur.ID), 0o755); err != nil {
		return verdict{err: err}
	}
	return r.command(ctx, j, cur, s, j.p.Stage, func(out []byte, res proc.Result, timeout time.Duration) string {
		return "stage: " + cmp.Or(failure.Compile(out), res.Describe(timeout))
	})
}

func compileSummary(out []byte, res proc.Result, timeout time.Duration) string {
	if res.TimedOut {
		return "compile: " + res.Describe(timeout)
	}
	return cmp.Or(failure.Compile(out), "compile: "+res.Describe(timeout))
}

// command runs one shell command of the pipeline in the run's worktree,
// its output in the step's log, and judges it with summarize.
func (r *Runner) command(ctx context.Context, j *job, cur *vocab.Run, s steps.Step, script string,
	summarize func([]byte, proc.Result, time.Duration) string,
) verdict {
	timeout := s.Timeout(j.p)
	res, out, err := r.exec(ctx, j, cur, s, script)
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

func (r *Runner) exec(ctx context.Context, j *job, cur *vocab.Run, s steps.Step, script string) (proc.Result, []byte, error) {
	stepName, timeout := s.Name(), s.Timeout(j.p)
	// The worktree's real path: the slot's, which stays one across the
	// slot's runs (tools that key their outputs by path, as cargo does,
	// find them again).
	dir, err := filepath.EvalSymlinks(r.Layout.Worktree(cur.ID))
	if err != nil {
		// Another host fetched this run and SANDO_DATA_DIR is not shared,
		// or the worktree was removed: refetching is the fix, so retry.
		return proc.Result{}, nil, fmt.Errorf("%s: worktree missing (is SANDO_DATA_DIR shared by all workers?): %w", stepName, err)
	}
	slot, err := r.cacheDir(ctx, j, cur)
	if err != nil {
		return proc.Result{}, nil, fmt.Errorf("%s: %w", stepName, err)
	}
	if err := r.handOver(cur.ID, dir, slot.Cache()); err != nil {
		return proc.Result{}, nil, fmt.Errorf("%s: %w", stepName, err)
	}
	logw, path, closeLog, err := r.openLog(j, cur.ID, s)
	if err != nil {
		return proc.Result{}, nil, err
	}
	end, err := r.pool().Begin(slot.Pipeline(), slot, cur.ID, stepName)
	if errors.Is(err, cache.ErrNotHeld) {
		closeLog()
		return proc.Result{}, nil, errSettled // settled, and its slot another run's: nothing to run
	}
	if err != nil {
		closeLog()
		return proc.Result{}, nil, fmt.Errorf("%s: %w", stepName, err)
	}
	vars := r.runVars(cur, dir, slot)
	res, err := proc.Run(ctx, proc.Spec{
		Args: []string{"sh", "-c", script}, Dir: dir, Output: logw, Timeout: timeout,
		Env: phaseEnv(r.phaseBase(), j.p.Env, vars), User: r.BuildUser,
	})
	end() // seen to end: the slot is not half-written by a dead worker
	closeLog()
	if err != nil || res.OK() {
		return res, nil, err
	}
	out, rerr := readForSummary(path)
	if rerr != nil {
		return res, nil, rerr
	}
	return res, out, nil
}

// readForSummary reads what package failure needs of a log: the first 4 MiB
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

// gate runs one gate (running: its phase write recorded it running).
// When it passes, the verdict carries every gate of the run that has
// passed (read in the same step as this gate's pass), for the join, or,
// for the last gate to pass, that its write settled the run; when
// it fails, every gate the run has not reached is blocked (those still
// running are blocked by the terminal write).
func (r *Runner) gate(ctx context.Context, j *job, cur *vocab.Run, s steps.Step, running bool) verdict {
	g, _ := j.p.GateByKind(s.Gate) // steps.Resolve checked it is one
	ref := datadir.LogRef(cur.ID, s.Name())
	var tests *vocab.Tests // this gate's report counts, once it has ended
	record := func(st vocab.GateStatus, kind, logRef string) ([]vocab.Gate, error) {
		g := vocab.Gate{Kind: kind, Status: st, LogRef: logRef}
		if kind == s.Gate {
			g.Tests = tests
		}
		o, gates, err := j.store.SetGate(ctx, cur.ID, j.p.Tier, cur.Version, g)
		if err == nil && o == runstore.Finished {
			return nil, errSettled // canceled, superseded or failed since the phase began
		}
		return gates, err
	}
	if !running { // not recorded by the phase write (a task of an older version)
		if _, err := record(vocab.GateRunning, g.Kind, ref); err != nil {
			return verdict{err: err}
		}
	}
	res, out, err := r.exec(ctx, j, cur, s, g.Run)
	if err == nil && !res.Canceled {
		status := vocab.GateFailed
		if res.OK() {
			status = vocab.GatePassed
		}
		r.Metrics.Gate(g.Kind, string(status), res.Duration)
	}
	var report *failure.Report
	if err == nil && !res.Canceled && g.Report != "" {
		report = r.readGateReport(cur, g.Kind, g.Report)
		tests = testsOf(report)
	}
	switch {
	case err != nil:
		return verdict{err: err}
	case res.Canceled:
		return verdict{err: ctx.Err()}
	case res.OK():
		// The last gate's pass settles the run in the same write: its
		// own context, as for every settling write.
		pctx, cancel := settling(ctx)
		defer cancel()
		o, gates, settled, err := j.life.PassGate(pctx, cur.ID, cur.Version, vocab.Gate{Kind: g.Kind, LogRef: ref, Tests: tests})
		switch {
		case err != nil:
			return verdict{err: err}
		case o == runstore.Finished:
			return verdict{err: errSettled} // canceled, superseded or failed since the phase began
		case settled:
			return verdict{settled: true}
		}
		passed := map[string]bool{}
		for _, other := range gates {
			if other.Status == vocab.GatePassed {
				passed[other.Kind] = true
			}
		}
		return verdict{passed: passed}
	}
	gates, err := record(vocab.GateFailed, g.Kind, ref)
	if err != nil {
		return verdict{err: err}
	}
	for _, other := range j.p.Gates {
		if !slices.ContainsFunc(gates, func(reached vocab.Gate) bool { return reached.Kind == other.Kind }) {
			if _, err := record(vocab.GateBlocked, other.Kind, ""); err != nil {
				return verdict{err: err}
			}
		}
	}
	if res.TimedOut {
		return verdict{failure: g.Kind + ": " + res.Describe(g.Timeout)}
	}
	if report != nil && report.First != "" {
		// The report names the failing test as the runner recorded it;
		// the log may hold only a progress line for it.
		return verdict{failure: failure.Truncate(g.Kind + ": " + report.First)}
	}
	return verdict{failure: failure.Gate(g.Kind, out, res.Describe(g.Timeout))}
}

// readGateReport reads the JUnit reports the gate wrote (see gateReport).
// A report that cannot be read never fails the gate: the gate's exit
// status judges it; what was left out is logged.
func (r *Runner) readGateReport(cur *vocab.Run, kind, pattern string) *failure.Report {
	rep, skipped, err := gateReport(r.Layout.Worktree(cur.ID), pattern)
	if err != nil {
		skipped = append(skipped, err)
	}
	for _, e := range skipped {
		r.Logger.Warn("gate report not read", "run_id", cur.ID, "gate", kind, "report", pattern, "err", e)
	}
	return rep
}
