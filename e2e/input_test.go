package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Bad input gets the right 4xx as problem+json, and nothing runs.
func TestBadInput(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{pipeline: "build: \"true\"\n"})
	big := `{"ref": "` + strings.Repeat("a", 70<<10) + `"}`
	tests := []struct {
		desc, method, path, body string
		header                   map[string]string
		status                   int
		detail                   string // a part of the problem's detail
	}{
		{"non-numeric id", "GET", "/runs/abc", "", nil, 400, `run id "abc" is not a positive integer`},
		{"negative id", "GET", "/runs/-1", "", nil, 400, "not a positive integer"},
		{"huge id", "GET", "/runs/99999999999999999999", "", nil, 400, "not a positive integer"},
		{"unknown id", "GET", "/runs/4242", "", nil, 404, "no run with that id"},
		{"cancel unknown id", "POST", "/runs/4242/cancel", "", nil, 404, "no run with that id"},
		{"shell in sha", "POST", "/rebuild", `{"sha": "abc1234; rm -rf /"}`, nil, 400, "sha:"},
		{"short sha", "POST", "/rebuild", `{"sha": "abc12"}`, nil, 400, "sha:"},
		{"non-hex sha", "POST", "/rebuild", `{"sha": "ghijklmn"}`, nil, 400, "sha:"},
		{"command substitution in ref", "POST", "/rebuild", `{"ref": "$(touch /tmp/pwned)"}`, nil, 400, "ref:"},
		{"option-like ref", "POST", "/rebuild", `{"ref": "--upload-pack=evil"}`, nil, 400, "ref:"},
		{"dot-dot ref", "POST", "/rebuild", `{"ref": "main..x"}`, nil, 400, "ref:"},
		{"semicolon ref", "POST", "/rebuild", `{"ref": "main;reboot"}`, nil, 400, "ref:"},
		{"malformed JSON", "POST", "/rebuild", `{"ref": `, nil, 400, "not a JSON object"},
		{"JSON array", "POST", "/rebuild", `["main"]`, nil, 400, "not a JSON object"},
		{"unknown field", "POST", "/rebuild", `{"branch": "main"}`, nil, 400, `unknown field "branch"`},
		{"wrong type", "POST", "/rebuild", `{"sha": 1234567}`, nil, 400, `"sha" must be a string`},
		{"key given twice", "POST", "/rebuild", `{"ref":"a;b","ref":"main"}`, nil, 400, `key "ref" is given twice`},
		{"key in another case", "POST", "/rebuild", `{"REF":"nope"}`, nil, 400, `unknown field "REF"`},
		{"null body", "POST", "/rebuild", `null`, nil, 400, "not a JSON object"},
		{"empty array body", "POST", "/rebuild", `[]`, nil, 400, "not a JSON object"},
		{"trailing data", "POST", "/rebuild", `{} {}`, nil, 400, "after the JSON object"},
		{"oversize body", "POST", "/rebuild", big, nil, 413, "over 64 KiB"},
		{"oversize chunked body", "POST", "/rebuild", big, map[string]string{"X-Test-Chunked": "1"}, 413, "over 64 KiB"},
		{"bad idempotency key", "POST", "/rebuild", `{}`, map[string]string{"Idempotency-Key": "a b"}, 400, "Idempotency-Key"},
		{"log path escape", "GET", "/logs/../../etc/passwd", "", nil, 404, ""},
		{"encoded log path escape", "GET", "/logs/..%2f..%2fetc%2fpasswd", "", nil, 404, ""},
		{"absolute log path", "GET", "/logs//etc/passwd", "", nil, 404, ""},
		{"bad limit", "GET", "/runs?limit=1000", "", nil, 400, "limit="},
		{"bad before", "GET", "/runs?before=x", "", nil, 400, "before="},
		{"unknown route", "GET", "/nope", "", nil, 404, "no such route"},
		{"wrong method", "DELETE", "/runs/1", "", nil, 405, "not allowed"},
	}
	for _, tt := range tests {
		var body io.Reader
		switch {
		case tt.header["X-Test-Chunked"] != "":
			body = io.MultiReader(strings.NewReader(tt.body)) // no length: sent chunked
		case tt.body != "":
			body = strings.NewReader(tt.body)
		}
		r := s.do(tt.method, tt.path, body, tt.header)
		require.Equal(t, tt.status, r.status, "%s: %s", tt.desc, r.body)
		require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), tt.desc)
		p := r.json(t)
		require.Equal(t, float64(tt.status), p["status"], tt.desc)
		require.Equal(t, http.StatusText(tt.status), p["title"], tt.desc)
		require.Contains(t, p["detail"], tt.detail, tt.desc)
	}
	list := s.get("/runs").json(t)
	require.Empty(t, list["runs"], "no bad request may start a run")
	require.NoFileExists(t, "/tmp/pwned")
}

func TestIdempotentTrigger(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{pipeline: "build: \"true\"\n"})
	key := map[string]string{"Idempotency-Key": "ci-job-77"}
	first := s.do("POST", "/rebuild", strings.NewReader(`{"ref":"main"}`), key)
	require.Equal(t, http.StatusAccepted, first.status)
	again := s.do("POST", "/rebuild", strings.NewReader(`{"ref":"main"}`), key)
	require.Equal(t, http.StatusAccepted, again.status)
	require.Equal(t, first.json(t)["run_id"], again.json(t)["run_id"])
	require.Empty(t, again.json(t)["superseded"])
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	other := s.do("POST", "/rebuild", strings.NewReader(`{"ref":"other"}`), key)
	require.Equal(t, http.StatusUnprocessableEntity, other.status)
	require.Len(t, s.get("/runs").json(t)["runs"], 1)
}

func TestTokenGuardsMutations(t *testing.T) {
	t.Parallel()
	proj := newProject(t, map[string]string{"VERSION": "1.0.0\n"})
	s := startStack(t, proj, stackOpts{pipeline: "build: \"true\"\n", token: "s3cret"})
	r := s.do("POST", "/rebuild", nil, nil)
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
	r = s.do("POST", "/rebuild", nil, map[string]string{"Authorization": "Bearer wrong"})
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.NotContains(t, string(r.body), "s3cret")
	r = s.do("POST", "/rebuild", nil, map[string]string{"Authorization": "Bearer s3cret"})
	require.Equal(t, http.StatusAccepted, r.status)
	require.Equal(t, http.StatusOK, s.get("/runs/1").status, "reads stay open without SANDO_READ_TOKEN")
}
