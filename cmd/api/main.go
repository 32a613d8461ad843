// Command api serves Sando's HTTP API. Without REDIS_URL it also runs an
// embedded Redis and an in-process worker: the zero-setup default.
package main

import (
	"context"
	"log/slog"

	"sando.dev/sando/internal/app"
	"sando.dev/sando/internal/app/api"
	"sando.dev/sando/internal/config"
)

func main() {
	app.Main("sando-api", func(ctx context.Context, cfg config.Config, log *slog.Logger) error {
		return api.Run(ctx, cfg, log, nil)
	})
}
