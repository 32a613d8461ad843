// Package redisconn turns REDIS_URL into the two clients Sando needs on the
// same Redis: go-redis for the run store and asynq's connection option for
// the task queues. Both get the same short timeouts, so no Redis call of
// the API or of a worker can hang while Redis is away: it fails within a
// couple of seconds (the API answers 503 with Retry-After), and the next
// call after Redis is back succeeds.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// The bounds of every Redis call, by the run store, asynq (client, server,
// Inspector) and Asynqmon alike. A call to a Redis that refuses
// connections fails at once; one that accepts but does not answer fails
// after about ReadTimeout × (MaxRetries+1).
//
// A caller's context deadline, when sooner, bounds a call too (go-redis's
// ContextTimeoutEnabled), so /readyz's 1 s check takes 1 s at most.
//
// A pub/sub subscription (runwatch, asynq's cancel channel) is not bound
// by ReadTimeout: go-redis waits for its messages without a deadline.
const (
	DialTimeout  = time.Second
	ReadTimeout  = time.Second
	WriteTimeout = time.Second
	PoolTimeout  = time.Second
	// MaxRetries is retries after the first try, on network errors and
	// timeouts. Few, because a retried script may run twice when only its
	// answer was lost (Sando's scripts are guarded; a retried create makes
	// a second run that supersedes the first).
	MaxRetries = 1
	// dialAttempts is how often one dial is tried before the call fails
	// (go-redis's own default is 5 with 100 ms between them).
	dialAttempts = 1
)

// Conn is one Redis deployment as both clients see it.
type Conn struct {
	Client redis.UniversalClient
	Asynq  asynq.RedisConnOpt
	// Kind is "redis", "sentinel" or "cluster".
	Kind string
}

// Opt is the asynq.RedisConnOpt of a parsed REDIS_URL. asynq's own option
// types cannot set a pool timeout or retries; this one makes the same
// go-redis client the run store uses, so asynq, its Inspector and
// Asynqmon share the run store's timeouts.
type Opt struct {
	kind     string
	simple   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// MakeRedisClient implements asynq.RedisConnOpt: a new client on every
// call (each owner closes its own), whose calls outlive their context's
// cancellation (see detached).
func (o Opt) MakeRedisClient() any {
	c := o.client()
	c.AddHook(detached{})
	return c
}

// detached runs every command of asynq's clients on a context without
// cancellation or deadline; the client's own timeouts still bound each
// call.
//
// asynq v0.26 moves a finished task out of "active" with a context bound
// to the task's lease and, when Redis is away, hands the same write to its
// syncer to retry every 5 s — but its deferred cancel has already
// canceled that context (processor.go: retry, archive, markAsComplete,
// markAsDone), so go-redis refuses every retry at once. The task then
// stays active until its lease expires and the recoverer takes it, about
// 60–120 s after a Redis blip of a few seconds, and the phase runs again.
// Detached, the syncer's retry succeeds as soon as Redis is back.
type detached struct{}

func (detached) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(context.WithoutCancel(ctx), network, addr)
	}
}

func (detached) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		return next(context.WithoutCancel(ctx), cmd)
	}
}

func (detached) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		return next(context.WithoutCancel(ctx), cmds)
	}
}

func (o Opt) client() redis.UniversalClient {
	switch {
	case o.cluster != nil:
		c := *o.cluster
		c.Addrs = append([]string(nil), o.cluster.Addrs...)
		return redis.NewClusterClient(&c)
	case o.failover != nil:
		c := *o.failover
		c.SentinelAddrs = append([]string(nil), o.failover.SentinelAddrs...)
		return redis.NewFailoverClient(&c)
	default:
		c := *o.simple
		return redis.NewClient(&c)
	}
}

// Addrs are the addresses the option dials first: the server, the
// sentinels or the cluster seeds.
func (o Opt) Addrs() []string {
	switch {
	case o.cluster != nil:
		return append([]string(nil), o.cluster.Addrs...)
	case o.failover != nil:
		return append([]string(nil), o.failover.SentinelAddrs...)
	default:
		return []string{o.simple.Addr}
	}
}

// Parse accepts
//
//	redis://[[user]:pass@]host[:port][/db]        one Redis
//	rediss://…                                    the same over TLS
//	redis-socket://[:pass@]/path/to.sock[?db=N]   one Redis on a unix socket
//	redis-sentinel://[:pass@]host:port[,host:port…]?master=name
//	redis-cluster://[[user]:pass@]host:port[,host:port…]
//	host:port,host:port[,…]                       Redis Cluster seeds
//
// A single bare host:port is one Redis (as redis://host:port); a cluster
// with one seed is named with redis-cluster://. No error ever repeats a
// password.
func Parse(raw string) (Conn, error) { return ParseWithPassword(raw, "") }

// ParseWithPassword is Parse with a password kept out of the URL (read
// from REDIS_PASSWORD_FILE): when not empty it is the password of every
// connection the URL names, a sentinel's master and a cluster's nodes
// included, overriding one in the URL.
func ParseWithPassword(raw, password string) (Conn, error) {
	raw = strings.TrimSpace(raw)
	opt, err := parse(raw)
	if err != nil {
		return Conn{}, fmt.Errorf("REDIS_URL: %s", redact(err.Error(), raw))
	}
	if password != "" {
		switch {
		case opt.simple != nil:
			opt.simple.Password = password
		case opt.failover != nil:
			opt.failover.Password = password
		case opt.cluster != nil:
			opt.cluster.Password = password
		}
	}
	return Conn{Client: opt.client(), Asynq: opt, Kind: opt.kind}, nil
}

func parse(raw string) (Opt, error) {
	scheme, rest, hasScheme := strings.Cut(raw, "://")
	switch {
	case raw == "":
		return Opt{}, errors.New("empty")
	case !hasScheme && strings.Contains(raw, ","):
		return clusterSeeds(raw)
	case !hasScheme:
		if err := checkAddr(raw); err != nil {
			return Opt{}, err
		}
		return simple(asynq.RedisClientOpt{Addr: raw}), nil
	case scheme == "redis" && strings.Contains(rest, ",") && !strings.Contains(rest, "@"):
		// The comma list may spell its seeds as redis://host:port too.
		return clusterSeeds(raw)
	case scheme == "redis-cluster":
		return clusterURL(rest)
	}
	if scheme != "redis" && scheme != "rediss" && scheme != "redis-socket" && scheme != "redis-sentinel" {
		return Opt{}, fmt.Errorf("unsupported scheme %q (want redis, rediss, redis-socket, redis-sentinel or redis-cluster)", scheme)
	}
	ao, err := asynq.ParseRedisURI(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // never echo the URL itself
			err = ue.Err
		}
		return Opt{}, fmt.Errorf("not a valid %s:// URL: %s", scheme, strings.TrimPrefix(err.Error(), "asynq: "))
	}
	switch o := ao.(type) {
	case asynq.RedisClientOpt:
		if o.Network != "unix" {
			if err := checkAddr(o.Addr); err != nil {
				return Opt{}, err
			}
		}
		return simple(o), nil
	case asynq.RedisFailoverClientOpt:
		if o.MasterName == "" {
			return Opt{}, errors.New("redis-sentinel:// needs the master's name: ?master=<name>")
		}
		for _, a := range o.SentinelAddrs {
			if err := checkAddr(a); err != nil {
				return Opt{}, fmt.Errorf("sentinel %w", err)
			}
		}
		return Opt{kind: "sentinel", failover: &redis.FailoverOptions{
			MasterName: o.MasterName, SentinelAddrs: o.SentinelAddrs,
			SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword,
			Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig,
			DialTimeout: DialTimeout, DialerRetries: dialAttempts, ReadTimeout: ReadTimeout,
			WriteTimeout: WriteTimeout, PoolTimeout: PoolTimeout, MaxRetries: MaxRetries,
			ContextTimeoutEnabled: true,
		}}, nil
	}
	return Opt{}, fmt.Errorf("unsupported connection type %T", ao)
}

func simple(o asynq.RedisClientOpt) Opt {
	return Opt{kind: "redis", simple: &redis.Options{
		Network: o.Network, Addr: o.Addr, Username: o.Username, Password: o.Password,
		DB: o.DB, TLSConfig: o.TLSConfig,
		DialTimeout: DialTimeout, DialerRetries: dialAttempts, ReadTimeout: ReadTimeout,
		WriteTimeout: WriteTimeout, PoolTimeout: PoolTimeout, MaxRetries: MaxRetries,
		ContextTimeoutEnabled: true,
	}}
}

func cluster(addrs []string, user, pass string) Opt {
	return Opt{kind: "cluster", cluster: &redis.ClusterOptions{
		Addrs: addrs, Username: user, Password: pass,
		DialTimeout: DialTimeout, DialerRetries: dialAttempts, ReadTimeout: ReadTimeout,
		WriteTimeout: WriteTimeout, PoolTimeout: PoolTimeout, MaxRetries: MaxRetries,
		ContextTimeoutEnabled: true,
	}}
}

// clusterSeeds reads "host:port,host:port" (each optionally redis://).
func clusterSeeds(raw string) (Opt, error) {
	var addrs []string
	for _, a := range strings.Split(raw, ",") {
		a = strings.TrimSpace(a)
		if strings.Contains(a, "@") {
			return Opt{}, errors.New("cluster seeds carry no credentials: use redis-cluster://[user]:password@host:port,host:port")
		}
		if s, r, ok := strings.Cut(a, "://"); ok {
			if s != "redis" {
				return Opt{}, fmt.Errorf("cluster seed %q: want host:port", a)
			}
			a = strings.TrimSuffix(r, "/")
		}
		if err := checkAddr(a); err != nil {
			return Opt{}, fmt.Errorf("cluster seed %w", err)
		}
		addrs = append(addrs, a)
	}
	return cluster(addrs, "", ""), nil
}

// clusterURL reads what follows redis-cluster://.
func clusterURL(rest string) (Opt, error) {
	var user, pass string
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		info := rest[:at]
		rest = rest[at+1:]
		u, p, hasPass := strings.Cut(info, ":")
		var err error
		if user, err = url.PathUnescape(u); err != nil {
			return Opt{}, errors.New("redis-cluster:// user name is not validly escaped")
		}
		if hasPass {
			if pass, err = url.PathUnescape(p); err != nil {
				return Opt{}, errors.New("redis-cluster:// password is not validly escaped")
			}
		}
	}
	rest = strings.TrimSuffix(rest, "/")
	if strings.ContainsAny(rest, "/?#") {
		return Opt{}, errors.New("redis-cluster:// takes host:port seeds only (no database, path or options)")
	}
	var addrs []string
	for _, a := range strings.Split(rest, ",") {
		a = strings.TrimSpace(a)
		if err := checkAddr(a); err != nil {
			return Opt{}, fmt.Errorf("cluster seed %w", err)
		}
		addrs = append(addrs, a)
	}
	return cluster(addrs, user, pass), nil
}

// checkAddr wants host:port with a port from 1 to 65535.
func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return fmt.Errorf("%q: want host:port", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", a, port)
	}
	return nil
}

// redact keeps the credentials of REDIS_URL out of a message, however the
// message quotes or escapes them.
func redact(msg, raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		rest = raw
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return msg
	}
	info := rest[:at]
	secrets := []string{info}
	if _, p, ok := strings.Cut(info, ":"); ok && p != "" {
		secrets = append(secrets, p)
		if d, err := url.PathUnescape(p); err == nil {
			secrets = append(secrets, d)
		}
		if d, err := url.QueryUnescape(p); err == nil {
			secrets = append(secrets, d)
		}
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		q := strconv.Quote(s)
		for _, form := range []string{s, q[1 : len(q)-1], url.PathEscape(s), url.QueryEscape(s)} {
			if form != "" {
				msg = strings.ReplaceAll(msg, form, "***")
			}
		}
	}
	return msg
}

// SetLogger routes go-redis's own messages (a failed dial, a Sentinel's
// new master), which it otherwise prints as plain text on stderr, to log,
// so a process's stderr stays one JSON object per line: failures at Warn,
// the rest at Info. It is process-wide.
func SetLogger(log *slog.Logger) {
	redis.SetLogger(goRedisLogger{log.With("source", "go-redis")})
}

type goRedisLogger struct{ l *slog.Logger }

func (g goRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	level := slog.LevelInfo
	if lower := strings.ToLower(msg); strings.Contains(lower, "fail") || strings.Contains(lower, "error") {
		level = slog.LevelWarn
	}
	g.l.Log(ctx, level, msg)
}
