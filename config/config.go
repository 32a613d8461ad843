// Package config reads a Sando process's settings from the environment
// (12-factor) and flags, fills defaults and validates them. Every setting
// and its default is listed here, once.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"time"

	"sando/proc"
)

// Config of cmd/api and cmd/worker. Flags override the environment.
type Config struct {
	RedisURL        string        // REDIS_URL; empty: embedded miniredis + in-process worker
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

// Load reads getenv, then args (flags, without the program name).
// Errors name the variable or flag, the bad value and what is valid.
func Load(program string, args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c := defaults()
	var errs []error
	str := func(dst *string, keys ...string) {
		for _, k := range keys {
			if v := getenv(k); v != "" {
				*dst = v
				return
			}
		}
	}
	str(&c.RedisURL, "REDIS_URL")
	str(&c.Addr, "SANDO_ADDR")
	str(&c.WorkerAddr, "SANDO_WORKER_ADDR")
	if getenv("SANDO_ADDR") == "" && getenv("PORT") != "" {
		c.Addr = ":" + getenv("PORT")
	}
	str(&c.PipelinePath, "SANDO_CONFIG")
	str(&c.DataDir, "SANDO_DATA_DIR")
	str(&c.Token, "SANDO_TOKEN")
	str(&c.ReadToken, "SANDO_READ_TOKEN")
	str(&c.WebhookSecret, "SANDO_WEBHOOK_SECRET")
	str(&c.BuildUser, "SANDO_BUILD_USER")
	str(&c.LogLevel, "SANDO_LOG_LEVEL")
	if v := getenv("SANDO_RETENTION"); v != "" {
		d, err := parseDays(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("SANDO_RETENTION=%q: want a duration such as 30d, 72h or 0 (keep forever)", v))
		}
		c.Retention = d
	}
	if v := getenv("SANDO_RETENTION_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("SANDO_RETENTION_RUNS=%q: want a whole number, 0 or more", v))
		}
		c.RetentionRuns = n
	}
	if v := getenv("SANDO_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("SANDO_CONCURRENCY=%q: want a whole number from 1 to 1024", v))
		}
		c.Concurrency = n
	}
	for key, dst := range map[string]*time.Duration{
		"SANDO_POLL_INTERVAL": &c.PollInterval, "SANDO_SHUTDOWN_TIMEOUT": &c.ShutdownTimeout,
	} {
		if v := getenv(key); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want a duration such as 10ms or 30s", key, v))
			}
			*dst = d
		}
	}
	switch v := getenv("SANDO_MONITORING_READONLY"); v {
	case "":
	case "1", "true":
		c.MonitoringReadOnly = true
	case "0", "false":
		c.MonitoringReadOnly = false
	default:
		errs = append(errs, fmt.Errorf("SANDO_MONITORING_READONLY=%q: want 1, true, 0 or false", v))
	}
	switch v := getenv("SANDO_SUPERSEDE"); v {
	case "":
	case "1", "true":
		c.NoSupersede = false
	case "0", "false":
		c.NoSupersede = true
	default:
		errs = append(errs, fmt.Errorf("SANDO_SUPERSEDE=%q: want 1, true, 0 or false", v))
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}

	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.StringVar(&c.RedisURL, "redis-url", c.RedisURL, "Redis URL (REDIS_URL); empty: embedded in-memory Redis")
	fs.StringVar(&c.Addr, "addr", c.Addr, "API listen address (SANDO_ADDR, PORT)")
	fs.StringVar(&c.WorkerAddr, "worker-addr", c.WorkerAddr, "worker's /metrics and /healthz address (SANDO_WORKER_ADDR); empty: off")
	fs.StringVar(&c.PipelinePath, "config", c.PipelinePath, "pipeline file or directory of them (SANDO_CONFIG)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "worktrees, logs, staged artifacts (SANDO_DATA_DIR)")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "phases one worker runs at once (SANDO_CONCURRENCY)")
	fs.DurationVar(&c.PollInterval, "poll-interval", c.PollInterval, "idle worker's queue poll interval (SANDO_POLL_INTERVAL)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "time running phases get on SIGTERM (SANDO_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&c.BuildUser, "build-user", c.BuildUser, "user name or uid phase commands run as (SANDO_BUILD_USER); empty: the worker's")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (SANDO_LOG_LEVEL)")
	fs.BoolVar(&c.MonitoringReadOnly, "monitoring-readonly", c.MonitoringReadOnly, "Asynqmon at /monitoring/ without destructive actions (SANDO_MONITORING_READONLY)")
	fs.BoolFunc("supersede", "a new /rebuild aborts older building runs: true or false (SANDO_SUPERSEDE; default true)", func(v string) error {
		b, err := strconv.ParseBool(v)
		c.NoSupersede = !b
		return err
	})
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (settings are flags or environment variables)", fs.Arg(0))
	}
	return c, c.validate()
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
