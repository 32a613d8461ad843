package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if openAPIReport() != 0 && code == 0 { // every exchange matched httpapi/openapi.json
		code = 1
	}
	builds.Range(func(_, v any) bool { // remove the binaries buildCmd made
		if bin, err := v.(func() (string, error))(); err == nil {
			_ = os.RemoveAll(filepath.Dir(bin))
		}
		return true
	})
	os.Exit(code)
}
