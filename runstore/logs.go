package runstore

import (
	"context"
	"fmt"
)

// AddLog records that run id has a log for step and returns the log's
// base key (Keys.Log), for package logstore.
func (s *Store) AddLog(ctx context.Context, id int64, step string) (string, error) {
	base := s.keys.Log(id, step)
	if err := s.rdb.SAdd(ctx, s.keys.Logs(id), base).Err(); err != nil {
		return base, fmt.Errorf("add log of run %d: %w", id, err)
	}
	return base, nil
}

// LogsOf lists the log base keys of run id.
func (s *Store) LogsOf(ctx context.Context, id int64) ([]string, error) {
	bases, err := s.rdb.SMembers(ctx, s.keys.Logs(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("logs of run %d: %w", id, err)
	}
	return bases, nil
}

// ForgetLogs drops run id's list of logs, once the logs are deleted.
func (s *Store) ForgetLogs(ctx context.Context, id int64) error {
	if err := s.rdb.Del(ctx, s.keys.Logs(id)).Err(); err != nil {
		return fmt.Errorf("forget logs of run %d: %w", id, err)
	}
	return nil
}
