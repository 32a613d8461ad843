package gitfetch

import (
	"bytes"
	"context"
	"net/http"
	"net/http/cgi" //nolint:gosec // git's own http-backend on the test's loopback server; httpoxy is fixed since Go 1.6.3
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSplitCredentials(t *testing.T) {
	t.Parallel()
	for repo, want := range map[string]string{
		"https://ci:s3cret@git.example.com/app.git": "https://git.example.com/app.git",
		"https://token@git.example.com/app.git":     "https://git.example.com/app.git",
		"https://git.example.com/app.git":           "",
		"git@git.example.com:app.git":               "",
		"/srv/git/app.git":                          "",
	} {
		bare, env := splitCredentials(repo)
		if want == "" {
			require.Equal(t, repo, bare)
			require.Nil(t, env, repo)
			continue
		}
		require.Equal(t, want, bare)
		require.NotContains(t, bare, "s3cret")
		require.Contains(t, env, "GIT_CONFIG_KEY_0=credential.helper")
	}
	_, env := splitCredentials("https://ci:s3cret@git.example.com/app.git")
	require.Contains(t, env, "SANDO_GIT_USERNAME=ci")
	require.Contains(t, env, "SANDO_GIT_PASSWORD=s3cret")
}

// A repository URL with a user name and password: git authenticates with
// them, and while it does, no process's command line holds the password.
func TestCredentialsNeverOnTheCommandLine(t *testing.T) {
	t.Parallel()
	const pass = "pw-marker-7f3a9c"
	var mu sync.Mutex
	var auth []string
	release := make(chan struct{})
	var releaseOnce sync.Once
	let := func() { releaseOnce.Do(func() { close(release) }) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		auth = append(auth, user+":"+pw)
		mu.Unlock()
		<-release // git waits here while the test looks at every command line
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	defer let() // before srv.Close: a failing test must not leave git's request held
	repo := strings.Replace(srv.URL, "http://", "http://ci:"+pass+"@", 1) + "/app.git"

	done := make(chan error, 1)
	go func() {
		_, err := Fetch(context.Background(), Options{Repo: repo, Dir: filepath.Join(t.TempDir(), "wt"), Env: os.Environ(), Timeout: 20 * time.Second},
			Want{Ref: "main"})
		done <- err
	}()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(auth) > 0 }, 15*time.Second, 10*time.Millisecond,
		"git authenticated with the URL's credentials")
	mu.Lock()
	require.Equal(t, "ci:"+pass, auth[0])
	mu.Unlock()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	require.NoError(t, err)
	seen := 0
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		seen++
		require.False(t, bytes.Contains(b, []byte(pass)), "%s: %q", p, b)
	}
	require.Greater(t, seen, 1)
	let()
	err = <-done
	require.Error(t, err)
	require.NotContains(t, err.Error(), pass, "nor in the error, which may become a failure summary")
}

// A repository behind HTTP Basic auth, served by git's own http-backend:
// the fetch with the URL's credentials succeeds, through the git cache and
// without, and afterwards no file a build can read, the worktree's .git,
// the mirror's config and FETCH_HEAD included, holds the password (git
// keeps the URL only with its credentials taken out, and Sando's mirror
// config names no URL).
func TestCredentialsLeaveNoTraceOnDisk(t *testing.T) {
	t.Parallel()
	const pass = "pw-marker-2b8e41"
	backend := filepath.Join(strings.TrimSpace(sh(t, t.TempDir(), "--exec-path")), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("no git-http-backend: %v", err)
	}
	src, _, second := repo(t)
	root := t.TempDir()
	sh(t, root, "clone", "-q", "--bare", src, "app.git")
	cgiHandler := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pw, ok := r.BasicAuth(); !ok || user != "ci" || pw != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		cgiHandler.ServeHTTP(w, r)
	}))
	defer srv.Close()
	url := strings.Replace(srv.URL, "http://", "http://ci:"+pass+"@", 1) + "/app.git"

	for _, cache := range []string{"", t.TempDir()} {
		dir := filepath.Join(t.TempDir(), "wt")
		got, err := Fetch(context.Background(), Options{Repo: url, Dir: dir, Cache: cache, Env: os.Environ(), Timeout: 20 * time.Second},
			Want{Ref: "main"})
		require.NoError(t, err, "cache %q", cache)
		require.Equal(t, second, got)
		for _, tree := range []string{dir, cache} {
			if tree == "" {
				continue
			}
			require.NoError(t, filepath.WalkDir(tree, func(path string, d os.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				b, err := os.ReadFile(path)
				require.NoError(t, err)
				require.False(t, bytes.Contains(b, []byte(pass)), "the password is in %s", path)
				return nil
			}))
		}
	}
}
