//go:build !linux

package proc

import (
	"log/slog"
	"os/exec"
)

// OwnerEnv is the variable that names, on Linux, the worker that started
// a child through Run. Elsewhere nothing sets it.
const OwnerEnv = "SANDO_PROC_OWNER"

// markOwner does nothing outside Linux: nothing there could find the
// marked processes.
func markOwner(*exec.Cmd) {}

// SetScope does nothing outside Linux.
func SetScope(string) {}

// KillOrphans does nothing outside Linux, which has no /proc to scan.
func KillOrphans(*slog.Logger, string) (killed int, err error) { return 0, nil }
