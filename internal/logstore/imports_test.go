package logstore_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// logstore imports the standard library and go-redis only: no HTTP, no
// Gin, nothing of Sando, so both the worker and the API can use it.
func TestImportsOnlyStdlibAndRedis(t *testing.T) {
	t.Parallel()
	out, err := exec.CommandContext(context.Background(), "go", "list", "-f", `{{join .Imports "\n"}}`, "sando.dev/sando/internal/logstore").Output()
	require.NoError(t, err)
	for _, imp := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(imp, "/")
		stdlib := !strings.Contains(first, ".") && first != "sando"
		require.True(t, (stdlib && !strings.HasPrefix(imp, "net/http")) || imp == "github.com/redis/go-redis/v9",
			"logstore imports %s", imp)
	}
}
