package datadir

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// FuzzOpenLog: whatever a client sends as a log_ref, OpenLog never panics,
// and anything it opens is a regular file of one link found in the logs
// root (symlinks not followed), never the secret: nothing escapes, not by
// "..", an absolute path, a backslash, a NUL, a symlink (to a file or a
// directory) outside the root or a hard link to a file outside.
func FuzzOpenLog(f *testing.F) {
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
	must(os.Link(secret, filepath.Join(l.LogsRoot(), "17", "hard.log")))               // the secret's inode
	must(syscall.Mkfifo(filepath.Join(l.LogsRoot(), "17", "fifo.log"), 0o644))         // no writer
	secretSt, err := os.Stat(secret)
	must(err)
	var inside []os.FileInfo // the regular files in the root, links not followed
	must(filepath.WalkDir(l.LogsRoot(), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			st, err := d.Info()
			inside = append(inside, st)
			return err
		}
		return err
	}))

	for _, seed := range []string{
		"17/compile.log", "17/gate-unit.log", "17/in.log", "17/out.log", "17/rel.log", "up/secret.log",
		"../secret.log", "17/../../secret.log", "/etc/passwd", "17/./compile.log", "17//compile.log",
		"17", "17/sub", "17/missing.log", "a\x00b", `17\compile.log`, "", ".", "..", "%2e%2e/secret.log",
		"17/compile.log/", "17/compile.log/..", "up/data/logs/17/compile.log", "17/hard.log", "17/fifo.log",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		lf, err := l.OpenLog(ref)
		if err != nil {
			if !errors.Is(err, ErrBadRef) {
				t.Fatalf("OpenLog(%q): error %v, want ErrBadRef", ref, err)
			}
			return
		}
		defer lf.Close()
		st, err := lf.Stat()
		if err != nil || !st.Mode().IsRegular() || st.Sys().(*syscall.Stat_t).Nlink != 1 {
			t.Fatalf("OpenLog(%q) = %q: not a regular file of one link (%v)", ref, lf.Name(), err)
		}
		if os.SameFile(st, secretSt) {
			t.Fatalf("OpenLog(%q) = %q: the secret outside the root", ref, lf.Name())
		}
		in := false
		for _, fi := range inside {
			in = in || os.SameFile(st, fi)
		}
		if !in {
			t.Fatalf("OpenLog(%q) = %q: not a file in the logs root", ref, lf.Name())
		}
		if b, _ := io.ReadAll(lf); string(b) == "secret" {
			t.Fatalf("OpenLog(%q) = %q: the secret's bytes", ref, lf.Name())
		}
	})
}
