package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const body = "repo: /srv/app\nbuild: make\n"

// writeFiles writes name → content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	}
}

func TestLoadSetDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"app.yaml":         body,
		"lib.yml":          "name: library\n" + body,
		"web.prod.yaml":    body,
		".hidden.yaml":     "not: [valid\n",
		"README.md":        "# not a pipeline\n",
		"notes.txt":        "x",
		"sub/nested.yaml":  body,
		"dir.yaml/x.yaml":  body,
		"app.yaml.bak":     "x",
		"local/repo/.keep": "",
	})
	writeFiles(t, dir, map[string]string{"rel.yaml": "repo: ./local/repo\nbuild: make\n"})
	require.NoError(t, os.Symlink(filepath.Join(dir, "app.yaml"), filepath.Join(dir, "linked.yaml")))

	s, err := LoadSet(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"app", "library", "linked", "rel", "web.prod"}, s.Names())
	require.Equal(t, 5, s.Len())
	p, ok := s.Get("library")
	require.True(t, ok)
	require.Equal(t, "library", p.Name)
	p, ok = s.Get("rel")
	require.True(t, ok)
	require.Equal(t, filepath.Join(dir, "local", "repo"), p.Repo, "relative to the file's directory")
	_, ok = s.Get("lib")
	require.False(t, ok, "name: wins over the base name")
	_, ok = s.Only()
	require.False(t, ok)

	names := s.Names()
	names[0] = "changed"
	require.Equal(t, "app", s.Names()[0], "Names returns a copy")
}

func TestLoadSetFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Odd Name.yaml": body, "named.yaml": "name: app\n" + body})

	s, err := LoadSet(filepath.Join(dir, "Odd Name.yaml"))
	require.NoError(t, err)
	require.Equal(t, []string{"default"}, s.Names(), "a lone file keeps the name default")
	p, ok := s.Only()
	require.True(t, ok)
	require.Equal(t, "default", p.Name)

	s, err = LoadSet(filepath.Join(dir, "named.yaml"))
	require.NoError(t, err)
	require.Equal(t, []string{"app"}, s.Names())
}

func TestLoadSetErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc  string
		files map[string]string
		want  []string // one line per bad file, %s the directory
	}{
		{"empty directory", nil, []string{"%s: holds no pipeline files (*.yaml, *.yml)"}},
		{"only other files", map[string]string{"a.json": "{}", ".x.yaml": body}, []string{"%s: holds no pipeline files (*.yaml, *.yml)"}},
		{"base name not a name", map[string]string{"My App.yaml": body}, []string{
			`%s/My App.yaml: name: absent, and the file name "My App" does not match [a-z0-9][a-z0-9_.-]{0,62}; add name: or rename the file`}},
		{"bad name: is not about the file name", map[string]string{"app.yaml": "name: A\n" + body}, []string{
			`%s/app.yaml: name: "A" must match [a-z0-9][a-z0-9_.-]{0,62}`}},
		{"two files one name", map[string]string{"a.yaml": "name: app\n" + body, "app.yml": body}, []string{
			`%s/app.yml: name: "app" is also the name of the pipeline in %s/a.yaml`}},
		{"same base name, two extensions", map[string]string{"app.yaml": body, "app.yml": body, "b.yaml": body}, []string{
			`%s/app.yml: name: "app" is also the name of the pipeline in %s/app.yaml`}},
		{"every bad file, sorted by path", map[string]string{
			"c.yaml": "repo: x\n", "a.yaml": "build: make\n", "b.yaml": body, "d.yaml": "name: b\n" + body,
		}, []string{
			"%s/a.yaml: repo: required",
			"%s/c.yaml: build: required",
			`%s/d.yaml: name: "b" is also the name of the pipeline in %s/b.yaml`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			s, err := LoadSet(dir)
			require.Nil(t, s)
			var want []string
			for _, w := range tt.want {
				want = append(want, strings.ReplaceAll(w, "%s", dir))
			}
			require.EqualError(t, err, strings.Join(want, "\n"))

			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			require.Len(t, errs, len(want))
			for _, e := range errs {
				var pe *Error
				require.ErrorAs(t, e, &pe)
				require.NotEmpty(t, pe.File)
			}
		})
	}
}

func TestLoadSetUnreadable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := LoadSet(filepath.Join(dir, "nope"))
	require.EqualError(t, err, filepath.Join(dir, "nope")+": no such file or directory")
	require.ErrorIs(t, err, os.ErrNotExist)

	require.NoError(t, os.Symlink(filepath.Join(dir, "gone.yaml"), filepath.Join(dir, "dangling.yaml")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o600))
	writeFiles(t, dir, map[string]string{"ok.yaml": body})
	_, err = LoadSet(dir)
	require.EqualError(t, err, dir+"/dangling.yaml: no such file or directory\n"+dir+"/fifo.yaml: not a regular file")
	var pe *Error
	require.ErrorAs(t, err, &pe)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestNewSet(t *testing.T) {
	t.Parallel()
	s, err := NewSet(&Pipeline{Name: "b"}, &Pipeline{Name: "a"})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, s.Names())
	_, err = NewSet(&Pipeline{Name: "a"}, &Pipeline{Name: "a"})
	require.EqualError(t, err, `pipeline: "a" is in the set twice`)
	_, err = NewSet()
	require.EqualError(t, err, "pipeline: a set needs at least one pipeline")
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"app.yaml": body})

	_, err := NewRegistry(filepath.Join(dir, "nope"))
	require.Error(t, err)

	r, err := NewRegistry(dir)
	require.NoError(t, err)
	require.Equal(t, dir, r.Path())
	first := r.Current()
	require.Equal(t, []string{"app"}, first.Names())

	writeFiles(t, dir, map[string]string{"lib.yaml": body})
	require.NoError(t, r.Reload())
	require.Equal(t, []string{"app", "lib"}, r.Current().Names())
	require.Equal(t, []string{"app"}, first.Names(), "a set already handed out never changes")

	writeFiles(t, dir, map[string]string{"lib.yaml": "repo: x\n"})
	err = r.Reload()
	require.EqualError(t, err, dir+"/lib.yaml: build: required")
	var pe *Error
	require.True(t, errors.As(err, &pe))
	require.Equal(t, []string{"app", "lib"}, r.Current().Names(), "a bad reload keeps the set in force")

	// Readers and reloaders at once, for the race detector (assert, not
	// require, off the test's goroutine).
	writeFiles(t, dir, map[string]string{"lib.yaml": body})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				assert.NoError(t, r.Reload())
			}
		})
		wg.Go(func() {
			for range 200 {
				_, ok := r.Current().Get("app")
				assert.True(t, ok)
			}
		})
	}
	wg.Wait()
}
