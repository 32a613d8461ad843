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
