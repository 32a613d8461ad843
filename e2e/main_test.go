package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	builds.Range(func(_, v any) bool { // remove the binaries buildCmd made
		if bin, err := v.(func() (string, error))(); err == nil {
			_ = os.RemoveAll(filepath.Dir(bin))
		}
		return true
	})
	os.Exit(code)
}
