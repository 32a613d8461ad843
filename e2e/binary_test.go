package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/testproc"
)

var builds sync.Map // package → func() (string, error), built once per test binary

// buildCmd compiles one of Sando's commands for a black-box test.
func buildCmd(t *testing.T, pkg string) string {
	t.Helper()
	build, _ := builds.LoadOrStore(pkg, sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "sando-e2e-bin") //nolint:usetesting // built once for every test of the binary, so it must outlive the first
		if err != nil {
			return "", err
		}
		bins, err := testproc.Build(context.Background(), dir, pkg)
		if err != nil {
			return "", err
		}
		return bins[0], nil
	}))
	bin, err := build.(func() (string, error))()
	require.NoError(t, err)
	return bin
}

// The zero-setup default: the real binary, no REDIS_URL, one process.
func TestEmbeddedDefaultBinary(t *testing.T) {
	t.Parallel()
	bin := buildCmd(t, "cmd/api")
	proj := newProject(t, map[string]string{"VERSION": "2.0.0\n"})
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sando.yaml"), []byte("repo: "+proj.dir+`
build: echo compiling; echo done
gates:
  - kind: unit
    run: echo ok
`), 0o644))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = dir // ./sando.yaml and ./data are the defaults
	cmd.Env = append(os.Environ(), "REDIS_URL=", "SANDO_ADDR=127.0.0.1:0")
	logs := &testproc.Buffer{}
	p, err := testproc.Start(cmd, testproc.Options{Name: "sando-api", Log: logs, Ready: testproc.Msg("api listening")})
	require.NoError(t, err, "logs:\n%s", logs)
	t.Cleanup(func() { p.Kill(10 * time.Second) })
	addr := p.Addr
	require.NotEmpty(t, addr, "api never said where it listens")

	firstLine, _, _ := strings.Cut(logs.String(), "\n")
	require.NotEmpty(t, firstLine, "no log output")
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(firstLine), &first), "first line: %s", firstLine)
	require.Contains(t, first["msg"], "embedded in-memory Redis", "the first log line says it runs embedded")

	s := &stack{t: t, base: "http://" + addr}
	id := s.rebuild("")
	m := s.waitTerminal(id)
	require.Equal(t, "passed", m["result"], "view: %v", m)
	require.Equal(t, "2.0.0", m["version"])
	require.Equal(t, proj.git("rev-parse", "HEAD"), m["sha"])
	require.Equal(t, "compiling\ndone\n", string(s.get("/logs/1/compile.log").body))
	require.FileExists(t, filepath.Join(dir, "data", "logs", "1", "compile.log"), "SANDO_DATA_DIR defaults to ./data")

	// SIGTERM: drains and exits 0.
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	exited, err := p.WaitExit(20 * time.Second)
	require.True(t, exited, "api did not exit within 20s of SIGTERM")
	require.NoError(t, err)
}

// A bad pipeline file stops the process at start-up, naming the file, the
// field and the problem, with a non-zero exit.
func TestConfigErrorAtStartup(t *testing.T) {
	t.Parallel()
	bin := buildCmd(t, "cmd/api")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sando.yaml"), []byte("repo: /tmp/x\nbuild: make\ngates:\n  - kind: unit\n    run: make test\n    timeout: ten minutes\n"), 0o644))
	cmd := exec.CommandContext(context.Background(), bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "REDIS_URL=", "SANDO_ADDR=127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.NotZero(t, ee.ExitCode())
	require.Contains(t, string(out), "sando-api: config: ./sando.yaml: gates[0].timeout: \"ten minutes\" is not a duration (e.g. 10m, 90s)\n")
	require.Equal(t, 2, ee.ExitCode())

	cmd = exec.CommandContext(context.Background(), bin)
	cmd.Env = append(os.Environ(), "SANDO_CONCURRENCY=lots")
	out, err = cmd.CombinedOutput()
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 2, ee.ExitCode())
	require.True(t, strings.Contains(string(out), `SANDO_CONCURRENCY="lots": want a whole number from 1 to 1024`), "%s", out)
}
