// Package redistest starts throwaway Redis servers for tests: a real
// redis-server on a free loopback port (so runs never share state with the
// machine's Redis or with each other), or an in-process miniredis.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Server is a redis-server child process owned by a test.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
	args []string
	// password, when set, is required of clients (StartAuth); conf is the
	// file that says so, the first argument.
	password, conf string

	mu sync.Mutex
}

// Binary is the redis-server to run; REDIS_SERVER overrides the PATH lookup.
func Binary() string {
	if b := os.Getenv("REDIS_SERVER"); b != "" {
		return b
	}
	return "redis-server"
}

// Start runs a fresh redis-server on a free loopback port and stops it when
// the test ends. extra arguments are appended to the command line (for
// example "--appendonly", "yes"). Without redis-server the test fails: the
// suite promises a real Redis, so a silent skip would hide a broken CI.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	return startWith(t, func() ([]string, error) { return extra, nil })
}

// startWith is Start with the extra arguments made afresh for each try
// (a cluster node needs a second free port).
func startWith(t testing.TB, extra func() ([]string, error)) *Server {
	t.Helper()
	s, err := launch(&Server{dir: t.TempDir()}, extra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Launch is Start for a program with no testing.TB (the benchmarks): the
// server keeps its files in dir, and the caller stops it.
func Launch(dir string, extra ...string) (*Server, error) {
	return launch(&Server{dir: dir}, func() ([]string, error) { return extra, nil })
}

// StartAuth is Start for a server that requires password of its clients
// (requirepass); URL and Client carry it. The password is written in a
// config file the server reads, never on its command line, which every
// user of the host can read in /proc/<pid>/cmdline.
func StartAuth(t testing.TB, password string, extra ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("requirepass %q\n", password)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := launch(&Server{dir: dir, password: password, conf: conf}, func() ([]string, error) { return extra, nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// launch starts s, whose dir (and password) are set.
func launch(s *Server, extra func() ([]string, error)) (*Server, error) {
	if _, err := exec.LookPath(Binary()); err != nil {
		return nil, fmt.Errorf("redis-server not found (install it, or set REDIS_SERVER): %w", err)
	}
	var lastErr error
	for range 5 { // a free port can be taken between probe and bind
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		more, err := extra()
		if err != nil {
			return nil, err
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.args = append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", s.dir,
			"--maxmemory-policy", "noeviction", // asynq's keys must never be evicted
		}, more...)
		if s.conf != "" {
			s.args = append([]string{s.conf}, s.args...) // a config file comes first
		}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

// Port is the server's loopback port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// PID is the server's process id, 0 once stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.CommandContext(context.Background(), Binary(), s.args...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ping(s.Addr, s.password) == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return fmt.Errorf("redis-server on %s did not answer PING", s.Addr)
}

// Stop kills the server; it is safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused one too
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart stops the server and starts it again on the same port and dir.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
}

// StartPersistent is Start with an append-only file fsynced on every
// write, so a Restart (even after a kill -9) keeps everything Redis
// acknowledged.
func StartPersistent(t testing.TB, extra ...string) *Server {
	t.Helper()
	return Start(t, append([]string{"--appendonly", "yes", "--appendfsync", "always"}, extra...)...)
}

// Pause stops the server process (SIGSTOP): connections stay open and
// nothing answers, as with a hung or partitioned Redis. Resume undoes it.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("redis-server on %s is not running", s.Addr)
	}
	return s.cmd.Process.Signal(sig)
}

// URL is the server's redis:// URL, with its password if it has one.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr}
	if s.password != "" {
		u.User = url.UserPassword("", s.password)
	}
	return u.String()
}

// Client returns a go-redis client closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.password})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Mini starts an in-process miniredis with TTLs counting down, as Sando's
// embedded default runs it.
func Mini(t testing.TB) *miniredis.Miniredis {
	t.Helper()
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// FreePort is a loopback port free at the time of asking, for a server a
// test or the bench is about to start.
func FreePort() (int, error) {
	l, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping speaks RESP directly so a half-started server is not mistaken for a
// ready one (a loading server answers -LOADING), after an AUTH when the
// server has a password.
func ping(addr, password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	r := bufio.NewReader(c)
	// call sends one command and wants a reply starting with want.
	call := func(want string, args ...string) error {
		req := fmt.Sprintf("*%d\r\n", len(args))
		for _, a := range args {
			req += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := c.Write([]byte(req)); err != nil {
			return err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, want) {
			return fmt.Errorf("%s answered %q", args[0], strings.TrimSpace(line))
		}
		return nil
	}
	if password != "" {
		if err := call("+OK", "AUTH", password); err != nil {
			return err
		}
	}
	return call("+PONG", "PING")
}
