package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Set is the pipelines one deployment serves, by name. It never changes
// once made: a reload makes a new Set (see Registry).
type Set struct {
	byName map[string]*Pipeline
	names  []string // sorted
}

// NewSet makes a Set of pipelines already validated (or built by hand, as
// tests do). Names must be unique and there must be at least one.
func NewSet(pipelines ...*Pipeline) (*Set, error) {
	if len(pipelines) == 0 {
		return nil, errors.New("pipeline: a set needs at least one pipeline")
	}
	s := &Set{byName: make(map[string]*Pipeline, len(pipelines))}
	for _, p := range pipelines {
		if _, dup := s.byName[p.Name]; dup {
			return nil, fmt.Errorf("pipeline: %q is in the set twice", p.Name)
		}
		s.byName[p.Name] = p
		s.names = append(s.names, p.Name)
	}
	slices.Sort(s.names)
	return s, nil
}

// LoadSet loads the pipelines at path: a pipeline file (one pipeline,
// named "default" unless it has name:) or a directory. In a directory
// every *.yaml and *.yml file is one pipeline, named by its name: or else
// by its base name without the extension; dotfiles, other files and
// subdirectories are passed over (symlinks are followed, as in a
// Kubernetes ConfigMap mount). Every bad file is reported, sorted by path:
// the error is an *Error, or an errors.Join of several.
func LoadSet(path string) (*Set, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, ioError(path, err)
	}
	if !st.IsDir() {
		p, err := Load(path)
		if err != nil {
			return nil, err
		}
		return NewSet(p)
	}
	return loadDir(path)
}

func loadDir(dir string) (*Set, error) {
	entries, err := os.ReadDir(dir) // sorted by name, so errors come sorted by path
	if err != nil {
		return nil, ioError(dir, err)
	}
	var (
		errs      []error
		pipelines []*Pipeline
		fileOf    = map[string]string{} // pipeline name → the first file with it
	)
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		path := filepath.Join(dir, name)
		st, err := os.Stat(path)
		switch {
		case err != nil:
			errs = append(errs, ioError(path, err))
			continue
		case st.IsDir():
			continue
		case !st.Mode().IsRegular():
			// A FIFO would block the read.
			errs = append(errs, &Error{File: path, Problem: "not a regular file"})
			continue
		}
		p, err := load(path, strings.TrimSuffix(name, ext))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, dup := fileOf[p.Name]; dup {
			errs = append(errs, &Error{File: path, Field: "name",
				Problem: fmt.Sprintf("%q is also the name of the pipeline in %s", p.Name, other)})
			continue
		}
		fileOf[p.Name] = path
		pipelines = append(pipelines, p)
	}
	switch {
	case len(errs) == 1:
		return nil, errs[0]
	case len(errs) > 1:
		return nil, errors.Join(errs...)
	case len(pipelines) == 0:
		return nil, &Error{File: dir, Problem: "holds no pipeline files (*.yaml, *.yml)"}
	}
	return NewSet(pipelines...)
}

// Names returns the pipelines' names, sorted.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Get returns the pipeline named name and whether there is one.
func (s *Set) Get(name string) (*Pipeline, bool) {
	p, ok := s.byName[name]
	return p, ok
}

// Len is the number of pipelines.
func (s *Set) Len() int { return len(s.names) }

// Only returns the pipeline when the set holds exactly one: the one that
// POST /rebuild, GET /runs and GET /state act on without a name.
func (s *Set) Only() (*Pipeline, bool) {
	if len(s.names) != 1 {
		return nil, false
	}
	return s.byName[s.names[0]], true
}

// Registry holds the Set in force and swaps it whole on Reload, so a
// reader sees either the old set or the new one, never a mix.
type Registry struct {
	path string
	mu   sync.Mutex // one Reload at a time: the set stored last was read last
	cur  atomic.Pointer[Set]
}

// NewRegistry loads the set at path (see LoadSet).
func NewRegistry(path string) (*Registry, error) {
	s, err := LoadSet(path)
	if err != nil {
		return nil, err
	}
	r := &Registry{path: path}
	r.cur.Store(s)
	return r, nil
}

// Path is what the registry loads from.
func (r *Registry) Path() string { return r.path }

// Current is the set in force. Hold on to it for the length of one request
// so every look-up in it agrees.
func (r *Registry) Current() *Set { return r.cur.Load() }

// Reload loads the set again from the same path and puts it in force. On
// error the current set stays and the error (as from LoadSet) is returned,
// for the caller to log.
func (r *Registry) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := LoadSet(r.path)
	if err != nil {
		return err
	}
	r.cur.Store(s)
	return nil
}
