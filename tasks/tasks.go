// Package tasks runs Sando's steps on asynq: one handler per step kind
// (the table is package steps), where each successful step enqueues the
// next under a deterministic TaskID, so a redelivered task never enqueues
// its successor twice; plus the system tasks (webhook delivery, the
// janitor's sweep, the retention prune). Every terminal write goes through
// package lifecycle.
package tasks
