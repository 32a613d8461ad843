package datadir_test

import (
	"errors"
	"io"
	"testing"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/lograce"
)

// A build swapping its log between a way out of the logs root and a file
// a check would pass never makes OpenLog open the secret outside.
func TestOpenLogRace(t *testing.T) {
	t.Parallel()
	l := datadir.Layout{Root: t.TempDir()}
	lograce.Check(t, l, func(t *testing.T, ref string) ([]byte, bool) {
		f, err := l.OpenLog(ref)
		if err != nil {
			if !errors.Is(err, datadir.ErrBadRef) {
				t.Errorf("OpenLog(%q): %v, want ErrBadRef", ref, err)
			}
			return nil, false
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			t.Errorf("read %q: %v", ref, err)
		}
		return b, true
	})
}
