// Command worker runs Sando's phases from the shared Redis. Run any number
// of them, on any number of hosts.
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
	cfg, err := config.Load("sando-worker", os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sando-worker: config:", err)
		os.Exit(2)
	}
	log := logging.New(cfg.LogLevel, os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := app.Worker(ctx, cfg, log); err != nil {
		log.Error("sando-worker stopped", "err", err)
		os.Exit(1)
	}
}
