package e2e

// The pages for people, in a real headless Chromium: the dashboard and a
// run's page render; a building run's page follows its log and changes
// phase without a reload; a red run's page shows its summary above the
// fold, on a desktop and on a phone; Basic auth takes SANDO_READ_TOKEN.
// TestPagesOverHTTP sends the pages' requests through the validating
// client, so openapi.json is held to them too.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// livePipeline's build writes a line, waits for the file %[1]s, writes
// another, then waits for %[2]s: the test decides when each happens.
const livePipeline = `build: |
  echo compile starts
  while [ ! -f %[1]q ]; do sleep 0.05; done
  echo written-after-the-page-loaded
  while [ ! -f %[2]q ]; do sleep 0.05; done
stage: "true"
gates:
  - kind: unit
    run: echo unit ok
`

// redPipeline fails its unit gate the way go test does, while lint runs
// alongside it (needs: []), so the timeline has two overlapping gates.
const redPipeline = `build: |
  echo "go build ./..."
  for i in $(seq 1 30); do echo "compiling package $i"; done
stage: "true"
gates:
  - kind: unit
    run: |
      echo "=== RUN   TestAdd"
      echo "    calc_test.go:8: Add(1, 2) = 3, want 4"
      echo "--- FAIL: TestAdd (0.00s)"
      echo FAIL
      exit 1
  - kind: lint
    needs: []
    run: echo lint ok
`

// page drives one browser tab against one stack.
type page struct {
	t   *testing.T
	ctx context.Context
	log *syncBuf
}

func newPage(t *testing.T, w, h int) *page {
	t.Helper()
	ctx, log := startBrowser(t, 2*time.Minute, w, h)
	return &page{t: t, ctx: ctx, log: log}
}

func (p *page) open(u string) {
	p.t.Helper()
	require.NoError(p.t, chromedp.Do(p.ctx, chromedp.Navigate(u)), "browser log:\n%s", p.log.String())
}

// until polls a JavaScript predicate until it holds, or fails the test
// with the page's text after 30 s, across navigations.
func (p *page) until(what, expr string) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		_, err = chromedp.Run(p.ctx, chromedp.Poll[bool](expr,
			chromedp.WithPollingTimeout(time.Until(deadline)), chromedp.WithPollingInterval(50*time.Millisecond)))
		// A poll does not survive a navigation (a form post's): poll the
		// new page. A timeout ends the loop too: the deadline has passed.
		if err == nil {
			break
		}
	}
	if err != nil {
		text, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		p.t.Fatalf("%s: %v\npage text:\n%s\nbrowser log:\n%s", what, err, text, p.log.String())
	}
}

// answerBasic answers every Basic challenge of the tab with user and
// password, as a person typing them into the browser's login prompt
// would (Fetch.authRequired); the browser then sends them on the page's
// own requests, its script's included.
func (p *page) answerBasic(user, password string) {
	p.t.Helper()
	events := make(chan any, 4096)
	require.NoError(p.t, chromedp.Listen(p.ctx, func(ev any) {
		switch ev.(type) {
		case *fetch.EventRequestPaused, *fetch.EventAuthRequired:
			select {
			case events <- ev:
			default: // a stalled request then fails the test's poll
			}
		}
	}))
	go func() {
		for {
			var ev any
			select {
			case <-p.ctx.Done():
				return
			case ev = <-events:
			}
			switch e := ev.(type) {
			case *fetch.EventRequestPaused:
				_, _ = chromedp.Call(p.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: e.RequestID})
			case *fetch.EventAuthRequired:
				_, _ = chromedp.Call(p.ctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: e.RequestID,
					AuthChallengeResponse: &fetch.AuthChallengeResponse{
						Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: user, Password: password}})
			}
		}
	}()
	handle := true
	_, err := chromedp.Call(p.ctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &handle})
	require.NoError(p.t, err)
}

func (p *page) eval(expr string) string {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](expr))
	require.NoError(p.t, err, "%s\nbrowser log:\n%s", expr, p.log.String())
	return v
}

func TestRunPageInBrowser(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	step1, step2 := filepath.Join(dir, "step1"), filepath.Join(dir, "step2")
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{embedded: true, pipeline: fmt.Sprintf(livePipeline, step1, step2)})
	id := s.rebuild("")
	s.waitRun(id, 30*time.Second, "compiling", func(m map[string]any) bool { return m["phase"] == "compiling" })
	logPath := fmt.Sprintf("/logs/%d/compile.log", id)
	require.Eventually(t, func() bool { return strings.Contains(string(s.get(logPath).body), "compile starts") },
		30*time.Second, 20*time.Millisecond, "the compile log has its first line")

	p := newPage(t, 1280, 900)
	p.open(fmt.Sprintf("%s/runs/%d", s.base, id))
	p.until("the page shows the building run", fmt.Sprintf(
		`document.title.startsWith("Run #%d building") && document.getElementById("phase").textContent === "compiling"`, id))
	p.until("the compile log shows", `document.querySelector("#log-compile pre").textContent.includes("compile starts")`)
	p.eval(`window.sandoNoReload = "yes"`) // gone if the page reloads

	require.NoError(t, writeFile(step1))
	p.until("a followed log shows a line written after the page loaded",
		`document.querySelector("#log-compile pre").textContent.includes("written-after-the-page-loaded")`)
	require.Equal(t, "yes", p.eval(`window.sandoNoReload`))

	require.NoError(t, writeFile(step2))
	p.until("the page changes phase, then result, without a reload",
		`window.sandoNoReload === "yes" && document.getElementById("phase").textContent === "done" &&
		 document.getElementById("run-title").textContent.includes("passed") &&
		 document.querySelector("#timeline").textContent.includes("unit")`)
	require.Equal(t, "1", p.eval(`String(document.querySelectorAll("#log-compile").length)`), "the log is not doubled")

	// The dashboard lists the run; its rebuild button (a form post, same
	// origin) starts the next run and lands on its page.
	p.open(s.base + "/")
	p.until("the dashboard lists the run", fmt.Sprintf(
		`!!document.querySelector('a[href="/runs/%d"]') && document.querySelector(".run").textContent.includes("passed")`, id))
	require.NoError(t, chromedp.Do(p.ctx, chromedp.Click(".pipeline form button")))
	p.until("the rebuild lands on the new run's page", fmt.Sprintf(
		`location.pathname === "/runs/%d" && document.getElementById("run-title").textContent.includes("Run #%d")`, id+1, id+1))
}

// TestRedRunPageInBrowser also takes the README's screenshot: with
// SANDO_SCREENSHOT set (make screenshot) it writes the PNG there.
func TestRedRunPageInBrowser(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.4.2\n"})
	s := startStack(t, proj, stackOpts{embedded: true, pipeline: redPipeline})
	id := s.rebuild("")
	view := s.waitTerminal(id)
	require.Equal(t, "failed", view["result"])
	summary := view["failure_summary"].(string)
	require.NotEmpty(t, summary)

	for _, vp := range []struct {
		name string
		w, h int64
	}{{"desktop", 1280, 800}, {"phone", 390, 844}} {
		p := newPage(t, int(vp.w), int(vp.h))
		require.NoError(t, chromedp.Do(p.ctx, chromedp.EmulateViewport(vp.w, vp.h)))
		p.open(fmt.Sprintf("%s/runs/%d", s.base, id))
		p.until(vp.name+": the summary is above the fold", fmt.Sprintf(`(() => {
			const s = document.getElementById("summary");
			if (!s || !s.textContent.includes(%q)) return false;
			const r = s.getBoundingClientRect();
			return r.top >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth + 1;
		})()`, summary))
		require.Contains(t, p.eval(`document.getElementById("run-title").textContent`), "failed", "the result in words")
		require.Equal(t, "true", p.eval(`String(document.documentElement.scrollWidth <= document.documentElement.clientWidth)`),
			"%s: the page fits the width (it scrolls only down)", vp.name)
		if vp.name != "desktop" {
			require.Equal(t, "true", p.eval(`(() => { const s = document.querySelector("#timeline .scroll");
				return String(s.scrollWidth <= s.clientWidth); })()`), "phone: the timeline fits without scrolling sideways")
			continue
		}
		require.Contains(t, p.eval(`document.getElementById("timeline").innerText`), "lint")
		png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
		require.NoError(t, err)
		require.True(t, bytes.HasPrefix(png, []byte("\x89PNG")), "a PNG")
		path := filepath.Join(t.ArtifactDir(), "red-run.png")
		if out := os.Getenv("SANDO_SCREENSHOT"); out != "" {
			path = out
		}
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
}

func TestPagesBasicAuthInBrowser(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{embedded: true, token: "write-tok", readToken: "read-tok", pipeline: "build: \"true\"\n"})
	r := s.do("POST", "/rebuild", nil, map[string]string{"Authorization": "Bearer write-tok"})
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	id := int(r.json(t)["run_id"].(float64))

	p := newPage(t, 1280, 900)
	// Without the token the 401's Basic challenge has no one to answer it
	// in a headless browser, which reports that as a failed load. With it,
	// the browser answers the challenge as its login prompt would.
	err := chromedp.Do(p.ctx, chromedp.Navigate(fmt.Sprintf("%s/runs/%d", s.base, id)))
	require.ErrorContains(t, err, "ERR_INVALID_AUTH_CREDENTIALS", "no token, no page")

	for _, c := range []struct {
		token   string
		buttons bool
	}{{"read-tok", false}, {"write-tok", true}} {
		p := newPage(t, 1280, 900)
		p.answerBasic("ci", c.token)
		p.open(s.base + "/")
		p.until(c.token+": the dashboard shows", fmt.Sprintf(`!!document.querySelector('a[href="/runs/%d"]')`, id))
		require.Equal(t, fmt.Sprint(c.buttons), p.eval(`String(!!document.querySelector(".pipeline form"))`),
			"%s: rebuild buttons only for the write token", c.token)
		p.open(fmt.Sprintf("%s/runs/%d", s.base, id))
		p.until(c.token+": the run's page shows", fmt.Sprintf(`document.title.startsWith("Run #%d")`, id))
	}
}

// The pages' exchanges through the validating client: a browser's GET /
// and GET /runs/{id}, the badge, a followed log from an offset, and a
// form post answered with 303.
func TestPagesOverHTTP(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{embedded: true, pipeline: "build: \"echo compiled\"\n"})
	id := s.rebuild("")
	require.Equal(t, "passed", s.waitTerminal(id)["result"])
	html := map[string]string{"Accept": browserAccept}

	r := s.do("GET", "/", nil, html)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"))
	r = s.do("GET", fmt.Sprintf("/runs/%d", id), nil, html)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), "compiled")

	r = s.get("/pipelines/default/badge.svg")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), "passed")
	r = s.do("GET", "/pipelines/default/badge.svg", nil, map[string]string{"If-None-Match": r.header.Get("ETag")})
	require.Equal(t, http.StatusNotModified, r.status)
	require.Equal(t, http.StatusNotFound, s.get("/pipelines/nope/badge.svg").status)

	r = s.get(fmt.Sprintf("/logs/%d/compile.log?follow=1&from=3", id))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "piled\n", string(r.body), "a follow from an offset")

	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Accept": browserAccept}
	noFollow := &http.Client{Transport: client.Transport, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(context.Background(), "POST", s.base+"/rebuild", strings.NewReader("ref=main"))
	require.NoError(t, err)
	for k, v := range form {
		req.Header.Set(k, v)
	}
	resp, err := noFollow.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, fmt.Sprintf("/runs/%d", id+1), resp.Header.Get("Location"))

	req, err = http.NewRequestWithContext(context.Background(), "POST", s.base+"/rebuild", nil)
	require.NoError(t, err)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err = noFollow.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a cross-site post is refused without SANDO_TOKEN")
}
