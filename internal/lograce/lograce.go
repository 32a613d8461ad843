// Package lograce races what serves logs, for tests: a hostile build keeps
// swapping the name of one log, atomically, between a file a check would
// pass and a way out to a secret outside the logs root, while the test
// reads the log; no read may return the secret.
package lograce

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sando.dev/sando/internal/datadir"
)

// Read reads a log_ref the way the code under test serves it: its bytes
// and true, or false for a refusal (a 404). Anything else fails t.
type Read func(t *testing.T, ref string) (body []byte, found bool)

// Bounds of one race: this many reads and swaps at least, unless it has
// taken this long. Renames over a name on ext4 can take milliseconds.
const (
	reads    = 3000
	swapsMin = 500
	duration = 3 * time.Second
)

var (
	secret = []byte("root:x:0:0:the secret outside the logs root\n")
	own    = []byte("compiling\ndone\n")
)

// Check runs each race on its own log under l (the secret goes in l.Root,
// outside the logs root) and fails t if a read returns anything but the
// log's own bytes, or anything at all where the log is never the build's:
//   - a hard link to the secret, then a symlink to it, each renamed over
//     the name: the link shares the secret's inode (and each rename drops
//     it, so the secret's link count goes 2, 1, 2), the symlink leaves the
//     root;
//   - a file of the build's own and a symlink to the secret, the two names
//     exchanged (renameat2 RENAME_EXCHANGE, one call, no file written, so
//     the race is tight): a check of the name sees the file, an open after
//     it may follow the symlink.
func Check(t *testing.T, l datadir.Layout, read Read) {
	t.Helper()
	outside := filepath.Join(l.Root, "secret.txt")
	if err := os.WriteFile(outside, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	link := func(p string) error { return os.Link(outside, p) }
	symlink := func(p string) error { return os.Symlink(outside, p) }
	ownFile := func(p string) error { return os.WriteFile(p, own, 0o644) }
	for i, tc := range []struct {
		name  string
		want  []byte // what a found read returns; nil: nothing is found
		setup func(name string) (swap func() error, err error)
	}{
		{"hard link or symlink to the secret, renamed over", nil, renamedOver(link, symlink)},
		{"own file or symlink to the secret, exchanged", own, exchanged(ownFile, symlink)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: a swapper short of a CPU swaps too rarely.
			race(t, l.LogDir(int64(17+i)), datadir.LogRef(int64(17+i), "race"), tc.want, tc.setup, read)
		})
	}
}

// renamedOver puts each state in turn at the name: made at a temporary
// name, then renamed over it.
func renamedOver(states ...func(string) error) func(string) (func() error, error) {
	return func(name string) (func() error, error) {
		i := 0
		swap := func() error {
			tmp := name + ".tmp"
			if err := states[i%len(states)](tmp); err != nil {
				return err
			}
			i++
			return os.Rename(tmp, name)
		}
		return swap, swap()
	}
}

// exchanged makes a at the name and b beside it, then exchanges the two.
func exchanged(a, b func(string) error) func(string) (func() error, error) {
	return func(name string) (func() error, error) {
		alt := name + ".alt"
		swap := func() error { return exchange(name, alt) }
		return swap, errors.Join(a(name), b(alt))
	}
}

func race(t *testing.T, dir, ref string, want []byte, setup func(string) (func() error, error), read Read) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	swap, err := setup(filepath.Join(dir, filepath.Base(ref)))
	if err != nil {
		t.Fatal(err)
	}
	switch err := swap(); {
	case errors.Is(err, errors.ErrUnsupported):
		t.Skip("no atomic exchange of two names here")
	case err != nil:
		t.Fatal(err)
	}

	var swaps atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := swap(); err != nil {
				t.Errorf("swap: %v", err)
				return
			}
			swaps.Add(1)
		}
	})

	var n, found, leaked, other int
	start := swaps.Load()
	for deadline := time.Now().Add(duration); (n < reads || swaps.Load()-start < swapsMin) && time.Now().Before(deadline); n++ {
		body, ok := read(t, ref)
		switch {
		case !ok:
		case bytes.Contains(body, secret):
			leaked++
		case want == nil || !bytes.Equal(body, want):
			other++
		default:
			found++
		}
	}
	swapped := swaps.Load() - start
	close(stop)
	wg.Wait()

	t.Logf("%d reads during %d swaps: %d found, %d refused, %d the secret, %d other", n, swapped, found, n-found-leaked-other, leaked, other)
	if leaked > 0 {
		t.Errorf("%d of %d reads returned the secret outside the logs root", leaked, n)
	}
	if other > 0 {
		t.Errorf("%d of %d reads returned something else than the log's own bytes (want %q)", other, n, want)
	}
	if swapped < 2 {
		t.Errorf("only %d swaps during the reads: the race did not run", swapped)
	}
}
