package httpapi

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/logstore"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/redistest"
	"sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

func TestPrefersHTML(t *testing.T) {
	t.Parallel()
	for accept, want := range map[string]bool{
		"":                                  false,
		"*/*":                               false,
		"application/json":                  false,
		browserAccept:                       true,
		"text/html":                         true,
		"text/html;q=0.5, application/json": false,
		"application/json;q=0.4, text/html;q=0.5": true,
		"text/html;q=0, */*":                      false,
		"text/html;level=1;q=bogus":               true,
	} {
		require.Equal(t, want, prefersHTML(accept), "Accept: %q", accept)
	}
}

// failedRun makes a failed run of app with a compile log of lines lines
// and a passed unit gate, as a worker would leave it.
func failedRun(t *testing.T, a *testAPI, lines int) int64 {
	t.Helper()
	ctx := context.Background()
	st := a.store("app")
	c, err := st.Create(ctx, runstore.CreateRequest{})
	require.NoError(t, err)
	for ph, step := range map[vocab.Phase]string{vocab.PhaseFetching: "fetch", vocab.PhaseCompiling: "compile"} {
		_, _, err := st.SetPhase(ctx, c.ID, ph, "t", runstore.Where{Worker: "w1"}, datadir.LogRef(c.ID, step))
		require.NoError(t, err)
	}
	w := logstore.NewWriter(a.rdb, st.Keys().Log(c.ID, "compile"), logstore.Options{})
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(w, "compile line %05d of the build output\n", i)
	}
	require.NoError(t, w.Close())
	_, err = st.Fail(ctx, c.ID, "main.go:12:2: undefined: <x>")
	require.NoError(t, err)
	return c.ID
}

// A browser gets the pages; every other client the JSON, and the two
// never share an ETag. HEAD answers as GET does.
func TestPagesNegotiate(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	id := failedRun(t, a, 10)
	path := fmt.Sprintf("/runs/%d", id)

	html, page := a.do(http.MethodGet, path, "", "Accept", browserAccept)
	require.Equal(t, http.StatusOK, html.StatusCode, page)
	require.Equal(t, "text/html; charset=utf-8", html.Header.Get("Content-Type"))
	require.Equal(t, "Accept", html.Header.Get("Vary"))
	require.Contains(t, html.Header.Get("Content-Security-Policy"), "script-src 'self'")
	require.Contains(t, page, "main.go:12:2: undefined: &lt;x&gt;", "the summary, escaped")
	require.Contains(t, page, "compile line 00010")
	require.Contains(t, page, `<main id="main">`)

	js, body := a.do(http.MethodGet, path, "", "Accept", "application/json")
	require.Equal(t, "application/json", js.Header.Get("Content-Type"))
	require.Equal(t, "Accept", js.Header.Get("Vary"))
	require.Contains(t, body, `"result":"failed"`)
	require.NotEqual(t, js.Header.Get("ETag"), html.Header.Get("ETag"))
	require.Contains(t, page, `data-etag="`+strings.ReplaceAll(js.Header.Get("ETag"), `"`, "&#34;")+`"`,
		"the page carries the JSON view's ETag, for its long-poll")

	again, _ := a.do(http.MethodGet, path, "", "Accept", browserAccept, "If-None-Match", html.Header.Get("ETag"))
	require.Equal(t, http.StatusNotModified, again.StatusCode)
	cross, _ := a.do(http.MethodGet, path, "", "Accept", "application/json", "If-None-Match", html.Header.Get("ETag"))
	require.Equal(t, http.StatusOK, cross.StatusCode, "the page's ETag is not the view's")

	for _, p := range []string{"/", path} {
		get, _ := a.do(http.MethodGet, p, "", "Accept", browserAccept)
		head, headBody := a.do(http.MethodHead, p, "", "Accept", browserAccept)
		require.Equal(t, get.StatusCode, head.StatusCode, p)
		require.Equal(t, get.Header.Get("Content-Type"), head.Header.Get("Content-Type"), p)
		require.Empty(t, headBody)
	}

	dash, dbody := a.do(http.MethodGet, "/", "", "Accept", browserAccept)
	require.Equal(t, http.StatusOK, dash.StatusCode)
	require.Contains(t, dbody, fmt.Sprintf(`href="/runs/%d"`, id))
	require.Contains(t, dbody, "main.go:12:2: undefined: &lt;x&gt;")
	require.Contains(t, dbody, "✗</span> failed", "the result is a word, not a colour alone")

	css, _ := a.do(http.MethodGet, regexp.MustCompile(`/assets/sando\.css\?v=[0-9a-f]+`).FindString(page), "")
	require.Equal(t, http.StatusOK, css.StatusCode)
	require.Contains(t, css.Header.Get("Cache-Control"), "immutable")
}

// A run's page shows a long log's tail and links the whole of it.
func TestRunPageShowsALogsTail(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	id := failedRun(t, a, 10_000)
	_, page := a.do(http.MethodGet, fmt.Sprintf("/runs/%d", id), "", "Accept", browserAccept)
	require.Contains(t, page, "compile line 10000")
	require.NotContains(t, page, "compile line 00001 ")
	require.Less(t, len(page), 64<<10, "the page does not inline the log")
	require.Contains(t, page, fmt.Sprintf(`href="/logs/%d/compile.log"`, id))
	require.Regexp(t, `\d+ bytes before it are not shown`, page)
}

// Buttons show only to a request that may write; with SANDO_TOKEN, the
// read token does not show them.
func TestPageButtonsNeedTheWriteToken(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	srv := a.server(func(s *Server) { s.Token, s.ReadToken = "w-tok", "r-tok" })
	ctx := context.Background()
	c, err := a.store("app").Create(ctx, runstore.CreateRequest{})
	require.NoError(t, err)
	path := fmt.Sprintf("/runs/%d", c.ID)
	other := &testAPI{t: t, url: srv}

	resp, _ := other.do(http.MethodGet, path, "", "Accept", browserAccept)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic", "a browser is asked for the token")

	_, page := other.do(http.MethodGet, path, "", "Accept", browserAccept, "Authorization", basic("r-tok"))
	require.Contains(t, page, "Run #")
	require.NotContains(t, page, "Cancel run")
	_, page = other.do(http.MethodGet, path, "", "Accept", browserAccept, "Authorization", basic("w-tok"))
	require.Contains(t, page, "Cancel run")
	require.Contains(t, page, `action="/pipelines/app/rebuild"`)
}

// A page's forms post to the API's routes and go on to the run's page; a
// post from another site is refused, with or without a token.
func TestPageFormsAndCrossSitePosts(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	sha := strings.Repeat("ab", 20)
	form := "application/x-www-form-urlencoded"
	resp, body := a.do(http.MethodPost, "/pipelines/app/rebuild", "sha="+sha, "Content-Type", form,
		"Accept", browserAccept, "Origin", a.url, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	loc := resp.Header.Get("Location")
	require.Regexp(t, `^/runs/\d+$`, loc)
	_, view := a.do(http.MethodGet, loc, "")
	require.Contains(t, view, `"sha":"`+sha+`"`)

	resp, body = a.do(http.MethodPost, loc+"/cancel", "", "Content-Type", form, "Accept", browserAccept, "Origin", a.url)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	require.Equal(t, loc, resp.Header.Get("Location"))

	resp, body = a.do(http.MethodPost, "/rebuild", "sha=nothex", "Content-Type", form, "Accept", browserAccept)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, "sha:")
	resp, body = a.do(http.MethodPost, "/rebuild", "SHA="+sha, "Content-Type", form)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, `unknown field \"SHA\"`)
	resp, _ = a.do(http.MethodPost, "/rebuild", `{"ref":"main"}`, "Content-Type", form) // curl -d
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	for _, h := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Origin", "https://evil.example"},
	} {
		resp, body = a.do(http.MethodPost, "/rebuild", "", append([]string{"Content-Type", form}, h...)...)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "%v: %s", h, body)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
		resp, _ = a.do(http.MethodPost, loc+"/cancel", "", h...)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "%v", h)
	}
}

// The badge is the newest run that passed or failed: an aborted run after
// it leaves it as it was.
func TestBadge(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	ctx := context.Background()
	st := a.store("app")
	badge := func() (string, *http.Response) {
		resp, body := a.do(http.MethodGet, "/pipelines/app/badge.svg", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Equal(t, "image/svg+xml; charset=utf-8", resp.Header.Get("Content-Type"))
		require.Contains(t, resp.Header.Get("Cache-Control"), "max-age=60")
		return body, resp
	}
	body, _ := badge()
	require.Contains(t, body, `aria-label="app: none"`)

	c1, err := st.Create(ctx, runstore.CreateRequest{NoSupersede: true})
	require.NoError(t, err)
	_, err = st.Pass(ctx, c1.ID)
	require.NoError(t, err)
	body, _ = badge()
	require.Contains(t, body, `aria-label="app: passed"`)
	require.Contains(t, body, `fill="#4c1"`)

	c2, err := st.Create(ctx, runstore.CreateRequest{NoSupersede: true})
	require.NoError(t, err)
	_, err = st.Fail(ctx, c2.ID, "unit: TestAdd")
	require.NoError(t, err)
	c3, err := st.Create(ctx, runstore.CreateRequest{NoSupersede: true})
	require.NoError(t, err)
	_, err = st.Abort(ctx, c3.ID, vocab.SummarySuperseded)
	require.NoError(t, err)
	_, err = st.Create(ctx, runstore.CreateRequest{NoSupersede: true}) // building
	require.NoError(t, err)
	body, resp := badge()
	require.Contains(t, body, `aria-label="app: failed"`, "a supersede never turns it grey")
	again, _ := a.do(http.MethodGet, "/pipelines/app/badge.svg", "", "If-None-Match", resp.Header.Get("ETag"))
	require.Equal(t, http.StatusNotModified, again.StatusCode)

	resp, _ = a.do(http.MethodGet, "/pipelines/nope/badge.svg", "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// GET / reads 50 pipelines in a few Redis round trips in all (pipelined),
// not a few per pipeline: two for a browser's dashboard, three at most for
// a JSON client's list of states.
func TestDashboardRoundTrips(t *testing.T) {
	t.Parallel()
	var pipes []*pipeline.Pipeline
	for i := range 50 {
		pipes = append(pipes, testPipeline(fmt.Sprintf("p%02d", i)))
	}
	a := newTestAPI(t, pipes...)
	ctx := context.Background()
	for _, p := range pipes {
		for range 2 {
			_, err := a.store(p.Name).Create(ctx, runstore.CreateRequest{NoSupersede: true})
			require.NoError(t, err)
		}
	}
	a.get("/", browserAccept) // warm: the catalog is opened once
	var trips redistest.Traffic
	a.rdb.AddHook(&trips)
	_, page := a.get("/", browserAccept)
	require.Contains(t, page, "p49")
	require.LessOrEqual(t, trips.Trips(), int64(2), "Redis round trips for GET / with 50 pipelines")

	// A JSON client's GET / (GET /pipelines' body): every pipeline's state
	// in at most three round trips in all (runstore.Deployments), where it
	// took three to five per pipeline.
	trips.Reset()
	_, list := a.get("/", "application/json")
	require.Contains(t, list, `"name":"p49"`)
	require.LessOrEqual(t, trips.Trips(), int64(3), "Redis round trips for a JSON GET / with 50 pipelines")
}

// get on a sends a GET with Accept.
func (a *testAPI) get(path, accept string) (*http.Response, string) {
	return a.do(http.MethodGet, path, "", "Accept", accept)
}

func basic(password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("ci:"+password))
}
