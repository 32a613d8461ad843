package datadir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzResolve: whatever a client sends as a log_ref, Resolve never panics,
// and anything it accepts is a regular file under the logs root after
// every symlink is followed: nothing escapes, not by "..", an absolute
// path, a backslash, a NUL or a symlink (to a file or a directory)
// outside the root.
func FuzzResolve(f *testing.F) {
	root := f.TempDir()
	l := Layout{Root: filepath.Join(root, "data")}
	for _, step := range []string{"compile", "gate-unit"} {
		lf, err := l.Create(17, step)
		if err != nil {
			f.Fatal(err)
		}
		_ = lf.Close()
	}
	secret := filepath.Join(root, "secret.log")
	must := func(err error) {
		if err != nil {
			f.Fatal(err)
		}
	}
	must(os.WriteFile(secret, []byte("secret"), 0o600))
	must(os.MkdirAll(filepath.Join(l.LogsRoot(), "17", "sub"), 0o755))
	must(os.Symlink(secret, filepath.Join(l.LogsRoot(), "17", "out.log")))             // a file outside
	must(os.Symlink(root, filepath.Join(l.LogsRoot(), "up")))                          // a directory outside
	must(os.Symlink("compile.log", filepath.Join(l.LogsRoot(), "17", "in.log")))       // inside: fine
	must(os.Symlink("../../secret.log", filepath.Join(l.LogsRoot(), "17", "rel.log"))) // relative, outside
	realRoot, err := filepath.EvalSymlinks(l.LogsRoot())
	must(err)

	for _, seed := range []string{
		"17/compile.log", "17/gate-unit.log", "17/in.log", "17/out.log", "17/rel.log", "up/secret.log",
		"../secret.log", "17/../../secret.log", "/etc/passwd", "17/./compile.log", "17//compile.log",
		"17", "17/sub", "17/missing.log", "a\x00b", `17\compile.log`, "", ".", "..", "%2e%2e/secret.log",
		"17/compile.log/", "17/compile.log/..", "up/data/logs/17/compile.log",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		p, err := l.Resolve(ref)
		if err != nil {
			if err != ErrBadRef {
				t.Fatalf("Resolve(%q): error %v, want ErrBadRef", ref, err)
			}
			return
		}
		rel, err := filepath.Rel(realRoot, p)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
			t.Fatalf("Resolve(%q) = %q: outside the logs root %q", ref, p, realRoot)
		}
		if real, err := filepath.EvalSymlinks(p); err != nil || real != p {
			t.Fatalf("Resolve(%q) = %q: not a resolved path (%q, %v)", ref, p, real, err)
		}
		st, err := os.Lstat(p)
		if err != nil || !st.Mode().IsRegular() {
			t.Fatalf("Resolve(%q) = %q: not a regular file (%v)", ref, p, err)
		}
		if b, _ := os.ReadFile(p); string(b) == "secret" {
			t.Fatalf("Resolve(%q) = %q: the secret outside the root", ref, p)
		}
	})
}
