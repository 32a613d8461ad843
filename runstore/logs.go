package runstore

import (
	"context"
	"fmt"
)

// LogKeys are the base key of run id's log of step (Keys.Log) and the
// set of the run's logs (Keys.Logs), for package logstore: its Writer adds
// the base to the set with the log's first write (logstore.Options.Index),
// so retention finds every log stored.
func (s *Store) LogKeys(id int64, step string) (base, index string) {
	return s.keys.Log(id, step), s.keys.Logs(id)
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
