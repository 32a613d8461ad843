// Package pipeline loads and validates sando.yaml, the file describing how a
// project is fetched, built, staged and gated: one file (Load), or a
// directory of them as a Set of named pipelines (LoadSet, Registry). A
// validated Pipeline travels with a run as a JSON snapshot (Marshal,
// Unmarshal) and is compared between runs by its Hash.
package pipeline

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// maxFileSize keeps a stray huge file (or alias bomb source) from being
// slurped; real pipeline files are a few hundred bytes.
const maxFileSize = 1 << 20

// Gate is one check run after staging. A gate starts once every gate it
// needs has passed; gates ready at once may run at the same time.
type Gate struct {
	Kind    string
	Run     string
	Timeout time.Duration
	// Needs are the kinds of the gates that must pass before this one
	// starts, as the file lists them; nil means none (it starts right after
	// staging). A file's gate without needs: needs the gate before it, and
	// validation writes that kind here, so nil is only ever "needs: []" or
	// the first gate. Pipelines built by hand must fill it the same way.
	Needs []string
	// Report is the JUnit XML file (a path or glob relative to the
	// worktree) the gate writes, or "".
	Report string
}

// Timeouts bound the fixed phases.
type Timeouts struct {
	Fetch, Compile, Stage time.Duration
}

// Pipeline is a validated pipeline file with defaults filled in. Once
// loaded it is shared (by a Set, by every run that snapshots it): treat it,
// and the slices and maps in it, as read-only.
type Pipeline struct {
	Name, Repo, Branch, VersionFile, Build, Stage, Tier string
	Gates                                               []Gate
	Timeouts                                            Timeouts
	Env                                                 map[string]string
	// Webhooks are POSTed the run view when a run reaches a terminal
	// result, signed with SANDO_WEBHOOK_SECRET.
	Webhooks []string
	// Reuse is ReuseTree or "" (off): see Hash.
	Reuse string
}

// ReuseTree is the one value of reuse:. A rebuild of a commit whose git
// tree and pipeline definition (Hash) equal a passed run's settles passed
// without building.
const ReuseTree = "tree"

// Gate returns the gate at index i and whether it exists.
func (p *Pipeline) Gate(i int) (Gate, bool) {
	if i < 0 || i >= len(p.Gates) {
		return Gate{}, false
	}
	return p.Gates[i], true
}

// Error is returned for every problem with a pipeline file, so callers can
// point users at the exact field.
type Error struct {
	File    string
	Field   string // YAML path such as "gates[1].timeout"; "" when not tied to one field
	Line    int    // 1-based; 0 when the decoder did not report a position
	Problem string
	Err     error // underlying decoder or I/O error, if any
}

func (e *Error) Error() string {
	s := e.File + ": "
	if e.Field != "" {
		s += e.Field + ": "
	}
	s += e.Problem
	if e.Line > 0 {
		s += fmt.Sprintf(" (line %d)", e.Line)
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads and validates the pipeline file at path. Relative local repo
// paths are resolved against the file's directory, not the working directory,
// so the file means the same thing wherever sando is started from.
func Load(path string) (*Pipeline, error) { return load(path, "") }

// load is Load for a file whose pipeline, when nameless, is named stem (""
// for "default").
func load(path, stem string) (*Pipeline, error) {
	data, err := readCapped(path)
	if err != nil {
		return nil, ioError(path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &Error{File: path, Problem: err.Error(), Err: err}
	}
	return parse(path, data, origin{baseDir: filepath.Dir(abs), stem: stem})
}

// ioError is an *Error for a file that could not be read.
func ioError(path string, err error) *Error {
	e := &Error{File: path, Problem: err.Error(), Err: err}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		e.Problem = pe.Err.Error() // the path is already in File
	}
	return e
}

func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, errors.New("larger than 1 MiB")
	}
	return data, nil
}

// Parse validates YAML bytes. name is only used in error messages; baseDir
// anchors relative local repo paths (left relative when baseDir is "").
func Parse(name string, data []byte, baseDir string) (*Pipeline, error) {
	return parse(name, data, origin{baseDir: baseDir})
}

func parse(name string, data []byte, o origin) (*Pipeline, error) {
	raw, err := decode(name, data)
	if err != nil {
		return nil, err
	}
	p, field, problem := raw.validate(o)
	if problem != "" {
		return nil, &Error{File: name, Field: field, Problem: problem}
	}
	return p, nil
}
