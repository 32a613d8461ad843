// Package archtest holds the import boundaries of Sando's packages,
// checked on every test run (what depguard would do, without a linter
// binary): the domain stays free of infrastructure, the worker side never
// reaches into the HTTP layer, and commands only wire.
package archtest

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestImportBoundaries(t *testing.T) {
	t.Parallel()
	// The listing works: a dependency that must be there is seen.
	require.Contains(t, transitive(t, "sando/tasks"), "sando/runstore")
	rules := []struct {
		pkg     string
		forbids []string // import path prefixes never in pkg's dependencies
		why     string
	}{
		{"sando/run", []string{"sando/", "github.com/"}, "the domain imports only the standard library"},
		{"sando/headline", []string{"sando/", "github.com/"}, "a pure function of the output"},
		{"sando/gitref", []string{"sando/", "github.com/"}, "a pure validator"},
		{"sando/runstore", []string{"github.com/gin-gonic/", "github.com/hibiken/asynq", "sando/httpapi", "sando/tasks"}, "the store knows Redis, not HTTP or queues"},
		{"sando/tasks", []string{"github.com/gin-gonic/", "sando/httpapi", "sando/app"}, "the worker side never imports the HTTP layer"},
		{"sando/worker", []string{"github.com/gin-gonic/", "sando/httpapi"}, "the worker side never imports the HTTP layer"},
		{"sando/httpapi", []string{"sando/tasks", "sando/proc", "sando/gitfetch", "sando/version", "sando/worker"}, "the API enqueues and reads; it never builds"},
		{"sando/lifecycle", []string{"github.com/gin-gonic/", "sando/httpapi", "sando/tasks", "sando/proc", "sando/gitfetch"}, "a run's life is shared by the API and the worker, and builds nothing"},
		{"sando/pages", []string{"github.com/gin-gonic/", "github.com/redis/", "sando/httpapi", "sando/runstore", "sando/logstore"}, "pages render typed views; httpapi reads what they show"},
		{"sando/steps", []string{"github.com/gin-gonic/", "sando/runstore", "sando/httpapi", "sando/tasks"}, "the step table is a description: task types, queues, timeouts"},
		{"sando/proc", []string{"sando/", "github.com/"}, "process groups need nothing of Sando"},
		{"sando/logstore", []string{"sando/", "github.com/gin-gonic/", "github.com/hibiken/"}, "step logs in Redis know Redis only"},
		{"sando/client", []string{"sando/"}, "the API client stands alone for CI users"},
		{"sando/cmd/sandoctl", []string{"sando/httpapi", "sando/runstore", "sando/tasks", "sando/app"}, "the CLI talks HTTP only"},
		{"sando/cmd/api", []string{"sando/cmd/"}, "commands never import each other"},
		{"sando/cmd/worker", []string{"sando/cmd/", "github.com/gin-gonic/", "github.com/hibiken/asynqmon", "github.com/alicebob/miniredis", "sando/httpapi", "sando/monitoring", "sando/app/api"}, "a worker binary links only what it runs: no HTTP API, Asynqmon or embedded Redis"},
		{"sando/app", []string{"github.com/gin-gonic/", "github.com/hibiken/asynqmon", "github.com/alicebob/miniredis", "sando/httpapi", "sando/monitoring", "sando/app/api"}, "the shared assembly and the worker's; the API's is app/api"},
	}
	for _, r := range rules {
		deps := transitive(t, r.pkg)
		for _, d := range deps {
			for _, f := range r.forbids {
				if strings.HasPrefix(d, f) && d != r.pkg {
					t.Errorf("%s imports %s: %s", r.pkg, d, r.why)
				}
			}
		}
	}
}

// transitive lists everything pkg imports, directly or not (tests excluded).
func transitive(t *testing.T, pkg string) []string {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), "go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	require.NoError(t, err)
	return strings.Fields(string(out))
}

// cmd/ only wires: each main package is small.
func TestCommandsOnlyWire(t *testing.T) {
	t.Parallel()
	for _, cmdPkg := range []string{"./cmd/api", "./cmd/worker"} {
		c := exec.CommandContext(context.Background(), "go", "list", "-f", "{{range .GoFiles}}{{$.Dir}}/{{.}} {{end}}", cmdPkg)
		c.Dir = "../.."
		out, err := c.Output()
		require.NoError(t, err)
		for _, f := range strings.Fields(string(out)) {
			wc, err := exec.CommandContext(context.Background(), "wc", "-l", f).Output()
			require.NoError(t, err)
			n := strings.Fields(string(wc))[0]
			require.LessOrEqual(t, len(n), 2, "%s has %s lines: wiring belongs in app/", f, n)
		}
	}
}
