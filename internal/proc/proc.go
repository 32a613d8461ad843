// Package proc runs a phase's child process the way a build runner must:
// in its own process group, with a timeout, its combined output in a log
// file, and the whole group killed on timeout, cancel, supersede or
// shutdown — including grandchildren a build script left in the background.
package proc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"
)

// Spec is one child process.
type Spec struct {
	Args    []string // argv; never interpreted by a shell unless Args[0] is one
	Dir     string
	Env     []string
	Output  io.Writer     // stdout and stderr, combined (an *os.File avoids a copy goroutine)
	Timeout time.Duration // 0: no timeout beyond ctx
	// Grace is how long the group has between SIGTERM and SIGKILL
	// (default 2s).
	Grace time.Duration
	// User, when set, is whom the child runs as (user, primary group and,
	// when this process is root, its supplementary groups); nil: as this
	// process. Dir must be reachable by that user. Env is used as given:
	// its HOME is the caller's to set.
	User *User
}

// Result is how the child ended.
type Result struct {
	ExitCode int  // -1 when killed by a signal
	TimedOut bool // Timeout passed; the group was killed
	Canceled bool // ctx ended first; the group was killed
	Duration time.Duration
}

// OK reports a clean exit 0.
func (r Result) OK() bool { return r.ExitCode == 0 && !r.TimedOut && !r.Canceled }

// Describe says how a failed child ended, for a failure summary.
func (r Result) Describe(timeout time.Duration) string {
	switch {
	case r.TimedOut:
		return fmt.Sprintf("timed out after %s", timeout)
	case r.Canceled:
		return "canceled"
	case r.ExitCode < 0:
		return "killed by a signal"
	default:
		return fmt.Sprintf("exit status %d", r.ExitCode)
	}
}

// Run starts the child and waits for it. The error is only for a child
// that could not be started; how it ended is in Result.
func Run(ctx context.Context, s Spec) (Result, error) {
	if len(s.Args) == 0 {
		return Result{}, errors.New("proc: empty argv")
	}
	runCtx := ctx
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(runCtx, s.Args[0], s.Args[1:]...)
	cmd.Dir = s.Dir
	cmd.Env = s.Env
	markOwner(cmd) // on Linux: KillOrphans finds what outlives this worker
	cmd.Stdout = s.Output
	cmd.Stderr = s.Output
	cmd.SysProcAttr = sysProcAttr() // own group; on Linux, dies with the worker
	if s.User != nil {
		// The kernel clears a parent-death signal when credentials change;
		// Go's fork sets it after the switch, so it holds for these too.
		cmd.SysProcAttr.Credential = s.User.credential()
	}
	// On cancel, ask the whole group to stop; exec kills the leader after
	// WaitDelay, and killGroup below takes care of the rest.
	cmd.Cancel = func() error { return signalGroup(cmd, syscall.SIGTERM) }
	cmd.WaitDelay = cmp.Or(s.Grace, 2*time.Second)

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("start %s: %w", s.Args[0], err)
	}
	waitErr := cmd.Wait()
	// The leader is gone; anything it left in its group goes with it, so no
	// background job of a build outlives its phase.
	_ = signalGroup(cmd, syscall.SIGKILL)

	res := Result{Duration: time.Since(start), ExitCode: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		res.Canceled = true
	} else if runCtx.Err() != nil {
		res.TimedOut = true
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) && !errors.Is(waitErr, exec.ErrWaitDelay) && !res.Canceled && !res.TimedOut {
		return res, fmt.Errorf("wait %s: %w", s.Args[0], waitErr)
	}
	return res, nil
}

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.Process == nil {
		return nil
	}
	// The child called setpgid(0, 0), so its pid is its group id.
	err := syscall.Kill(-cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
