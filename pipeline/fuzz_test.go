package pipeline

import (
	"errors"
	"testing"
)

// FuzzParse guards the decoder-error mapping: whatever the input, Parse must
// return either a pipeline or an *Error, never panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"repo: x\nbuild: b\n",
		"repo: x\nbuild: b\ngates:\n  - {kind: a, run: b, timeout: 5m}\n  -\n",
		"a: &x [1]\nrepo: *x\n",
		"name: [\n",
		"repo: x\nbuild: b\n---\nx: 1\n",
		"env: {A: [1]}\n",
		"timeouts: {fetch: 10}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data, "/base")
		var pe *Error
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("error is %T, not *Error: %v", err, err)
		}
		if err == nil && (p.Build == "" || p.Repo == "") {
			t.Fatalf("accepted pipeline without build or repo: %+v", p)
		}
	})
}
