package pipeline

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Durations are decoded as any so validation can tell "10" (forgot the unit)
// from "ten" (not a duration) and give a specific message for each.
// Needs is a pointer so an absent needs (the gate before) differs from
// "needs: []" (none); "needs: null" counts as absent.
type rawGate struct {
	Kind    string    `yaml:"kind"`
	Run     string    `yaml:"run"`
	Timeout any       `yaml:"timeout"`
	Report  string    `yaml:"report"`
	Needs   *[]string `yaml:"needs"`
}

type rawTimeouts struct {
	Fetch   any `yaml:"fetch"`
	Compile any `yaml:"compile"`
	Stage   any `yaml:"stage"`
}

type rawFile struct {
	Name        string            `yaml:"name"`
	Repo        string            `yaml:"repo"`
	Branch      string            `yaml:"branch"`
	VersionFile string            `yaml:"version_file"`
	Build       string            `yaml:"build"`
	Stage       string            `yaml:"stage"`
	Gates       []*rawGate        `yaml:"gates"` // pointers expose empty "- " entries as nil
	Tier        string            `yaml:"tier"`
	Timeouts    rawTimeouts       `yaml:"timeouts"`
	Env         map[string]string `yaml:"env"`
	Webhooks    []string          `yaml:"webhooks"`
	Reuse       string            `yaml:"reuse"`
}

// decode parses to an AST first so decoder errors, which only carry a
// token, can be mapped back to the YAML path of the offending node.
func decode(name string, data []byte) (*rawFile, error) {
	var raw rawFile
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, decodeError(name, nil, err)
	}
	// Empty documents (a stray "---") are harmless; a second real one would
	// be silently ignored, which is never what the author meant.
	var body ast.Node
	for _, doc := range file.Docs {
		if doc.Body == nil {
			continue
		}
		if body != nil {
			e := &Error{File: name, Problem: "contains more than one YAML document"}
			if tk := doc.Start; tk != nil {
				e.Line = tk.Position.Line
			}
			return nil, e
		}
		body = doc.Body
	}
	if body == nil {
		return &raw, nil // validation reports the first missing required field
	}
	if err := nodeToValue(body, &raw); err != nil {
		return nil, decodeError(name, body, err)
	}
	return &raw, nil
}

// nodeToValue turns a panic of the decoder into an error: go-yaml v1.19.2
// dereferences nil on a tag before a scalar where a sequence is expected
// ("gates: !x 0", goccy/go-yaml#735), and a bad file must be a config
// error, not a crash of the API reloading it.
func nodeToValue(body ast.Node, raw *rawFile) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the YAML decoder crashed on it (%v); a tag such as !x where a list is expected is a known cause", r)
		}
	}()
	return yaml.NodeToValue(body, raw, yaml.DisallowUnknownField())
}

func decodeError(name string, root ast.Node, err error) *Error {
	e := &Error{File: name, Problem: err.Error(), Err: err}
	var ye yaml.Error
	if !errors.As(err, &ye) {
		return e
	}
	e.Problem = ye.GetMessage()
	tk := ye.GetToken()
	if tk != nil {
		e.Line = tk.Position.Line
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		// The default message names Go types, meaningless to a YAML author.
		e.Problem = fmt.Sprintf("%s was used where %s is expected", yamlKind(te.SrcType), yamlKind(te.DstType))
	}
	path := pathOf(root, tk)
	var ue *yaml.UnknownFieldError
	if errors.As(err, &ue) {
		// The token is the unknown key itself; report the mapping holding it.
		path = parentPath(path)
	}
	e.Field = path
	return e
}

func yamlKind(t reflect.Type) string {
	if t == nil {
		return "null"
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "sequence"
	case reflect.Map, reflect.Struct:
		return "mapping"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	}
	return t.String()
}

type tokenFinder struct {
	tk    *token.Token
	found ast.Node
}

func (f *tokenFinder) Visit(n ast.Node) ast.Visitor {
	if n == nil || f.found != nil {
		return nil
	}
	if n.GetToken() == f.tk {
		f.found = n
		return nil
	}
	return f
}

// pathOf returns the YAML path ("gates[1].timeout") of the node owning tk,
// or "" for the document root or when it cannot be found.
func pathOf(root ast.Node, tk *token.Token) string {
	if root == nil || tk == nil {
		return ""
	}
	f := &tokenFinder{tk: tk}
	ast.Walk(f, root)
	if f.found == nil {
		return ""
	}
	p := strings.TrimPrefix(f.found.GetPath(), "$")
	return strings.TrimPrefix(p, ".")
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}
