package pipeline

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzParse guards the decoder-error mapping: whatever the input, Parse must
// return either a pipeline or an *Error, never panic. A pipeline it accepts
// must survive its snapshot unchanged, so a run builds what was accepted.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"repo: x\nbuild: b\n",
		"repo: x\nbuild: b\ngates:\n  - {kind: a, run: b, timeout: 5m}\n  -\n",
		"a: &x [1]\nrepo: *x\n",
		"name: [\n",
		"repo: x\nbuild: b\n---\nx: 1\n",
		"env: {A: [1]}\n",
		"timeouts: {fetch: 10}\n",
		"repo: x\nbuild: b\ngates:\n  - {kind: a, run: b, needs: [c]}\n  - {kind: c, run: d, needs: []}\n",
		"repo: x\nbuild: b\nreuse: tree\ngates:\n  - {kind: a, run: b, report: 'out/*.xml'}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data, "/base")
		var pe *Error
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("error is %T, not *Error: %v", err, err)
		}
		if err != nil {
			return
		}
		if p.Build == "" || p.Repo == "" {
			t.Fatalf("accepted pipeline without build or repo: %+v", p)
		}
		b, err := Marshal(p)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("unmarshal of an accepted pipeline: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(p, got) {
			t.Fatalf("snapshot changed the pipeline:\n%+v\n%+v", p, got)
		}
	})
}
