package redistest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// StartSentinel runs a Redis Sentinel on a free loopback port that
// monitors master under name (quorum 1), and stops it when the test ends.
// REDIS_URL for it is redis-sentinel://<Addr>?master=<name>.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	host, port, err := net.SplitHostPort(master.Addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{dir: t.TempDir()}
	var lastErr error
	for range 5 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		// Sentinel rewrites its configuration file: it must be its own.
		conf := filepath.Join(s.dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 5000\n",
			p, s.dir, name, host, port, name)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		s.args = []string{conf, "--sentinel"}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("start redis sentinel: %v", lastErr)
	return nil
}
