package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"sando.dev/sando/internal/gitref"
)

// rebuildRequest is the body of POST /rebuild; every field is optional.
type rebuildRequest struct {
	SHA      string
	Ref      string
	Pipeline string // "" unless the body names one
}

// rebuildKeys are the body's keys, in the order error messages list them.
var rebuildKeys = []string{"sha", "ref", "pipeline"}

// decodeRebuild reads a POST /rebuild body strictly: a JSON object (or no
// body at all) whose keys are among rebuildKeys, each at most once, spelt
// exactly so, with a string (or null) value. encoding/json would take the
// last of two equal keys, match "REF" to ref and accept null or [] as no
// body; each of those is a 400 naming the key here. It reads tokens
// (json.Decoder.Token), not into a struct, for that: three string keys
// need no more, and no pre-release JSON module.
func decodeRebuild(body []byte) (rebuildRequest, error) {
	var req rebuildRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return req, notObject(err.Error())
	}
	if tok != json.Delim('{') {
		return req, notObject("it is " + kindOf(tok))
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return req, notObject(err.Error())
		}
		key, _ := tok.(string) // inside an object the decoder yields only string keys
		field := rebuildField(&req, key)
		if field == nil {
			return req, unknownKey(key)
		}
		if seen[key] {
			return req, badRequest(fmt.Sprintf("body: key %q is given twice", key))
		}
		seen[key] = true
		tok, err = dec.Token()
		if err != nil {
			return req, notObject(err.Error())
		}
		switch v := tok.(type) {
		case string:
			*field = v
		case nil: // null: as if the key were left out
		default:
			return req, badRequest(fmt.Sprintf("body: %q must be a string, not %s", key, kindOf(tok)))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing }
		return req, notObject(err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, badRequest("body has data after the JSON object")
	}
	return req, checkRebuild(&req)
}

// decodeRebuildFrom reads a rebuild body: a page's form post
// (application/x-www-form-urlencoded, fields named as the JSON keys) or
// else JSON. curl -d sends JSON under the form type, so a body that starts
// like a JSON object is JSON whatever its type says.
func decodeRebuildFrom(contentType string, body []byte) (rebuildRequest, error) {
	trimmed := bytes.TrimSpace(body)
	if contentType != "application/x-www-form-urlencoded" || len(trimmed) == 0 || trimmed[0] == '{' {
		return decodeRebuild(body)
	}
	var req rebuildRequest
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return req, badRequest("form body: " + err.Error())
	}
	for key, vals := range form {
		field := rebuildField(&req, key)
		if field == nil {
			return req, unknownKey(key)
		}
		if len(vals) > 1 {
			return req, badRequest(fmt.Sprintf("form body: field %q is given twice", key))
		}
		*field = vals[0]
	}
	return req, checkRebuild(&req)
}

// rebuildField is where key's value goes, or nil for a key the body may
// not have. Keys match exactly: "REF" is not "ref".
func rebuildField(req *rebuildRequest, key string) *string {
	switch key {
	case "sha":
		return &req.SHA
	case "ref":
		return &req.Ref
	case "pipeline":
		return &req.Pipeline
	}
	return nil
}

func unknownKey(key string) error {
	detail := fmt.Sprintf("body: unknown field %q", key)
	for _, k := range rebuildKeys {
		if strings.EqualFold(k, key) {
			return badRequest(detail + fmt.Sprintf(" (keys are case-sensitive: %q)", k))
		}
	}
	return badRequest(detail + " (the keys are \"" + strings.Join(rebuildKeys, "\", \"") + "\")")
}

func notObject(why string) error {
	return badRequest("body is not a JSON object {\"sha\", \"ref\", \"pipeline\"} (or empty): " + why)
}

// kindOf names a JSON token's kind for an error message.
func kindOf(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	}
	return fmt.Sprintf("%v", tok)
}

// checkRebuild validates the values: sha is hex (lower-cased here), ref
// follows git's ref-name rules; neither ever reaches a shell.
func checkRebuild(req *rebuildRequest) error {
	if req.SHA != "" {
		if err := gitref.CheckSHA(req.SHA); err != nil {
			return badRequest("sha: " + err.Error())
		}
		req.SHA = strings.ToLower(req.SHA)
	}
	if req.Ref != "" {
		if err := gitref.CheckRef(req.Ref); err != nil {
			return badRequest("ref: " + err.Error())
		}
	}
	return nil
}
