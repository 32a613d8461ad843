// Command api serves Sando's HTTP API. Without REDIS_URL it also runs an
// embedded Redis and an in-process worker: the zero-setup default.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"sando/app"
	"sando/config"
	"sando/logging"
)

func main() {
	cfg, err := config.Load("sando-api", os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sando-api: config:", err)
		os.Exit(2)
	}
	log := logging.New(cfg.LogLevel, os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := app.API(ctx, cfg, log, nil); err != nil {
		log.Error("sando-api stopped", "err", err)
		os.Exit(1)
	}
}
