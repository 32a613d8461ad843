package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/app"
	"sando.dev/sando/internal/config"
	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/internal/testproc"
)

// A pipeline set that does not load stops the API at start with a
// ConfigError (the command exits 2 on it) naming the file and the field.
func TestAPIRefusesBadPipelines(t *testing.T) {
	t.Parallel()
	const ok = "repo: https://example.com/app.git\nbuild: make\n"
	for _, tc := range []struct {
		desc  string
		files map[string]string // in a directory; one file named "" is SANDO_CONFIG itself
		want  []string          // parts of the error, with "<dir>" for the directory
	}{
		{"two files with one name", map[string]string{"a.yaml": "name: app\n" + ok, "b.yml": "name: app\n" + ok},
			[]string{"<dir>/b.yml: name: ", `"app" is also the name of the pipeline in <dir>/a.yaml`}},
		{"a name that is not URL-safe", map[string]string{"web.yaml": "name: \"my app/v2\"\n" + ok},
			[]string{"<dir>/web.yaml: name: ", `"my app/v2" must match`}},
		{"a file name that is not URL-safe", map[string]string{"My App.yaml": ok},
			[]string{"<dir>/My App.yaml: name: ", "add name: or rename the file"}},
		{"a needs cycle", map[string]string{"": ok + "gates:\n  - {kind: a, run: x, needs: [b]}\n  - {kind: b, run: x, needs: [a]}\n"},
			[]string{"<dir>/sando.yaml: gates[0].needs: cycle a → b → a"}},
		{"an empty directory", map[string]string{}, []string{"<dir>: holds no pipeline files"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := dir
			for name, body := range tc.files {
				if name == "" {
					name, path = "sando.yaml", filepath.Join(dir, "sando.yaml")
				}
				require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
			}
			err := Run(context.Background(), config.Config{PipelinePath: path, DataDir: t.TempDir(), Addr: "127.0.0.1:0"},
				slog.New(slog.DiscardHandler), func(string) { t.Error("the API started") })
			var ce *app.ConfigError
			require.ErrorAs(t, err, &ce)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), strings.ReplaceAll(w, "<dir>", dir))
			}
		})
	}
}

// SIGHUP re-reads the pipeline files: a file that no longer validates is
// logged at ERROR with its error and the definitions in force stay; a good
// one is put in force and logged with the pipelines' names.
func TestAPIReloadsOnSIGHUP(t *testing.T) {
	// Not parallel: the signal reaches every API this test binary runs.
	path := filepath.Join(t.TempDir(), "sando.yaml")
	write := func(body string) {
		require.NoError(t, os.WriteFile(path, []byte("name: app\nrepo: https://example.com/app.git\nbuild: make\n"+body), 0o644))
	}
	write("branch: main\n")
	m := redistest.Mini(t)
	logs := &jsonLogs{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, config.Config{PipelinePath: path, RedisURL: "redis://" + m.Addr(), DataDir: t.TempDir(),
			Addr: "127.0.0.1:0", ShutdownTimeout: time.Second}, log, func(a string) { addr <- a })
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("api did not start: %v", err)
	}
	branch := func() string {
		resp, err := http.Get(base + "/pipelines")
		require.NoError(t, err)
		defer resp.Body.Close()
		var body struct {
			Pipelines []struct{ Name, Branch string }
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		require.Len(t, body.Pipelines, 1)
		require.Equal(t, "app", body.Pipelines[0].Name)
		return body.Pipelines[0].Branch
	}
	require.Equal(t, "main", branch())

	write("branch: dev\ngates:\n  - {kind: unit, run: x, needs: [nope]}\n")
	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGHUP))
	line := logs.wait(t, "pipeline files not reloaded; the definitions in force stay")
	require.Equal(t, "ERROR", line["level"])
	require.Contains(t, line["err"], path+`: gates[0].needs: "nope" is not a gate`)
	require.Equal(t, "main", branch(), "the definitions in force stay")

	write("branch: dev\n")
	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGHUP))
	line = logs.wait(t, "pipeline files reloaded")
	require.Equal(t, []any{"app"}, line["pipelines"])
	require.Equal(t, "dev", branch())
}

// jsonLogs collects JSON log lines from several goroutines.
type jsonLogs struct{ testproc.Buffer }

// wait answers the first log line with msg, waiting up to 10 s for it.
func (b *jsonLogs) wait(t *testing.T, msg string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		dec := json.NewDecoder(strings.NewReader(b.String()))
		for {
			var line map[string]any
			if err := dec.Decode(&line); err != nil {
				if err != io.EOF {
					t.Fatalf("log: %v", err)
				}
				break
			}
			if line["msg"] == msg {
				return line
			}
		}
	}
	t.Fatalf("no log line %q within 10s", msg)
	return nil
}
