package tasks

import (
	"context"
	"io"

	"sando.dev/sando/internal/logstore"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/runstore"
)

// openLog opens step s's log of run id: a file on this worker's data dir
// (read back for the failure summary) and the same bytes in Redis, where
// the API serves them whichever worker wrote them and after it is gone.
// closeLog flushes both; a log Redis could not take stays on the disk and is
// logged, but never fails the step.
func (r *Runner) openLog(j *job, id int64, s steps.Step) (w io.Writer, path string, closeLog func(), err error) {
	f, err := r.Layout.Create(id, s.Name())
	if err != nil {
		return nil, "", nil, err
	}
	base, index := j.store.LogKeys(id, s.Name())
	// No Events: the close of a step's log is followed by a write of its
	// run, which publishes and wakes the log's followers: at once for a
	// gate (its status) or a failure, at the next step's start otherwise.
	// A publish of its own would wake the run's long-polls too, for a view
	// that did not change. A follower no run write wakes in time sees the
	// end at its next look (logstore.Follow looks every 250 ms).
	lw := logstore.NewWriter(r.Redis, base, logstore.Options{Logger: r.Logger, Index: index})
	closeBoth := func() {
		if err := lw.Close(); err != nil {
			r.Logger.Warn("step log not stored in Redis; it is only on this worker's disk",
				"run_id", id, "step", s.Name(), "path", f.Name(), "err", err)
		}
		_ = f.Close()
	}
	return io.MultiWriter(f, lw), f.Name(), closeBoth, nil
}

// deleteLogs removes a pruned run's logs from Redis.
func (r *Runner) deleteLogs(ctx context.Context, store *runstore.Store, id int64) error {
	bases, err := store.LogsOf(ctx, id)
	if err != nil {
		return err
	}
	if err := logstore.Delete(ctx, r.Redis, bases...); err != nil {
		return err
	}
	return store.ForgetLogs(ctx, id)
}
