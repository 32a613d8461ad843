package config

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func load(env map[string]string, args ...string) (Config, error) {
	return Load("sando-api", args, func(k string) string { return env[k] }, io.Discard)
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := load(nil)
	require.NoError(t, err)
	require.Equal(t, Config{
		Addr: "127.0.0.1:8080", PipelinePath: "./sando.yaml", DataDir: "./data", Concurrency: runtime.NumCPU(),
		PollInterval: 10 * time.Millisecond, ShutdownTimeout: 10 * time.Second, LogLevel: "info",
		Retention: 30 * 24 * time.Hour, RetentionRuns: 1000,
	}, c)
	require.True(t, c.Embedded())
}

func TestEnvAndFlags(t *testing.T) {
	t.Parallel()
	c, err := load(map[string]string{
		"REDIS_URL": "redis://r:6379", "PORT": "9000", "SANDO_CONCURRENCY": "3",
		"SANDO_RETENTION": "7d", "SANDO_POLL_INTERVAL": "25ms", "SANDO_MONITORING_READONLY": "true",
	}, "-concurrency", "5")
	require.NoError(t, err)
	require.Equal(t, ":9000", c.Addr, "PORT is honoured when SANDO_ADDR is unset")
	require.Equal(t, 5, c.Concurrency, "flags override the environment")
	require.Equal(t, 7*24*time.Hour, c.Retention)
	require.Equal(t, 25*time.Millisecond, c.PollInterval)
	require.True(t, c.MonitoringReadOnly)
	require.False(t, c.Embedded())

	c, err = load(map[string]string{"SANDO_BUILD_USER": "root"}, "-build-user", "0")
	require.NoError(t, err)
	require.Equal(t, "0", c.BuildUser, "a uid is a build user too; the flag wins")

	c, err = load(map[string]string{"SANDO_ADDR": "127.0.0.1:1", "PORT": "9000"})
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:1", c.Addr, "SANDO_ADDR wins over PORT")
}

// Each bad setting is reported with the variable, the value and what
// would be valid: the exact line a user sees after "sando-api: config: ".
func TestBadSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{env: map[string]string{"SANDO_CONCURRENCY": "lots"}, want: `SANDO_CONCURRENCY="lots": want a whole number from 1 to 1024`},
		{env: map[string]string{"SANDO_CONCURRENCY": "0"}, want: `SANDO_CONCURRENCY=0: want a whole number from 1 to 1024`},
		{env: map[string]string{"SANDO_POLL_INTERVAL": "fast"}, want: `SANDO_POLL_INTERVAL="fast": want a duration such as 10ms or 30s`},
		{env: map[string]string{"SANDO_POLL_INTERVAL": "0s"}, want: `SANDO_POLL_INTERVAL=0s: want a duration from 1ms to 1m`},
		{env: map[string]string{"SANDO_SHUTDOWN_TIMEOUT": "-1s"}, want: `SANDO_SHUTDOWN_TIMEOUT=-1s: must not be negative`},
		{env: map[string]string{"SANDO_LOG_LEVEL": "loud"}, want: `SANDO_LOG_LEVEL="loud": want debug, info, warn or error`},
		{env: map[string]string{"SANDO_RETENTION": "a month"}, want: `SANDO_RETENTION="a month": want a duration such as 30d, 72h or 0 (keep forever)`},
		{env: map[string]string{"SANDO_RETENTION_RUNS": "-5"}, want: `SANDO_RETENTION_RUNS="-5": want a whole number, 0 or more`},
		{env: map[string]string{"SANDO_MONITORING_READONLY": "maybe"}, want: `SANDO_MONITORING_READONLY="maybe": want 1, true, 0 or false`},
		{args: []string{"extra"}, want: `unexpected argument "extra" (settings are flags or environment variables)`},
		{args: []string{"-addr", ""}, want: `SANDO_ADDR: must not be empty (e.g. :8080)`},
		{env: map[string]string{"SANDO_BUILD_USER": "no-such-user-here"}, want: `SANDO_BUILD_USER="no-such-user-here": no user by that name or uid on this host`},
		{args: []string{"-build-user", "4000000000"}, want: `SANDO_BUILD_USER="4000000000": no user by that name or uid on this host`},
	}
	for _, tt := range tests {
		_, err := load(tt.env, tt.args...)
		require.Error(t, err, "%v %v", tt.env, tt.args)
		require.Equal(t, tt.want, err.Error())
	}
}

func TestExposed(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": false, "[::1]:8080": false, "localhost:8080": false,
		":8080": true, "0.0.0.0:8080": true, "10.1.2.3:80": true, "sando.internal:80": true,
	} {
		require.Equal(t, want, Config{Addr: addr}.Exposed(), addr)
		require.False(t, Config{Addr: addr, Token: "t"}.Exposed(), "with a token: %s", addr)
	}
	c, err := Load("sando-api", nil, func(k string) string { return map[string]string{"PORT": "5000"}[k] }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, ":5000", c.Addr, "a platform's PORT means every interface")
	require.True(t, c.Exposed())
}

// Every setting is a flag too; the secrets only as -…-file flags (and
// <VAR>_FILE variables), since a flag's value is on /proc/<pid>/cmdline
// for every local user to read.
func TestEverySettingIsAFlagSecretsOnlyAsFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	c, err := load(map[string]string{"SANDO_READ_TOKEN_FILE": secret("read", "r3ad\n")},
		"-retention", "2d", "-retention-runs", "7", "-token-file", secret("tok", "t0k\r\n"),
		"-webhook-secret-file", secret("hook", "h00k"), "-redis-url", "redis://r:6379",
		"-redis-password-file", secret("pw", "p4ss\n"), "-supersede=false", "-monitoring-readonly")
	require.NoError(t, err)
	require.Equal(t, 48*time.Hour, c.Retention)
	require.Equal(t, 7, c.RetentionRuns)
	require.Equal(t, "t0k", c.Token, "the file's trailing newline is not the token's")
	require.Equal(t, "r3ad", c.ReadToken)
	require.Equal(t, "h00k", c.WebhookSecret)
	require.Equal(t, "p4ss", c.RedisPassword)
	require.True(t, c.NoSupersede)
	require.True(t, c.MonitoringReadOnly)

	c, err = load(map[string]string{"SANDO_TOKEN": "env-token"}, "-token-file", secret("tok2", "file-token"))
	require.NoError(t, err)
	require.Equal(t, "file-token", c.Token, "the flag wins")

	for _, secretFlag := range []string{"-token", "-read-token", "-webhook-secret", "-redis-password"} {
		_, err := load(nil, secretFlag, "on-the-command-line")
		require.ErrorContains(t, err, "flag provided but not defined", "%s takes no value on the command line", secretFlag)
	}
	_, err = load(map[string]string{"SANDO_TOKEN": "a", "SANDO_TOKEN_FILE": secret("t3", "b")})
	require.EqualError(t, err, "SANDO_TOKEN and SANDO_TOKEN_FILE are both set: give one")
	_, err = load(map[string]string{"SANDO_TOKEN_FILE": secret("empty", "\n")})
	require.ErrorContains(t, err, "the file is empty")
	_, err = load(nil, "-token-file", filepath.Join(dir, "missing"))
	require.ErrorContains(t, err, "no such file")
	_, err = load(map[string]string{"REDIS_PASSWORD_FILE": secret("pw2", "x")})
	require.EqualError(t, err, "REDIS_PASSWORD_FILE: a Redis password needs REDIS_URL (the embedded Redis has none)")
	_, err = load(nil, "-retention", "soon")
	require.ErrorContains(t, err, `invalid value "soon" for flag -retention: want a duration such as 30d, 72h or 0 (keep forever)`)
}
