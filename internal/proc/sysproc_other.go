//go:build !linux

package proc

import "syscall"

// sysProcAttr puts the child in its own process group. Outside Linux
// there is no parent-death signal: a worker killed with SIGKILL leaves its
// child running.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
