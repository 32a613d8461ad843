package tasks

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"sando.dev/sando/internal/failure"
	"sando.dev/sando/internal/vocab"
)

// maxReport is the largest JUnit report read (a bigger one is left out):
// a report is parsed whole, and a gate must not make the worker read an
// unbounded file into memory.
const maxReport = 16 << 20

// gateReport reads the JUnit XML reports a gate wrote in worktree: every
// file that pattern (a path or glob relative to the worktree, checked by
// pipeline) matches. Their counts are summed and the first failure is the
// first of the first file (in name order) with one. It reports nil when no
// file matched or none was a report. Files are opened through an os.Root,
// so a symlink the build left cannot make the worker read outside the
// worktree. Files that cannot be read or are not JUnit XML are left out,
// each named in skipped.
func gateReport(worktree, pattern string) (rep *failure.Report, skipped []error, err error) {
	root, err := os.OpenRoot(worktree)
	if err != nil {
		return nil, nil, err
	}
	defer root.Close()
	fsys := root.FS()
	names, err := fs.Glob(fsys, path.Clean(pattern))
	if err != nil {
		return nil, nil, err
	}
	for _, name := range names {
		r, err := readReport(fsys, name)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if rep == nil {
			rep = &failure.Report{}
		}
		rep.Tests = rep.Add(r.Tests)
		if rep.First == "" {
			rep.First = r.First
		}
	}
	return rep, skipped, nil
}

func readReport(fsys fs.FS, name string) (failure.Report, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return failure.Report{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return failure.Report{}, err
	case !st.Mode().IsRegular():
		return failure.Report{}, errors.New("not a regular file")
	case st.Size() > maxReport:
		return failure.Report{}, fmt.Errorf("larger than %d MiB", maxReport>>20)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxReport+1))
	if err != nil {
		return failure.Report{}, err
	}
	if len(data) > maxReport {
		return failure.Report{}, fmt.Errorf("larger than %d MiB", maxReport>>20)
	}
	return failure.ParseJUnit(data)
}

// testsOf is a report's counts for the run view, nil without a report.
func testsOf(rep *failure.Report) *vocab.Tests {
	if rep == nil {
		return nil
	}
	return &vocab.Tests{Passed: rep.Passed, Failed: rep.Failed, Skipped: rep.Skipped}
}
