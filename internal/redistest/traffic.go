package redistest

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Traffic is a go-redis hook that counts what a client sends Redis: round
// trips (a command, or a pipeline of them, each one) and the commands in
// them. A new connection's own set-up (HELLO, CLIENT SETINFO) is left out,
// since it is the pool's doing, not the caller's. Add it with AddHook; it
// counts from then on.
type Traffic struct{ trips, cmds atomic.Int64 }

// Trips is the round trips counted so far.
func (t *Traffic) Trips() int64 { return t.trips.Load() }

// Commands is the commands counted so far.
func (t *Traffic) Commands() int64 { return t.cmds.Load() }

// Reset starts both counts again from 0.
func (t *Traffic) Reset() { t.trips.Store(0); t.cmds.Store(0) }

func setup(cmd redis.Cmder) bool { return cmd.Name() == "hello" || cmd.Name() == "client" }

// DialHook implements redis.Hook.
func (t *Traffic) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (t *Traffic) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !setup(cmd) {
			t.trips.Add(1)
			t.cmds.Add(1)
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (t *Traffic) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !setup(cmds[0]) {
			t.trips.Add(1)
			t.cmds.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}
