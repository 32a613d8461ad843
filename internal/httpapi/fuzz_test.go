package httpapi

import (
	"errors"
	"net/http"
	"testing"

	"sando.dev/sando/internal/gitref"
)

// FuzzDecodeRebuild: whatever body POST /rebuild gets, decodeRebuild never
// panics; it refuses with a 400 problem, or accepts a sha of 7 to 40
// lower-case hex characters (or none) and a ref gitref.CheckRef accepts
// (or none).
func FuzzDecodeRebuild(f *testing.F) {
	for _, seed := range []string{
		``, ` `, `{}`, `null`, `[]`, `"x"`, `{"sha":"6d2ee1f"}`, `{"sha":"6D2EE1F188982AC0217154CEAF6A9C46732BEC6D"}`,
		`{"sha":"6d2ee1"}`, `{"sha":"6d2ee1f188982ac0217154ceaf6a9c46732bec6d0"}`, `{"sha":"zzzzzzz"}`,
		`{"ref":"main"}`, `{"ref":"release/1.2"}`, `{"ref":"-rf"}`, `{"ref":"a..b"}`, `{"ref":"x;rm -rf /"}`,
		`{"ref":"refs/tags/v1"}`, `{"sha":"abcdef0","ref":"main"}`, `{"sha":1}`, `{"ref":null}`, `{"other":1}`,
		`{"sha":"abcdef0"} {}`, `{"sha":"abcdef0"}x`, `{"ref":"\u0000"}`, `{"ref":"ma\u00efn"}`, "{\"ref\":\"\xff\"}",
		`{"sha":"abcdef0","sha":"zz"}`, `{"SHA":"abcdef0"}`, `{"ref":"@{-1}"}`, `{"ref":"HEAD~1"}`,
		`{"ref":"a;b","ref":"main"}`, `{"REF":"nope"}`, `{"ref":["main"]}`, `{"ref":{}}`, `{"ref":true}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRebuild(body)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest {
				t.Fatalf("decodeRebuild(%q): %v, want a 400", body, err)
			}
			if status, _ := statusOf(err); status != http.StatusBadRequest {
				t.Fatalf("decodeRebuild(%q): maps to %d", body, status)
			}
			return
		}
		if req.SHA != "" {
			if len(req.SHA) < 7 || len(req.SHA) > 40 {
				t.Fatalf("decodeRebuild(%q): sha %q of length %d", body, req.SHA, len(req.SHA))
			}
			for _, c := range []byte(req.SHA) {
				if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
					t.Fatalf("decodeRebuild(%q): sha %q is not lower-case hex", body, req.SHA)
				}
			}
		}
		if req.Ref != "" {
			if err := gitref.CheckRef(req.Ref); err != nil {
				t.Fatalf("decodeRebuild(%q): accepted ref %q: %v", body, req.Ref, err)
			}
		}
	})
}
