// Package config reads a Sando process's settings from the environment
// (12-factor) and flags, fills defaults and validates them. Every setting
// is listed here once (settings), its default once (defaults).
package config

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"sando.dev/sando/internal/proc"
)

// Config of cmd/api and cmd/worker. Flags override the environment.
type Config struct {
	RedisURL        string        // REDIS_URL; empty: embedded miniredis + in-process worker
	RedisPassword   string        // REDIS_PASSWORD_FILE's content; the password of every connection REDIS_URL names
	Addr            string        // SANDO_ADDR (or PORT, meaning that port on every interface); API listen address
	WorkerAddr      string        // SANDO_WORKER_ADDR; a worker's /metrics and /healthz; empty: off
	PipelinePath    string        // SANDO_CONFIG
	DataDir         string        // SANDO_DATA_DIR
	Concurrency     int           // SANDO_CONCURRENCY
	Token           string        // SANDO_TOKEN
	ReadToken       string        // SANDO_READ_TOKEN
	WebhookSecret   string        // SANDO_WEBHOOK_SECRET; signs webhook deliveries
	BuildUser       string        // SANDO_BUILD_USER; a user name or uid phase commands run as; empty: the worker's
	PollInterval    time.Duration // SANDO_POLL_INTERVAL
	ShutdownTimeout time.Duration // SANDO_SHUTDOWN_TIMEOUT
	LogLevel        string        // SANDO_LOG_LEVEL
	Retention       time.Duration // SANDO_RETENTION; finished runs older than this are pruned (0: never)
	RetentionRuns   int           // SANDO_RETENTION_RUNS; the newest N finished runs are kept whatever their age

	// MonitoringReadOnly (SANDO_MONITORING_READONLY) serves Asynqmon at
	// /monitoring/ without its destructive actions (non-GET calls get 405).
	MonitoringReadOnly bool

	// NoSupersede (SANDO_SUPERSEDE=0) keeps older building runs alive on
	// a new /rebuild, for benchmarks that need many runs building at once.
	// The zero value supersedes, so a Config literal keeps the default.
	NoSupersede bool
}

// Defaults, documented in the README's configuration table.
func defaults() Config {
	return Config{
		Addr:            "127.0.0.1:8080", // loopback: anyone who reaches the API can start builds
		PipelinePath:    "./sando.yaml",
		DataDir:         "./data",
		Concurrency:     runtime.NumCPU(),
		PollInterval:    10 * time.Millisecond,
		ShutdownTimeout: 10 * time.Second,
		LogLevel:        "info",
		Retention:       30 * 24 * time.Hour,
		RetentionRuns:   1000,
	}
}

// Embedded reports whether this process runs everything on miniredis.
func (c Config) Embedded() bool { return strings.TrimSpace(c.RedisURL) == "" }

// setting is one row of the settings table: where a value comes from and
// how it is read into a Config. Every setting has an environment variable
// and a flag, except secrets, which never travel as a flag's value (any
// local user can read /proc/<pid>/cmdline): they have a -<flag>-file flag
// and a <ENV>_FILE variable naming a file to read instead.
type setting struct {
	env   string // the variable; "" for a secret that has only a file
	flag  string
	usage string
	// set reads v into the Config; its error says what would be valid
	// ("want …"), and the caller names the variable or flag.
	set     func(c *Config, v string) error
	secret  bool // see above; fileEnv is env+"_FILE" or, without env, given
	fileEnv string
	boolean bool // a flag given alone means true
}

// settings lists every setting once: Load reads the environment and the
// flags from it, and the README's configuration table mirrors it.
func settings() []setting {
	text := func(field func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *field(c) = v; return nil }
	}
	duration := func(field func(*Config) *time.Duration) func(*Config, string) error {
		return func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return errors.New("want a duration such as 10ms or 30s")
			}
			*field(c) = d
			return nil
		}
	}
	return []setting{
		{env: "REDIS_URL", flag: "redis-url", usage: "Redis URL; empty: embedded in-memory Redis",
			set: text(func(c *Config) *string { return &c.RedisURL })},
		{fileEnv: "REDIS_PASSWORD_FILE", flag: "redis-password", secret: true,
			usage: "the password of every connection REDIS_URL names (instead of in the URL)",
			set:   text(func(c *Config) *string { return &c.RedisPassword })},
		{env: "SANDO_ADDR", flag: "addr", usage: "API listen address (PORT: that port on every interface)",
			set: text(func(c *Config) *string { return &c.Addr })},
		{env: "SANDO_WORKER_ADDR", flag: "worker-addr", usage: "worker's /metrics and /healthz address; empty: off",
			set: text(func(c *Config) *string { return &c.WorkerAddr })},
		{env: "SANDO_CONFIG", flag: "config", usage: "pipeline file or directory of them",
			set: text(func(c *Config) *string { return &c.PipelinePath })},
		{env: "SANDO_DATA_DIR", flag: "data-dir", usage: "worktrees, logs, staged artifacts, caches",
			set: text(func(c *Config) *string { return &c.DataDir })},
		{env: "SANDO_CONCURRENCY", flag: "concurrency", usage: "phases one worker runs at once",
			set: func(c *Config, v string) (err error) {
				if c.Concurrency, err = strconv.Atoi(v); err != nil {
					return errors.New("want a whole number from 1 to 1024")
				}
				return nil
			}},
		{env: "SANDO_TOKEN", flag: "token", secret: true, usage: "the bearer token every mutating route and /monitoring require",
			set: text(func(c *Config) *string { return &c.Token })},
		{env: "SANDO_READ_TOKEN", flag: "read-token", secret: true, usage: "the bearer token every read requires (the write token also grants reads)",
			set: text(func(c *Config) *string { return &c.ReadToken })},
		{env: "SANDO_WEBHOOK_SECRET", flag: "webhook-secret", secret: true, usage: "the key that signs webhook deliveries",
			set: text(func(c *Config) *string { return &c.WebhookSecret })},
		{env: "SANDO_BUILD_USER", flag: "build-user", usage: "user name or uid phase commands run as; empty: the worker's",
			set: text(func(c *Config) *string { return &c.BuildUser })},
		{env: "SANDO_POLL_INTERVAL", flag: "poll-interval", usage: "idle worker's queue poll interval",
			set: duration(func(c *Config) *time.Duration { return &c.PollInterval })},
		{env: "SANDO_SHUTDOWN_TIMEOUT", flag: "shutdown-timeout", usage: "time running phases get on SIGTERM",
			set: duration(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
		{env: "SANDO_LOG_LEVEL", flag: "log-level", usage: "debug, info, warn or error",
			set: text(func(c *Config) *string { return &c.LogLevel })},
		{env: "SANDO_RETENTION", flag: "retention", usage: "finished runs older than this are pruned (30d, 72h; 0: never)",
			set: func(c *Config, v string) (err error) {
				if c.Retention, err = parseDays(v); err != nil {
					return errors.New("want a duration such as 30d, 72h or 0 (keep forever)")
				}
				return nil
			}},
		{env: "SANDO_RETENTION_RUNS", flag: "retention-runs", usage: "the newest N finished runs are kept whatever their age",
			set: func(c *Config, v string) (err error) {
				if c.RetentionRuns, err = strconv.Atoi(v); err != nil || c.RetentionRuns < 0 {
					return errors.New("want a whole number, 0 or more")
				}
				return nil
			}},
		{env: "SANDO_MONITORING_READONLY", flag: "monitoring-readonly", boolean: true,
			usage: "Asynqmon at /monitoring/ without destructive actions",
			set:   func(c *Config, v string) (err error) { c.MonitoringReadOnly, err = parseBool(v); return err }},
		{env: "SANDO_SUPERSEDE", flag: "supersede", boolean: true, usage: "a new /rebuild aborts older building runs (default true)",
			set: func(c *Config, v string) error {
				b, err := parseBool(v)
				c.NoSupersede = !b
				return err
			}},
	}
}

// fileVar is the variable naming a secret's file ("" for a setting that
// is not a secret).
func (st setting) fileVar() string {
	if !st.secret {
		return ""
	}
	return cmp.Or(st.fileEnv, st.env+"_FILE")
}

func parseBool(v string) (bool, error) {
	switch v {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, errors.New("want 1, true, 0 or false")
}

// readSecret reads a secret's file: its content without the trailing
// newline an editor or `echo` leaves.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", errors.New("the file is empty")
	}
	return v, nil
}

// Load reads getenv, then args (flags, without the program name), from
// the settings table. Errors name the variable or flag, the bad value and
// what is valid; a secret's value is never repeated.
func Load(program string, args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c := defaults()
	var errs []error
	table := settings()
	for _, st := range table {
		v := getEnv(getenv, st.env)
		if path := getEnv(getenv, st.fileVar()); path != "" {
			if v != "" {
				errs = append(errs, fmt.Errorf("%s and %s are both set: give one", st.env, st.fileVar()))
				continue
			}
			var err error
			if v, err = readSecret(path); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", st.fileVar(), path, err))
				continue
			}
		}
		if v == "" {
			continue
		}
		// A secret's set never fails (it is text), so no error repeats one.
		if err := st.set(&c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", st.env, v, err))
		}
	}
	// A platform's PORT means that port on every interface, unless
	// SANDO_ADDR says otherwise.
	if getenv("SANDO_ADDR") == "" && getenv("PORT") != "" {
		c.Addr = ":" + getenv("PORT")
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}

	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.SetOutput(usage)
	for _, st := range table {
		switch {
		case st.secret:
			env := st.fileVar()
			if st.env != "" {
				env = st.env + ", " + env
			}
			fs.Func(st.flag+"-file", "read "+st.usage+" from `FILE` ("+env+")", func(path string) error {
				v, err := readSecret(path)
				if err == nil {
					_ = st.set(&c, v)
				}
				return err
			})
		case st.boolean:
			fs.BoolFunc(st.flag, st.usage+" ("+st.env+")", func(v string) error { return st.set(&c, v) })
		default:
			fs.Func(st.flag, st.usage+" ("+st.env+")", func(v string) error { return st.set(&c, v) })
		}
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (settings are flags or environment variables)", fs.Arg(0))
	}
	return c, c.validate()
}

func getEnv(getenv func(string) string, key string) string {
	if key == "" {
		return ""
	}
	return getenv(key)
}

func (c Config) validate() error {
	var errs []error
	if c.Concurrency < 1 || c.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("SANDO_CONCURRENCY=%d: want a whole number from 1 to 1024", c.Concurrency))
	}
	if c.PollInterval < time.Millisecond || c.PollInterval > time.Minute {
		errs = append(errs, fmt.Errorf("SANDO_POLL_INTERVAL=%s: want a duration from 1ms to 1m", c.PollInterval))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("SANDO_SHUTDOWN_TIMEOUT=%s: must not be negative", c.ShutdownTimeout))
	}
	if c.Addr == "" {
		errs = append(errs, errors.New("SANDO_ADDR: must not be empty (e.g. :8080)"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("SANDO_DATA_DIR: must not be empty"))
	}
	if c.RedisPassword != "" && c.Embedded() {
		errs = append(errs, errors.New("REDIS_PASSWORD_FILE: a Redis password needs REDIS_URL (the embedded Redis has none)"))
	}
	if c.BuildUser != "" {
		if _, err := proc.LookupUser(c.BuildUser); err != nil {
			errs = append(errs, fmt.Errorf("SANDO_BUILD_USER=%q: %w", c.BuildUser, err))
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("SANDO_LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// parseDays is time.ParseDuration plus a "d" (24 h) unit, since retention
// is said in days.
func parseDays(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("bad days %q", v)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	if v == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q", v)
	}
	return d, nil
}

// Exposed reports whether the API listens beyond loopback without a
// write token: then anyone who reaches it can start builds, which run
// shell commands. The API logs a warning saying so.
func (c Config) Exposed() bool {
	if c.Token != "" {
		return false
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
