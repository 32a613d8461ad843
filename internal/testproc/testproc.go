// Package testproc builds Sando's commands and supervises them as child
// processes for the e2e suite and the bench: start one, wait until its
// JSON log says it is ready (and where it listens), then stop it with
// SIGTERM or kill it.
package testproc

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Module is the import path the packages given to Build are under.
const Module = "sando.dev/sando"

// Build compiles Sando's commands (paths under Module, e.g. "cmd/api")
// into dir with one plain go build, so the build cache is shared with the
// tests' and the commands link in parallel. It returns the binaries'
// paths in the order of pkgs.
func Build(ctx context.Context, dir string, pkgs ...string) ([]string, error) {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	bins := make([]string, len(pkgs))
	for i, p := range pkgs {
		args = append(args, Module+"/"+p)
		bins[i] = filepath.Join(dir, path.Base(p))
	}
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %v: %w\n%s", pkgs, err, out)
	}
	return bins, nil
}

// Ready reads one line of a process's log (slog JSON) and says whether
// the process is ready, and where it listens ("" for no address).
type Ready func(line map[string]any) (addr string, ok bool)

// Msg is ready at the log line whose msg is msg; the address is the
// line's "addr", if any ("api listening" and "worker started" are
// Sando's).
func Msg(msgs ...string) Ready {
	return func(m map[string]any) (string, bool) {
		for _, msg := range msgs {
			if m["msg"] == msg {
				addr, _ := m["addr"].(string)
				return addr, true
			}
		}
		return "", false
	}
}

// Options say how Start watches a process.
type Options struct {
	Name  string    // in errors, e.g. "sando-api"
	Log   io.Writer // every line of its stderr; nil: discarded
	Ready Ready
	// Timeout bounds the wait for Ready; 0: 30s. A process not ready by
	// then is killed.
	Timeout time.Duration
}

// Proc is one process Start started.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Addr string // from Ready

	done chan struct{} // closed once the process has exited
	err  error         // its Wait error, set before done closes
}

// Start starts cmd (made by the caller: its environment, directory,
// stdout) with its stderr read line by line into o.Log, and returns once
// a line satisfies o.Ready. A process that exits or is not ready first is
// an error (and is not left running).
func Start(cmd *exec.Cmd, o Options) (*Proc, error) {
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Name, err)
	}
	p := &Proc{Name: o.Name, Cmd: cmd, done: make(chan struct{})}
	readyc := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(stderr)
		lines.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for lines.Scan() {
			_, _ = log.Write(append(lines.Bytes(), '\n'))
			var m map[string]any
			if !signalled && json.Unmarshal(lines.Bytes(), &m) == nil {
				if addr, ok := o.Ready(m); ok {
					readyc <- addr
					signalled = true
				}
			}
		}
		_, _ = io.Copy(log, stderr) // the rest after a line too long to scan
		// Wait only once the pipe is drained: it closes the pipe.
		p.err = cmd.Wait()
		close(p.done)
	}()
	timeout := cmp.Or(o.Timeout, 30*time.Second)
	select {
	case p.Addr = <-readyc:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it was ready: %w", o.Name, cmp.Or(p.err, errors.New("exit status 0")))
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-p.done
		return nil, fmt.Errorf("%s not ready within %s", o.Name, timeout)
	}
}

// PID is the process id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Done is closed once the process has exited; Err is then its exit.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended (nil: exit status 0), once Done is closed.
func (p *Proc) Err() error { return p.err }

// WaitExit waits up to d for the process to end by itself (after a
// signal): exited is false if it still runs, else err is its exit.
func (p *Proc) WaitExit(d time.Duration) (exited bool, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		select { // both ready: the exit wins
		case <-p.done:
		default:
			return false, nil
		}
	}
	return true, p.err
}

// Kill sends SIGKILL and waits up to d for the exit; false if it did not
// come.
func (p *Proc) Kill(d time.Duration) bool {
	_ = p.Cmd.Process.Kill()
	exited, _ := p.WaitExit(d)
	return exited
}

// Stop sends SIGTERM and waits up to grace, then kills. Nil-safe, so a
// stack without one of its processes stops the same way.
func (p *Proc) Stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	if exited, _ := p.WaitExit(grace); !exited {
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Buffer is a log sink that the reading goroutines of several processes
// write to while a test reads it (String). The zero value is ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
