// Package logging makes the process's slog logger: text for a person at a
// terminal, JSON for a log collector everywhere else.
package logging

import (
	"log/slog"
	"os"

	"github.com/mattn/go-isatty"
)

// New returns a logger at level ("debug", "info", "warn", "error") on f.
func New(level string, f *os.File) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // validated by config; unknown stays info
	opts := &slog.HandlerOptions{Level: lv}
	if isatty.IsTerminal(f.Fd()) {
		return slog.New(slog.NewTextHandler(f, opts))
	}
	return slog.New(slog.NewJSONHandler(f, opts))
}
