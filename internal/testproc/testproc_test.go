package testproc

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func sh(script string) *exec.Cmd {
	return exec.CommandContext(context.Background(), "sh", "-c", script)
}

// Ready at the line named, with its address; SIGTERM is the child's to
// handle, and its exit is reported.
func TestStartReadyThenStop(t *testing.T) {
	t.Parallel()
	var log Buffer
	p, err := Start(sh(`trap 'echo bye >&2; exit 3' TERM
echo 'not json' >&2
echo '{"msg":"starting"}' >&2
echo '{"msg":"api listening","addr":"127.0.0.1:1234"}' >&2
while :; do sleep 0.05; done`), Options{Name: "fake", Log: &log, Ready: Msg("api listening")})
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:1234", p.Addr)
	require.Positive(t, p.PID())
	require.Contains(t, log.String(), "not json\n{\"msg\":\"starting\"}\n", "every line is logged, in order")
	exited, _ := p.WaitExit(50 * time.Millisecond)
	require.False(t, exited)

	p.Stop(10 * time.Second)
	exited, err = p.WaitExit(0)
	require.True(t, exited)
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 3, ee.ExitCode(), "it exited through its SIGTERM handler")
	require.Contains(t, log.String(), "bye\n", "the log is read to the end")
}

func TestStartExitBeforeReady(t *testing.T) {
	t.Parallel()
	_, err := Start(sh(`echo '{"msg":"config error"}' >&2; exit 2`), Options{Name: "fake", Ready: Msg("api listening")})
	require.ErrorContains(t, err, "fake exited before it was ready: exit status 2")
}

func TestStartNotReadyIsKilled(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	_, err := Start(sh(`echo $$ > `+pidFile+`; exec sleep 30`), Options{Name: "slow", Ready: Msg("never"), Timeout: 200 * time.Millisecond})
	require.ErrorContains(t, err, "slow not ready within 200ms")
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	require.NoFileExists(t, "/proc/"+string(bytes.TrimSpace(b)), "the process is gone (and reaped)")
}

func TestKill(t *testing.T) {
	t.Parallel()
	p, err := Start(sh(`trap '' TERM; echo '{"msg":"worker started"}' >&2; exec sleep 30`), Options{Name: "w", Ready: Msg("api listening", "worker started")})
	require.NoError(t, err)
	require.Empty(t, p.Addr)
	require.True(t, p.Kill(10*time.Second))
	select {
	case <-p.Done():
	default:
		t.Fatal("Done is not closed after Kill")
	}
	require.Error(t, p.Err(), "killed: not a clean exit")
}

// Build compiles a command of the module to where it says.
func TestBuild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bins, err := Build(context.Background(), dir, "cmd/sandoctl")
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Join(dir, "sandoctl")}, bins)
	out, err := exec.CommandContext(context.Background(), bins[0], "--help").CombinedOutput()
	require.NotEmpty(t, out, "it runs: %v", err)

	_, err = Build(context.Background(), dir, "cmd/nonesuch")
	require.ErrorContains(t, err, "go build [cmd/nonesuch]")
}
