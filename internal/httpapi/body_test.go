package httpapi

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// A rebuild body is a JSON object with each key at most once, spelt
// exactly, holding a string: anything else is a 400 that names the key,
// or says the body must be an object.
func TestDecodeRebuildIsStrict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc, body string
		want       rebuildRequest
		detail     string // "" for accepted; else a part of the 400's detail
	}{
		{desc: "no body", body: ``},
		{desc: "blank body", body: " \n"},
		{desc: "empty object", body: `{}`},
		{desc: "sha, lower-cased", body: `{"sha":"ABCDEF0"}`, want: rebuildRequest{SHA: "abcdef0"}},
		{desc: "ref", body: `{"ref":"release/1.2"}`, want: rebuildRequest{Ref: "release/1.2"}},
		{desc: "null value is absent", body: `{"ref":null}`},
		{desc: "key twice, the first invalid", body: `{"ref":"a;b","ref":"main"}`, detail: `key "ref" is given twice`},
		{desc: "key twice, both valid", body: `{"sha":"abcdef0","sha":"abcdef1"}`, detail: `key "sha" is given twice`},
		{desc: "key in another case", body: `{"REF":"nope"}`, detail: `unknown field "REF" (keys are case-sensitive: "ref")`},
		{desc: "unknown key", body: `{"branch":"main"}`, detail: `unknown field "branch"`},
		{desc: "null body", body: `null`, detail: "not a JSON object"},
		{desc: "array body", body: `[]`, detail: "not a JSON object"},
		{desc: "string body", body: `"main"`, detail: "it is a string"},
		{desc: "number value", body: `{"sha":1234567}`, detail: `"sha" must be a string, not a number`},
		{desc: "object value", body: `{"ref":{"a":1}}`, detail: `"ref" must be a string, not an object`},
		{desc: "array value", body: `{"ref":["main"]}`, detail: `"ref" must be a string, not an array`},
		{desc: "boolean value", body: `{"ref":true}`, detail: `"ref" must be a string, not a boolean`},
		{desc: "malformed", body: `{"ref": `, detail: "not a JSON object"},
		{desc: "unclosed", body: `{"ref":"main"`, detail: "not a JSON object"},
		{desc: "trailing object", body: `{} {}`, detail: "after the JSON object"},
		{desc: "trailing junk", body: `{"sha":"abcdef0"}x`, detail: "after the JSON object"},
		{desc: "bad sha", body: `{"sha":"zzzzzzz"}`, detail: "sha:"},
		{desc: "bad ref", body: `{"ref":"-rf"}`, detail: "ref:"},
	} {
		got, err := decodeRebuild([]byte(tc.body))
		if tc.detail == "" {
			require.NoError(t, err, tc.desc)
			require.Equal(t, tc.want, got, tc.desc)
			continue
		}
		require.Error(t, err, tc.desc)
		status, detail := statusOf(err)
		require.Equal(t, http.StatusBadRequest, status, tc.desc)
		require.Contains(t, detail, tc.detail, tc.desc)
	}
}
