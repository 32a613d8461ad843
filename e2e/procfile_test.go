package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/redistest"
)

// procfileEntry is one "name: command" line of the repository's Procfile.
type procfileEntry struct {
	line    int
	name    string
	command string
}

// procfileName is what honcho and foreman accept as a process name.
var procfileName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// readProcfile parses path the way Procfile runners do: blank lines and
// lines starting with '#' are skipped, every other line is "name: command".
func readProcfile(t *testing.T, path string) []procfileEntry {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var entries []procfileEntry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ":")
		name, cmd = strings.TrimSpace(name), strings.TrimSpace(cmd)
		require.True(t, ok && procfileName.MatchString(name) && cmd != "",
			"%s:%d: want \"name: command\", got %q", path, n, line)
		entries = append(entries, procfileEntry{line: n, name: name, command: cmd})
	}
	require.NoError(t, sc.Err())
	return entries
}

// TestProcfileRuns runs the Procfile the way a Procfile runner does
// (honcho start -c worker=2): each command under sh -c from the repository
// root, in its own process group, with PORT set and REDIS_URL pointing at
// a real redis-server. A run must pass through those processes, and
// SIGTERM must stop each of them cleanly.
func TestProcfileRuns(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	path := filepath.Join(root, "Procfile")
	entries := readProcfile(t, path)
	seen := map[string]bool{}
	for _, e := range entries {
		require.False(t, seen[e.name], "%s:%d: process %q defined twice", path, e.line, e.name)
		seen[e.name] = true
	}
	for _, want := range []string{"api", "worker"} {
		require.True(t, seen[want], "%s: no %q process", path, want)
	}

	redis := redistest.Start(t)
	proj := newProject(t, map[string]string{"VERSION": "3.1.4\n"})
	cfgPath := filepath.Join(t.TempDir(), "sando.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("repo: "+proj.dir+"\nbuild: echo built\ngates:\n  - kind: unit\n    run: echo ok\n"), 0o644))
	dataDir := t.TempDir()
	port := freePort(t)

	var procs []*exec.Cmd
	for _, e := range entries {
		copies := 1
		if e.name == "worker" {
			copies = 2
		}
		for range copies {
			cmd := exec.CommandContext(context.Background(), "sh", "-c", e.command)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "REDIS_URL="+redis.URL(), "SANDO_CONFIG="+cfgPath,
				"SANDO_DATA_DIR="+dataDir, "PORT="+port, "SANDO_POLL_INTERVAL=10ms", "SANDO_SHUTDOWN_TIMEOUT=2s")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
			require.NoError(t, cmd.Start(), "%s:%d: %s", path, e.line, e.command)
			procs = append(procs, cmd)
			t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
		}
	}

	s := &stack{t: t, base: "http://127.0.0.1:" + port}
	require.Eventually(t, func() bool {
		resp, err := http.Get(s.base + "/readyz") // go run compiles first
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 2*time.Minute, 100*time.Millisecond, "the Procfile's api never answered on PORT")
	m := s.waitTerminal(s.rebuild(""))
	require.Equal(t, "passed", m["result"], "view: %v", m)
	require.Equal(t, "3.1.4", m["version"])

	// A runner stops its processes with SIGTERM to each group.
	for _, cmd := range procs {
		require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM))
	}
	for _, cmd := range procs {
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%q did not stop within 20s of SIGTERM", strings.Join(cmd.Args, " "))
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	port, err := redistest.FreePort()
	require.NoError(t, err)
	return strconv.Itoa(port)
}

// TestDeployPipelineLoads keeps the docker-compose demo's pipeline file
// valid as the pipeline schema evolves.
func TestDeployPipelineLoads(t *testing.T) {
	t.Parallel()
	p, err := pipeline.Load(filepath.Join("..", "deploy", "sando.yaml"))
	require.NoError(t, err)
	require.Equal(t, "/src", p.Repo, "the compose file mounts the repository at /src")
	require.NotEmpty(t, p.Gates)
}
