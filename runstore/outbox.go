package runstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// WithWebhooks tells the store the pipeline has webhooks: every terminal
// write then adds the run to the outbox in the same script, and the id
// stays there until its webhooks are enqueued (Delivered). Without it the
// terminal writes run no extra command.
func WithWebhooks(on bool) Option { return func(s *Store) { s.outbox = on } }

// outboxArgs is what a terminal write appends to its keys and arguments
// to record the run in the outbox at now: nothing when the pipeline has no
// webhooks, and the scripts treat the missing key as "no outbox".
func (s *Store) outboxArgs(keys []string, args []any, now time.Time) ([]string, []any) {
	if !s.outbox {
		return keys, args
	}
	return append(keys, s.keys.Outbox()), append(args, now.UnixMilli())
}

// Delivered takes a run out of the outbox once all its webhooks are
// enqueued.
func (s *Store) Delivered(ctx context.Context, id int64) error {
	if err := s.rdb.ZRem(ctx, s.keys.Outbox(), id).Err(); err != nil {
		return fmt.Errorf("outbox: remove run %d: %w", id, err)
	}
	return nil
}

// Undelivered lists up to limit runs, oldest first, that settled before
// olderThan and whose webhooks are not known to be enqueued.
func (s *Store) Undelivered(ctx context.Context, olderThan time.Time, limit int) ([]int64, error) {
	raw, err := s.rdb.ZRangeByScore(ctx, s.keys.Outbox(), &redis.ZRangeBy{
		Min: "-inf", Max: "(" + strconv.FormatInt(olderThan.UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("outbox: list: %w", err)
	}
	ids := make([]int64, 0, len(raw))
	for _, r := range raw {
		if id, err := strconv.ParseInt(r, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
