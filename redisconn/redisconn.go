// Package redisconn turns REDIS_URL into the two clients Sando needs on the
// same Redis: go-redis for the run store and asynq's connection option for
// the task queues.
package redisconn

import (
	"fmt"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Conn is one Redis deployment as both clients see it.
type Conn struct {
	Client redis.UniversalClient
	Asynq  asynq.RedisConnOpt
}

// Parse accepts redis://, rediss://, redis-sentinel:// (asynq's syntax:
// redis-sentinel://[:pass@]host:port[,host:port]?master=name) and a
// comma-separated list of host:port (or redis://host:port) seeds for
// Redis Cluster.
func Parse(raw string) (Conn, error) {
	raw = strings.TrimSpace(raw)
	if !strings.Contains(raw, "://") || (strings.Contains(raw, ",") && !strings.HasPrefix(raw, "redis-sentinel://")) {
		return cluster(raw)
	}
	opt, err := asynq.ParseRedisURI(raw)
	if err != nil {
		return Conn{}, fmt.Errorf("REDIS_URL: %s", redact(err.Error(), raw))
	}
	client, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return Conn{}, fmt.Errorf("REDIS_URL: unsupported connection type %T", opt)
	}
	return Conn{Client: client, Asynq: opt}, nil
}

func cluster(raw string) (Conn, error) {
	var addrs []string
	for _, a := range strings.Split(raw, ",") {
		a = strings.TrimPrefix(strings.TrimSpace(a), "redis://")
		if a == "" || !strings.Contains(a, ":") {
			return Conn{}, fmt.Errorf("REDIS_URL: cluster seed %q: want host:port", a)
		}
		addrs = append(addrs, a)
	}
	opt := asynq.RedisClusterClientOpt{Addrs: addrs}
	return Conn{Client: redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}), Asynq: opt}, nil
}

// redact keeps a password in REDIS_URL out of error messages and logs.
func redact(msg, raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		if at := strings.LastIndex(raw, "@"); at > i {
			msg = strings.ReplaceAll(msg, raw[i+3:at], "***")
		}
	}
	return msg
}
