package failure

import (
	"bytes"
	"encoding/json"
	"strings"
)

// A line is one cleaned line of output with the indentation it had: test
// runners nest a test's message under its name, so the indent says where a
// test's block ends.
type line struct {
	text   string // as cleanLine leaves it: trimmed, no escapes
	indent int    // leading blanks of the raw line (a tab counts as one)
}

// splitLines cleans every non-empty line of the scanned part of output.
// Output of `go test -json` is first turned back into the text the tests
// printed (see goJSONText).
func splitLines(output []byte) []line {
	output = scanned(output)
	if text, ok := goJSONText(output); ok {
		output = text
	}
	return linesOf(output)
}

// endWindow is how much of the end of an output longer than scanLimit
// endLines reads: a script's last words are at the real end of its
// output, which the scanned part does not reach.
const endWindow = 64 << 10

// endLines is the lines of the end of output when it is longer than
// scanLimit, else ls (the lines of all of it).
func endLines(output []byte, ls []line) []line {
	if len(output) <= scanLimit {
		return ls
	}
	end := output[len(output)-endWindow:]
	return linesOf(end[bytes.IndexByte(end, '\n')+1:]) // from the first whole line
}

func linesOf(output []byte) []line {
	var ls []line
	for raw := range bytes.Lines(output) {
		text := cleanLine(raw, 0)
		if text == "" {
			continue
		}
		ls = append(ls, line{text: text, indent: indentOf(raw)})
	}
	return ls
}

func indentOf(raw []byte) int {
	if i := bytes.LastIndexByte(bytes.TrimRight(raw, "\r\n"), '\r'); i >= 0 {
		raw = raw[i+1:]
	}
	return len(raw) - len(bytes.TrimLeft(raw, " \t"))
}

// testEvent is the part of a test2json event (go test -json) that carries
// text: "output" events of tests and packages, and since Go 1.24 the
// "build-output" events of packages that do not compile.
type testEvent struct {
	Action string
	Output *string
}

// goJSONText joins the Output of every event when output is a stream of
// test2json events (lines that are not events, such as a vet message on
// stderr, are kept as they are). It reports false when the first line is
// not an event.
func goJSONText(output []byte) ([]byte, bool) {
	trimmed := bytes.TrimLeft(output, " \t\r\n")
	if !bytes.HasPrefix(trimmed, []byte(`{"`)) {
		return nil, false
	}
	var text bytes.Buffer
	events := 0
	for raw := range bytes.Lines(trimmed) {
		var ev testEvent
		if bytes.HasPrefix(raw, []byte(`{"`)) && json.Unmarshal(raw, &ev) == nil && ev.Action != "" {
			events++
			if ev.Output != nil {
				text.WriteString(*ev.Output)
			}
			continue
		}
		text.Write(raw)
	}
	return text.Bytes(), events > 0
}

// join makes one line of a test's name, where it failed and its message:
// "name: where: message", leaving out the parts that are empty.
func join(parts ...string) string {
	var kept []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ": ")
}

// block returns the lines after ls[i] that are indented more than it: what
// a runner prints under a test's name.
func block(ls []line, i int) []line {
	end := i + 1
	for end < len(ls) && ls[end].indent > ls[i].indent {
		end++
	}
	return ls[i+1 : end]
}

// baseOf shortens an absolute path (the worktree's, on the worker) to its
// file name; relative paths are kept, they already read well.
func baseOf(loc string) string {
	if strings.HasPrefix(loc, "/") {
		return loc[strings.LastIndexByte(loc, '/')+1:]
	}
	return loc
}
