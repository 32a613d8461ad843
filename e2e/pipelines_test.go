package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// twoPipelines is a directory of two pipelines: "web" (named by its file,
// its build waits for flag) and "api" (named by name:, quick).
func twoPipelines(flag string) map[string]string {
	return map[string]string{
		"web.yaml": gatedBuild(flag),
		"api.yml":  "name: api\nbranch: main\nbuild: echo api\ngates:\n  - kind: unit\n    run: \"true\"\n",
	}
}

func ids(t *testing.T, r response) ([]int, []string) {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var out []int
	var names []string
	for _, v := range r.json(t)["runs"].([]any) {
		m := v.(map[string]any)
		out = append(out, int(m["run_id"].(float64)))
		names = append(names, m["pipeline"].(string))
	}
	return out, names
}

func problemDetail(t *testing.T, r response, status int) string {
	t.Helper()
	require.Equal(t, status, r.status, "%s", r.body)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
	return r.json(t)["detail"].(string)
}

// One deployment, a directory of two pipelines: both listed, a run of
// each, supersede inside one pipeline never aborting the other's run,
// /runs merged newest first and filtered, /state and /rebuild needing a
// name, unknown names refused; then SIGHUP with a broken file keeps the
// set in force, and a good one adds a pipeline.
func TestManyPipelines(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	flag := filepath.Join(t.TempDir(), "go")
	s := startStack(t, proj, stackOpts{pipelines: twoPipelines(flag)})

	list := s.get("/pipelines")
	require.Equal(t, http.StatusOK, list.status, "%s", list.body)
	var names []string
	for _, p := range list.json(t)["pipelines"].([]any) {
		m := p.(map[string]any)
		names = append(names, m["name"].(string))
		require.Equal(t, "/pipelines/"+m["name"].(string), m["url"])
		require.Nil(t, m["build"])
	}
	require.Equal(t, []string{"api", "web"}, names)
	index := s.do("GET", "/", nil, map[string]string{"Accept": "application/json"})
	require.Equal(t, "Accept", index.header.Get("Vary"))
	require.JSONEq(t, string(list.body), string(index.body))

	require.Contains(t, problemDetail(t, s.do("POST", "/rebuild", nil, nil), 400), "api, web")
	require.Contains(t, problemDetail(t, s.do("POST", "/rebuild", strings.NewReader(`{"pipeline":"nope"}`), nil), 400), `"nope"`)
	require.Contains(t, problemDetail(t, s.get("/state"), 400), "api, web")
	require.Contains(t, problemDetail(t, s.get("/pipelines/nope"), 404), `no pipeline "nope"`)
	require.Contains(t, problemDetail(t, s.get("/runs?pipeline=nope"), 404), `no pipeline "nope"`)
	require.Contains(t, problemDetail(t, s.do("POST", "/pipelines/nope/rebuild", nil, nil), 404), `no pipeline "nope"`)

	web1 := s.rebuild(`{"pipeline":"web"}`)
	s.waitRun(web1, 20*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })
	api1 := s.rebuild(`{"pipeline":"api"}`)
	require.Equal(t, "passed", s.waitTerminal(api1)["result"])
	require.Equal(t, "building", s.get(fmt.Sprint("/runs/", web1)).json(t)["result"], "api's rebuild left web's run alone")

	r := s.do("POST", "/pipelines/web/rebuild", nil, nil)
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	web2 := int(r.json(t)["run_id"].(float64))
	require.Equal(t, []any{float64(web1)}, r.json(t)["superseded"])
	web1v := s.waitTerminal(web1)
	require.Equal(t, "aborted", web1v["result"])
	require.Equal(t, "web", web1v["pipeline"])
	s.waitRun(web2, 20*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })
	api2 := s.rebuild(`{"pipeline":"api","ref":"main"}`)
	require.Equal(t, "passed", s.waitTerminal(api2)["result"])
	require.Equal(t, "building", s.get(fmt.Sprint("/runs/", web2)).json(t)["result"])
	require.NoError(t, writeFile(flag))
	web2v := s.waitTerminal(web2)
	require.Equal(t, "passed", web2v["result"], "%v", web2v)

	got, pipes := ids(t, s.get("/runs"))
	require.Equal(t, []int{api2, web2, api1, web1}, got)
	require.Equal(t, []string{"api", "web", "api", "web"}, pipes)
	got, _ = ids(t, s.get("/runs?pipeline=web"))
	require.Equal(t, []int{web2, web1}, got)
	got, _ = ids(t, s.get("/pipelines/api/runs"))
	require.Equal(t, []int{api2, api1}, got)
	var paged []int
	for path := "/runs?limit=3"; path != ""; {
		page := s.get(path)
		got, _ := ids(t, page)
		paged = append(paged, got...)
		path, _ = page.json(t)["next"].(string)
	}
	require.Equal(t, []int{api2, web2, api1, web1}, paged)

	st := s.get("/state?pipeline=web")
	require.Equal(t, http.StatusOK, st.status)
	require.Equal(t, float64(web2), st.json(t)["deployed"].(map[string]any)["run_id"])
	require.JSONEq(t, string(st.body), string(s.get("/pipelines/web/state").body))
	require.Equal(t, "api\n", string(s.get(fmt.Sprintf("/logs/%d/compile.log", api2)).body))

	// SIGHUP: a file that no longer validates keeps the set in force.
	dir := s.cfgPath
	inForce := s.get("/pipelines").body
	s.writePipeline(dir, "api.yml", "repo: "+proj.dir+"\nname: api\nbuild: x\ngates:\n  - {kind: a, run: x, needs: [b]}\n  - {kind: b, run: x, needs: [a]}\n")
	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), "pipeline files not reloaded") },
		10*time.Second, 20*time.Millisecond)
	require.Contains(t, s.logs.String(), filepath.Join(dir, "api.yml")+": gates[0].needs: cycle a → b → a")
	require.JSONEq(t, string(inForce), string(s.get("/pipelines").body), "the definitions in force stay")
	api3 := s.rebuild(`{"pipeline":"api"}`)
	require.Equal(t, "passed", s.waitTerminal(api3)["result"], "built with the definition in force")

	// A good reload puts a new pipeline in force.
	s.writePipeline(dir, "api.yml", "repo: "+proj.dir+"\n"+twoPipelines(flag)["api.yml"])
	s.writePipeline(dir, "docs.yaml", "repo: "+proj.dir+"\nbuild: \"true\"\n")
	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		r := s.get("/pipelines/docs")
		return r.status == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
	docs := s.rebuild(`{"pipeline":"docs"}`)
	require.Equal(t, "passed", s.waitTerminal(docs)["result"])
	require.Contains(t, problemDetail(t, s.get("/state"), 400), "api, docs, web")
}

// Pipeline files that do not make a set stop sando-api at start, exit 2,
// with the file and the field: two files with one name, a name that is
// not URL-safe, a needs cycle.
func TestPipelineConfigErrorsAtStartup(t *testing.T) {
	t.Parallel()
	bin := buildCmd(t, "cmd/api")
	const ok = "repo: /tmp/x\nbuild: make\n"
	for _, tc := range []struct {
		desc  string
		files map[string]string
		want  string // with <dir> for the directory
	}{
		{"two files with one name", map[string]string{"a.yaml": "name: app\n" + ok, "b.yaml": "name: app\n" + ok},
			`<dir>/b.yaml: name: "app" is also the name of the pipeline in <dir>/a.yaml`},
		{"a name that is not URL-safe", map[string]string{"a.yaml": "name: ../app\n" + ok},
			`<dir>/a.yaml: name: "../app" must match`},
		{"a needs cycle", map[string]string{"a.yaml": ok + "gates:\n  - {kind: a, run: x, needs: [b]}\n  - {kind: b, run: x, needs: [a]}\n"},
			"<dir>/a.yaml: gates[0].needs: cycle a → b → a"},
	} {
		dir := t.TempDir()
		for name, body := range tc.files {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
		}
		cmd := exec.CommandContext(context.Background(), bin)
		cmd.Env = append(os.Environ(), "REDIS_URL=", "SANDO_ADDR=127.0.0.1:0", "SANDO_CONFIG="+dir, "SANDO_DATA_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, tc.desc)
		require.Equal(t, 2, ee.ExitCode(), "%s: %s", tc.desc, out)
		require.Contains(t, string(out), "sando-api: config: "+strings.ReplaceAll(tc.want, "<dir>", dir), tc.desc)
	}
}
