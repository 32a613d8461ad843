package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"sando/pipeline"
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

// TestProcfileCommandsBuild keeps the Procfile runnable: it names the api
// and worker processes, and each `go run <pkg>` command's package builds.
func TestProcfileCommandsBuild(t *testing.T) {
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

	out := t.TempDir()
	for _, e := range entries {
		fields := strings.Fields(e.command)
		require.True(t, len(fields) >= 3 && fields[0] == "go" && fields[1] == "run" &&
			!strings.HasPrefix(fields[2], "-"),
			"%s:%d: process %q: command %q is not of the form `go run <pkg> [args]`; "+
				"this test only knows how to check that form", path, e.line, e.name, e.command)
		pkg := fields[2]
		cmd := exec.Command("go", "build", "-o", filepath.Join(out, e.name), pkg)
		cmd.Dir = root
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s:%d: process %q: go build %s: %s", path, e.line, e.name, pkg, b)
	}
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
