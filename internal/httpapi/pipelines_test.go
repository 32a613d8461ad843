package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/steps"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

// getJSON answers path's JSON body, requiring status.
func (a *testAPI) getJSON(path string, status int) map[string]any { //nolint:unparam // the status each read must answer, spelt out where it is read
	a.t.Helper()
	resp, body := a.do(http.MethodGet, path, "")
	require.Equal(a.t, status, resp.StatusCode, "GET %s: %s", path, body)
	var m map[string]any
	require.NoError(a.t, json.Unmarshal([]byte(body), &m), "GET %s: %s", path, body)
	return m
}

// rebuild POSTs to path and answers the new run's id.
func (a *testAPI) rebuild(path, body string) int64 {
	a.t.Helper()
	resp, b := a.do(http.MethodPost, path, body)
	require.Equal(a.t, http.StatusAccepted, resp.StatusCode, "POST %s %s: %s", path, body, b)
	var m struct {
		RunID      int64   `json:"run_id"`
		Superseded []int64 `json:"superseded"`
	}
	require.NoError(a.t, json.Unmarshal([]byte(b), &m))
	return m.RunID
}

// problem requires a problem+json answer of status whose detail holds each of want.
func (a *testAPI) problem(method, path, body string, status int, want ...string) {
	a.t.Helper()
	resp, b := a.do(method, path, body)
	require.Equal(a.t, status, resp.StatusCode, "%s %s %s: %s", method, path, body, b)
	require.Equal(a.t, "application/problem+json", resp.Header.Get("Content-Type"), "%s %s", method, path)
	var p problem
	require.NoError(a.t, json.Unmarshal([]byte(b), &p))
	for _, w := range want {
		require.Contains(a.t, p.Detail, w, "%s %s %s", method, path, body)
	}
}

func runIDs(t *testing.T, list map[string]any) ([]int64, []string) {
	t.Helper()
	var ids []int64
	var names []string
	for _, r := range list["runs"].([]any) {
		m := r.(map[string]any)
		ids = append(ids, int64(m["run_id"].(float64)))
		names = append(names, m["pipeline"].(string))
	}
	return ids, names
}

// With one pipeline the routes without a name act on it, as before, and
// its name may be given too; a name that is not its own is refused.
func TestOnePipelineRoutes(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	id := a.rebuild("/rebuild", "")
	require.Equal(t, id+1, a.rebuild("/rebuild", `{"pipeline":"app"}`))
	require.Equal(t, id+2, a.rebuild("/pipelines/app/rebuild", `{"ref":"main"}`))

	v := a.getJSON(fmt.Sprint("/runs/", id), http.StatusOK)
	require.Equal(t, "app", v["pipeline"])
	require.Equal(t, "aborted", v["result"], "superseded by the next rebuild")
	ids, names := runIDs(t, a.getJSON("/runs", http.StatusOK))
	require.Equal(t, []int64{id + 2, id + 1, id}, ids)
	require.Equal(t, []string{"app", "app", "app"}, names)
	require.Equal(t, a.getJSON("/runs", http.StatusOK), a.getJSON("/runs?pipeline=app", http.StatusOK))
	require.Equal(t, a.getJSON("/runs", http.StatusOK), a.getJSON("/pipelines/app/runs", http.StatusOK))
	st := a.getJSON("/state", http.StatusOK)
	require.Equal(t, float64(id+2), st["build"].(map[string]any)["run_id"])
	require.Equal(t, st, a.getJSON("/pipelines/app/state", http.StatusOK))
	require.Equal(t, st, a.getJSON("/state?pipeline=app", http.StatusOK))

	a.problem("POST", "/rebuild", `{"pipeline":"nope"}`, http.StatusBadRequest, `"nope" is not a pipeline`, "app")
	a.problem("POST", "/pipelines/app/rebuild", `{"pipeline":"nope"}`, http.StatusBadRequest, `"nope"`, `"app"`)
	a.problem("POST", "/pipelines/nope/rebuild", "", http.StatusNotFound, `no pipeline "nope"`)
	for _, path := range []string{"/pipelines/nope", "/pipelines/nope/runs", "/pipelines/nope/state", "/runs?pipeline=nope",
		"/state?pipeline=nope", "/pipelines/NOPE%20x"} {
		a.problem("GET", path, "", http.StatusNotFound, "no pipeline")
	}
	a.problem("GET", "/pipelines/app/runs?pipeline=other", "", http.StatusBadRequest, `"app"`, `"other"`)
}

// A rebuild makes the run with its pipeline's name and definition as
// they stand at the request, and queues its first step for that pipeline.
func TestRebuildCarriesTheDefinition(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, testPipeline("a"), testPipeline("b"))
	id := a.rebuild("/rebuild", `{"pipeline":"b"}`)
	r, err := a.store("b").Get(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, "b", r.Pipeline)
	want, err := pipeline.Marshal(testPipeline("b"))
	require.NoError(t, err)
	require.JSONEq(t, string(want), r.Definition)
	def, err := pipeline.Unmarshal([]byte(r.Definition))
	require.NoError(t, err, "a worker can read it back")
	require.Equal(t, "b", def.Name)

	// An edit after the rebuild (a reload) does not change the run's.
	edited := testPipeline("b")
	edited.Build = "make all"
	set, err := pipeline.NewSet(testPipeline("a"), edited)
	require.NoError(t, err)
	a.set.Store(set)
	id2 := a.rebuild("/pipelines/b/rebuild", "")
	r, err = a.store("b").Get(context.Background(), id)
	require.NoError(t, err)
	require.JSONEq(t, string(want), r.Definition)
	r2, err := a.store("b").Get(context.Background(), id2)
	require.NoError(t, err)
	require.Contains(t, r2.Definition, `"build":"make all"`)

	a.queue.mu.Lock()
	defer a.queue.mu.Unlock()
	require.Len(t, a.queue.tasks, 2)
	var pl steps.Payload
	require.NoError(t, json.Unmarshal(a.queue.tasks[0].Payload(), &pl))
	require.Equal(t, steps.Payload{RunID: id, Pipeline: "b"}, pl)
}

// With several pipelines: a rebuild names one (else 400 naming them all),
// supersede stays inside a pipeline, /runs merges newest first and pages
// across pipelines, /state needs a name, and the run routes find a run's
// pipeline from its id alone.
func TestSeveralPipelines(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, testPipeline("web"), testPipeline("api"))
	a.problem("POST", "/rebuild", "", http.StatusBadRequest, "2 pipelines (api, web)", `{"pipeline": "<name>"}`)
	a.problem("POST", "/rebuild", `{"ref":"main"}`, http.StatusBadRequest, "api, web")
	a.problem("POST", "/rebuild", `{"pipeline":"nope"}`, http.StatusBadRequest, `"nope" is not a pipeline`, "api, web")
	a.problem("GET", "/state", "", http.StatusBadRequest, "api, web", "?pipeline=")

	web1 := a.rebuild("/rebuild", `{"pipeline":"web"}`)
	api1 := a.rebuild("/pipelines/api/rebuild", "")
	web2 := a.rebuild("/pipelines/web/rebuild", `{"pipeline":"web"}`)
	api2 := a.rebuild("/rebuild", `{"pipeline":"api","ref":"main"}`)
	result := func(id int64) any { return a.getJSON(fmt.Sprint("/runs/", id), http.StatusOK)["result"] }
	require.Equal(t, "aborted", result(web1), "superseded by web's next run")
	require.Equal(t, "aborted", result(api1), "superseded by api's next run, not by web's")
	require.Equal(t, "building", result(web2), "api's rebuild never aborts web's run")
	require.Equal(t, "building", result(api2))

	ids, names := runIDs(t, a.getJSON("/runs", http.StatusOK))
	require.Equal(t, []int64{api2, web2, api1, web1}, ids)
	require.Equal(t, []string{"api", "web", "api", "web"}, names)
	ids, _ = runIDs(t, a.getJSON("/runs?pipeline=web", http.StatusOK))
	require.Equal(t, []int64{web2, web1}, ids)
	ids, _ = runIDs(t, a.getJSON("/pipelines/api/runs", http.StatusOK))
	require.Equal(t, []int64{api2, api1}, ids)

	// Pages of one run each, across pipelines, with nothing twice.
	var paged []int64
	for path := "/runs?limit=1"; ; {
		page := a.getJSON(path, http.StatusOK)
		got, _ := runIDs(t, page)
		paged = append(paged, got...)
		next, ok := page["next"].(string)
		if !ok {
			break
		}
		require.Regexp(t, `^/runs\?before=[0-9]+&limit=1$`, next)
		path = next
	}
	require.Equal(t, []int64{api2, web2, api1, web1}, paged)
	page := a.getJSON("/runs?pipeline=web&limit=1", http.StatusOK)
	require.Equal(t, fmt.Sprintf("/runs?before=%d&limit=1&pipeline=web", web2), page["next"])
	page = a.getJSON(page["next"].(string), http.StatusOK)
	ids, _ = runIDs(t, page)
	require.Equal(t, []int64{web1}, ids)
	page = a.getJSON("/pipelines/web/runs?limit=1", http.StatusOK)
	require.Equal(t, fmt.Sprintf("/pipelines/web/runs?before=%d&limit=1", web2), page["next"])

	st := a.getJSON("/state?pipeline=api", http.StatusOK)
	require.Equal(t, float64(api2), st["build"].(map[string]any)["run_id"])
	require.Equal(t, st, a.getJSON("/pipelines/api/state", http.StatusOK))

	list := a.getJSON("/pipelines", http.StatusOK)["pipelines"].([]any)
	require.Len(t, list, 2)
	first := list[0].(map[string]any)
	require.Equal(t, "api", first["name"])
	require.Equal(t, "main", first["branch"])
	require.Equal(t, "host", first["tier"])
	require.Equal(t, "/pipelines/api", first["url"])
	require.Nil(t, first["deployed"])
	require.Equal(t, float64(api2), first["build"].(map[string]any)["run_id"])
	require.Equal(t, "web", list[1].(map[string]any)["name"])
	require.Equal(t, first, a.getJSON("/pipelines/api", http.StatusOK))

	// A run's routes need no name: cancel api's run, web's stays.
	resp, body := a.do(http.MethodPost, fmt.Sprint("/runs/", api2, "/cancel"), "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `"pipeline":"api"`)
	require.Equal(t, "aborted", result(api2))
	require.Equal(t, "building", result(web2))
	a.problem("POST", fmt.Sprint("/runs/", api2, "/cancel"), "", http.StatusConflict, "already aborted")
	a.problem("GET", "/runs/999", "", http.StatusNotFound, "no run")
}

// Idempotency keys are per pipeline: one key in two pipelines starts a
// run in each, and a retry in either replays its own.
func TestIdempotencyPerPipeline(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, testPipeline("a"), testPipeline("b"))
	post := func(body string) (int, string, string) {
		resp, b := a.do(http.MethodPost, "/rebuild", body, "Idempotency-Key", "job-1")
		return resp.StatusCode, resp.Header.Get("Idempotent-Replayed"), b
	}
	code, replayed, first := post(`{"pipeline":"a"}`)
	require.Equal(t, http.StatusAccepted, code)
	require.Empty(t, replayed)
	code, replayed, other := post(`{"pipeline":"b"}`)
	require.Equal(t, http.StatusAccepted, code)
	require.Empty(t, replayed, "b has not seen the key")
	require.NotEqual(t, first, other)
	code, replayed, again := post(`{"pipeline":"a"}`)
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, "true", replayed)
	require.JSONEq(t, first, again)
}

// GET / answers GET /pipelines' body to every client that does not prefer
// HTML, and says that it depends on Accept (html_test.go has the page).
func TestIndexIsThePipelines(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, testPipeline("a"), testPipeline("b"))
	a.rebuild("/pipelines/a/rebuild", "")
	_, want := a.do(http.MethodGet, "/pipelines", "")
	for _, accept := range []string{"", "application/json", "*/*", "application/json, text/html;q=0.9", "text/html;q=0.5, */*"} {
		resp, body := a.do(http.MethodGet, "/", "", "Accept", accept)
		require.Equal(t, http.StatusOK, resp.StatusCode, accept)
		require.Equal(t, "Accept", resp.Header.Get("Vary"), accept)
		require.JSONEq(t, want, body, accept)
	}
}

// No run is lost: one the fleet's index lacks (made before there was
// one) is found by asking each pipeline, and one of a pipeline since taken
// out of the files stays readable, cancelable and in its logs' follow.
func TestRunsOutsideTheIndexOrTheSet(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, testPipeline("a"), testPipeline("b"))
	ctx := context.Background()
	old := a.rebuild("/pipelines/a/rebuild", "")
	require.NoError(t, a.rdb.HDel(ctx, runstore.FleetKeys{}.RunPipeline(), fmt.Sprint(old)).Err())
	require.Equal(t, "a", a.getJSON(fmt.Sprint("/runs/", old), http.StatusOK)["pipeline"])

	gone := a.rebuild("/pipelines/b/rebuild", "")
	only, err := pipeline.NewSet(testPipeline("a"))
	require.NoError(t, err)
	a.set.Store(only) // b's file removed, and the files reloaded
	require.Equal(t, "b", a.getJSON(fmt.Sprint("/runs/", gone), http.StatusOK)["pipeline"])
	a.problem("GET", "/pipelines/b", "", http.StatusNotFound, `no pipeline "b" (the pipelines: a)`)
	ids, _ := runIDs(t, a.getJSON("/runs", http.StatusOK))
	require.Equal(t, []int64{old}, ids, "/runs lists the configured pipelines' runs")

	require.NoError(t, os.MkdirAll(a.layout.LogDir(gone), 0o755))
	require.NoError(t, os.WriteFile(a.layout.LogPath(gone, "fetch"), []byte("fetched\n"), 0o644))
	resp, body := a.do(http.MethodPost, fmt.Sprint("/runs/", gone, "/cancel"), "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	r, err := a.store("b").Get(ctx, gone)
	require.NoError(t, err)
	require.Equal(t, vocab.ResultAborted, r.Result)
	resp, body = a.do(http.MethodGet, "/logs/"+datadir.LogRef(gone, "fetch")+"?follow=1", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "fetched\n", body, "the follow ends: it found the run finished")
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"))
}
