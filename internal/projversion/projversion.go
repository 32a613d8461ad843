// Package projversion reads the built project's version from its checked-out worktree so
// staged artifacts can be labelled with something humans recognise.
package projversion

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"sando.dev/sando/internal/gitref"
)

const (
	// The worktree is untrusted input: bound what a hostile repo can make us
	// read or echo into labels and logs.
	maxFileSize   = 1 << 20
	maxVersionLen = 128
	shortSHALen   = 7
)

// autoFiles are tried in order when no file is named: manifests first since
// they are what the build itself uses.
var autoFiles = []string{"Cargo.toml", "package.json", "VERSION"}

// noVersionError marks a file that exists but declares no version; Read
// without an explicit file moves on to the next candidate instead of failing.
type noVersionError string

func (e noVersionError) Error() string { return string(e) }

// Read returns the project's version from file, relative to dir. The format
// is chosen by base name: Cargo.toml, package.json, or anything else read as
// a plain VERSION file (first non-empty line). With file == "" it tries
// Cargo.toml, package.json and VERSION and falls back to the first 7
// characters of sha when none yields a version. The path must stay inside
// dir: absolute or ".." paths are rejected, as are symlinks resolving outside
// dir (and, per os.Root, any symlink with an absolute target).
func Read(dir, file, sha string) (string, error) {
	// Opened once up front so a missing worktree is an error, not a
	// "no version file" that falls back to the sha.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", fmt.Errorf("worktree: %w", err)
	}
	defer root.Close()
	if file != "" {
		return readFile(root, file)
	}
	for _, f := range autoFiles {
		v, err := readFile(root, f)
		var nv noVersionError
		switch {
		case err == nil:
			return v, nil
		case errors.Is(err, fs.ErrNotExist), errors.As(err, &nv):
			continue
		}
		// A present but broken file is reported rather than skipped: silently
		// labelling the build with a sha would hide the breakage.
		return "", err
	}
	if err := gitref.CheckSHA(sha); err != nil {
		return "", fmt.Errorf("no version file in %s and no usable sha: %w", dir, err)
	}
	return sha[:shortSHALen], nil
}

func readFile(root *os.Root, file string) (string, error) {
	data, err := readInside(root, file)
	if err != nil {
		return "", fmt.Errorf("version file %q: %w", file, err)
	}
	var v string
	switch filepath.Base(file) {
	case "Cargo.toml":
		v, err = fromCargo(data)
	case "package.json":
		v, err = fromPackageJSON(data)
	default:
		v, err = fromPlain(data)
	}
	v = strings.TrimSpace(v)
	if err == nil {
		err = check(v)
	}
	if err != nil {
		return "", fmt.Errorf("version file %q: %w", file, err)
	}
	return v, nil
}

// readInside goes through os.Root so ".." and symlinks cannot reach outside
// the worktree, which a lexical check alone cannot guarantee.
func readInside(root *os.Root, file string) ([]byte, error) {
	if !filepath.IsLocal(file) {
		return nil, errors.New("must be a relative path inside the worktree")
	}
	// Stat before Open: opening a FIFO planted in the repo would block.
	fi, err := root.Stat(file)
	if err != nil {
		return nil, bare(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	f, err := root.Open(file)
	if err != nil {
		return nil, bare(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, bare(err)
	}
	if len(data) > maxFileSize {
		return nil, errors.New("larger than 1 MiB")
	}
	return data, nil
}

// bare drops the PathError wrapper, whose op and path would repeat what the
// caller's message already says, while keeping errors.Is(fs.ErrNotExist).
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func fromPlain(data []byte) (string, error) {
	s := strings.TrimPrefix(string(data), "\uFEFF") // editors on Windows add a BOM
	for line := range strings.Lines(s) {
		if v := strings.TrimSpace(line); v != "" {
			return v, nil
		}
	}
	return "", noVersionError("empty")
}

// check rejects values that would be unsafe or unreadable as a label.
func check(v string) error {
	switch {
	case v == "":
		return noVersionError("version is empty")
	case len(v) > maxVersionLen:
		return fmt.Errorf("version is longer than %d bytes", maxVersionLen)
	case !utf8.ValidString(v):
		return errors.New("version is not valid UTF-8")
	case strings.ContainsFunc(v, unicode.IsControl):
		return fmt.Errorf("version %q contains a control character", v)
	}
	return nil
}
