// Package pages renders Sando's pages for people: the dashboard (GET /) and
// a run's page (GET /runs/{id}) for a browser, and the pipeline badge. The
// templates and assets are embedded (go:embed) and parsed once, in New, so
// a broken template stops the process at start-up instead of failing a
// request, and nothing is fetched from a CDN: the pages work offline.
//
// The pages read fine without JavaScript. sando.js only updates them: it
// long-polls GET /runs/{id}?wait=30s with If-None-Match, as a CI client
// does, swaps in the parts that changed and follows running steps' logs.
//
// pages knows nothing of HTTP routing or Redis: httpapi reads the runs and
// hands each page a typed view (Dashboard, RunPage).
package pages

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// CSP is the Content-Security-Policy of every page: scripts, styles and
// connections only from Sando itself, no inline script or style (the
// timeline is SVG attributes, not style=), forms post only to Sando, and
// no page may be framed (a cancel button under someone else's overlay).
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Renderer holds the parsed templates and the assets' fingerprints.
type Renderer struct {
	dashboard, run *template.Template
	assets         map[string]asset // by name: "sando.css"
}

type asset struct {
	body  []byte
	etag  string
	ctype string
}

// New parses every template and fingerprints every asset.
func New() (*Renderer, error) {
	r := &Renderer{assets: map[string]asset{}}
	err := fs.WalkDir(assetFS, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assetFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := "text/css; charset=utf-8"
		if strings.HasSuffix(p, ".js") {
			ctype = "text/javascript; charset=utf-8"
		}
		r.assets[path.Base(p)] = asset{body: b, etag: hex.EncodeToString(sum[:8]), ctype: ctype}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pages: assets: %w", err)
	}
	funcs := template.FuncMap{"asset": r.assetURL}
	parse := func(page string) (*template.Template, error) {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page)
		if err != nil {
			return nil, fmt.Errorf("pages: %s: %w", page, err)
		}
		return t, nil
	}
	if r.dashboard, err = parse("dashboard.html"); err != nil {
		return nil, err
	}
	if r.run, err = parse("run.html"); err != nil {
		return nil, err
	}
	return r, nil
}

// assetURL is an asset's path with its fingerprint, so it can be cached
// for good: a new binary with a changed asset names it anew.
func (r *Renderer) assetURL(name string) (string, error) {
	a, ok := r.assets[name]
	if !ok {
		return "", fmt.Errorf("no asset %q", name)
	}
	return "/assets/" + name + "?v=" + a.etag, nil
}

// Dashboard renders GET / for a browser.
func (r *Renderer) Dashboard(d Dashboard) ([]byte, error) { return execute(r.dashboard, d) }

// Run renders a run's page.
func (r *Renderer) Run(p RunPage) ([]byte, error) { return execute(r.run, p) }

func execute(t *template.Template, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("pages: %s: %w", t.Name(), err)
	}
	return b.Bytes(), nil
}

// ServeAsset serves /assets/{name}: immutable, since its URL carries its
// fingerprint. It reports false for an unknown name.
func (r *Renderer) ServeAsset(w http.ResponseWriter, req *http.Request, name string) bool {
	a, ok := r.assets[name]
	if !ok {
		return false
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", `"`+a.etag+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	if req.Header.Get("If-None-Match") == `"`+a.etag+`"` {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	_, _ = w.Write(a.body)
	return true
}
