package proc

import "syscall"

// sysProcAttr puts the child in its own process group and asks the kernel
// to SIGKILL it when the worker dies, even of a SIGKILL that runs none of
// the worker's code (PR_SET_PDEATHSIG).
//
// Limits, both from the kernel:
//   - Only the child itself (the group leader, usually sh) gets the
//     signal. What it started in the background, or was running in the
//     foreground, is re-parented and keeps running: after a kill -9 of the
//     worker nothing is left to kill the rest of the group until the next
//     worker on the host starts and calls KillOrphans. Run workers where
//     the platform reaps it at once (a container whose PID 1 is the
//     worker, or systemd's default KillMode=control-group).
//   - The signal is tied to the thread that forked the child, not the
//     process (golang/go#27505): it also fires if that thread exits. The
//     Go runtime ends a thread only when a goroutine that called
//     runtime.LockOSThread returns without unlocking it, which nothing in
//     a worker does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
