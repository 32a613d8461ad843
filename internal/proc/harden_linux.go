package proc

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Harden makes this process non-dumpable (prctl PR_SET_DUMPABLE 0). Its
// /proc/<pid> files (environ, mem, maps, fd/, auxv, …) then belong to root,
// and a process of the same uid can neither read them nor ptrace it. A
// worker calls it first: its environment holds REDIS_URL, the tokens and
// the webhook secret, and its builds may run as its own uid.
//
// Limits, from the kernel: root (any process with CAP_SYS_PTRACE) still
// reads everything, so a worker running as root needs SANDO_BUILD_USER as
// well; /proc/<pid>/cmdline stays readable by every user, so no secret
// belongs in a flag; and the process writes no core dump and takes no
// debugger but root's.
func Harden() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("proc: prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}
