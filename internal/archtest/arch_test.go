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
	require.Contains(t, transitive(t, "sando.dev/sando/tasks"), "sando.dev/sando/runstore")
	rules := []struct {
		pkg     string
		forbids []string // import path prefixes never in pkg's dependencies
		why     string
	}{
		{"sando.dev/sando/internal/vocab", []string{"sando.dev/sando/", "github.com/"}, "the domain imports only the standard library"},
		{"sando.dev/sando/internal/failure", []string{"sando.dev/sando/", "github.com/"}, "a pure function of the output"},
		{"sando.dev/sando/internal/gitref", []string{"sando.dev/sando/", "github.com/"}, "a pure validator"},
		{"sando.dev/sando/runstore", []string{"github.com/gin-gonic/", "github.com/hibiken/asynq", "sando.dev/sando/internal/httpapi", "sando.dev/sando/tasks"}, "the store knows Redis, not HTTP or queues"},
		{"sando.dev/sando/tasks", []string{"github.com/gin-gonic/", "sando.dev/sando/internal/httpapi", "sando.dev/sando/internal/app"}, "the worker side never imports the HTTP layer"},
		{"sando.dev/sando/internal/worker", []string{"github.com/gin-gonic/", "sando.dev/sando/internal/httpapi"}, "the worker side never imports the HTTP layer"},
		{"sando.dev/sando/internal/httpapi", []string{"sando.dev/sando/tasks", "sando.dev/sando/internal/proc", "sando.dev/sando/internal/gitfetch", "sando.dev/sando/internal/projversion", "sando.dev/sando/internal/worker"}, "the API enqueues and reads; it never builds"},
		{"sando.dev/sando/internal/lifecycle", []string{"github.com/gin-gonic/", "sando.dev/sando/internal/httpapi", "sando.dev/sando/tasks", "sando.dev/sando/internal/proc", "sando.dev/sando/internal/gitfetch"}, "a run's life is shared by the API and the worker, and builds nothing"},
		{"sando.dev/sando/internal/pages", []string{"github.com/gin-gonic/", "github.com/redis/", "sando.dev/sando/internal/httpapi", "sando.dev/sando/runstore", "sando.dev/sando/internal/logstore"}, "pages render typed views; httpapi reads what they show"},
		{"sando.dev/sando/internal/steps", []string{"github.com/gin-gonic/", "sando.dev/sando/runstore", "sando.dev/sando/internal/httpapi", "sando.dev/sando/tasks"}, "the step table is a description: task types, queues, timeouts"},
		{"sando.dev/sando/internal/proc", []string{"sando.dev/sando/", "github.com/"}, "process groups need nothing of Sando"},
		{"sando.dev/sando/internal/logstore", []string{"sando.dev/sando/", "github.com/gin-gonic/", "github.com/hibiken/"}, "step logs in Redis know Redis only"},
		{"sando.dev/sando/client", []string{"sando.dev/sando/"}, "the API client stands alone for CI users"},
		{"sando.dev/sando/cmd/sandoctl", []string{"sando.dev/sando/internal/httpapi", "sando.dev/sando/runstore", "sando.dev/sando/tasks", "sando.dev/sando/internal/app"}, "the CLI talks HTTP only"},
		{"sando.dev/sando/cmd/api", []string{"sando.dev/sando/cmd/"}, "commands never import each other"},
		{"sando.dev/sando/cmd/worker", []string{"sando.dev/sando/cmd/", "github.com/gin-gonic/", "github.com/hibiken/asynqmon", "github.com/alicebob/miniredis", "sando.dev/sando/internal/httpapi", "sando.dev/sando/internal/monitoring", "sando.dev/sando/internal/app/api"}, "a worker binary links only what it runs: no HTTP API, Asynqmon or embedded Redis"},
		{"sando.dev/sando/internal/app", []string{"github.com/gin-gonic/", "github.com/hibiken/asynqmon", "github.com/alicebob/miniredis", "sando.dev/sando/internal/httpapi", "sando.dev/sando/internal/monitoring", "sando.dev/sando/internal/app/api"}, "the shared assembly and the worker's; the API's is app/api"},
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
