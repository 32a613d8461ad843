package app

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"sando/config"
	"sando/internal/redistest"
	"sando/runstore"
)

// The store keeps the webhook outbox exactly when the pipeline file lists
// webhooks: a terminal write then records the run, and without webhooks it
// writes nothing more than before.
func TestStoreKeepsOutboxOnlyWithWebhooks(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		yaml string
		want int64
	}{
		"webhooks":    {"webhooks:\n  - http://127.0.0.1:1/hook\n", 1},
		"no webhooks": {"", 0},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "sando.yaml")
			require.NoError(t, os.WriteFile(path, []byte("repo: https://example.com/app.git\nbuild: make\n"+tc.yaml), 0o644))
			m := redistest.Mini(t)
			p, err := assemble(config.Config{PipelinePath: path, DataDir: t.TempDir()}, "redis://"+m.Addr())
			require.NoError(t, err)
			defer p.close()
			ctx := context.Background()
			c, err := p.store.Create(ctx, runstore.CreateRequest{})
			require.NoError(t, err)
			won, err := p.store.Fail(ctx, c.ID, "x")
			require.NoError(t, err)
			require.True(t, won)
			n, err := p.conn.Client.ZCard(ctx, p.store.Keys().Outbox()).Result()
			require.NoError(t, err)
			require.Equal(t, tc.want, n)
		})
	}
}
