// Package testrepo makes the throwaway git repositories that the e2e
// suite and the bench point Sando's pipelines at: files written, then
// committed on branch main by a fixed identity, with the machine's git
// config left out so every machine builds the same history.
package testrepo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Repo is a git work tree in Dir.
type Repo struct {
	Dir string
}

// New makes dir (if needed), runs git init on branch main and commits
// files as "initial". It returns the repository and the commit's sha.
func New(dir string, files map[string]string) (Repo, string, error) {
	r := Repo{Dir: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, "", err
	}
	if _, err := r.Git("init", "-q", "-b", "main"); err != nil {
		return r, "", err
	}
	sha, err := r.Commit(files, "initial")
	return r, sha, err
}

// Git runs git in the repository and returns its trimmed output (stdout
// and stderr). Setting up a repository is quick and never canceled: no
// context to pass.
func (r Repo) Git(args ...string) (string, error) {
	cmd := exec.CommandContext(context.Background(), "git", append([]string{"-C", r.Dir, "-c", "user.email=t@example.com", "-c", "user.name=t"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %v: %w: %s", args, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Write writes files (path relative to the repository → content), making
// their directories; a name ending in .sh is executable.
func (r Repo) Write(files map[string]string) error {
	for name, body := range files {
		path := filepath.Join(r.Dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(path, []byte(body), mode); err != nil {
			return err
		}
	}
	return nil
}

// Commit writes files, then commits everything in the work tree (an
// empty commit when nothing changed) and returns the new sha.
func (r Repo) Commit(files map[string]string, msg string) (string, error) {
	if err := r.Write(files); err != nil {
		return "", err
	}
	if _, err := r.Git("add", "-A"); err != nil {
		return "", err
	}
	if _, err := r.Git("commit", "-q", "--allow-empty", "-m", msg); err != nil {
		return "", err
	}
	return r.Git("rev-parse", "HEAD")
}
