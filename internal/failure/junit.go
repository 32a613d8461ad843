package failure

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Tests counts the test cases of JUnit XML reports.
type Tests struct {
	Passed, Failed, Skipped int
}

// Add sums two counts (a gate's report glob may match several files).
func (t Tests) Add(o Tests) Tests {
	return Tests{Passed: t.Passed + o.Passed, Failed: t.Failed + o.Failed, Skipped: t.Skipped + o.Skipped}
}

// Report is what one JUnit XML file says.
type Report struct {
	Tests
	// First is the first failing test case as a summary line ("" when none
	// failed): its name, where it failed and its message.
	First string
}

// The JUnit XML that Surefire, Gradle, nextest, pytest, node's junit
// reporter, jest-junit and go-junit-report write: a <testsuites> or a lone
// <testsuite>, suites nesting suites, each <testcase> holding at most one
// <failure>, <error> or <skipped>. Surefire's <flakyFailure> and
// <rerunFailure> are retries of a test case that the outcome element (or
// its absence) already judges, so they are not read.
type junitSuite struct {
	Suites []junitSuite `xml:"testsuite"`
	Cases  []junitCase  `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Failure   *junitProblem `xml:"failure"`
	Error     *junitProblem `xml:"error"`
	Skipped   *struct{}     `xml:"skipped"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",chardata"`
}

// ErrNotJUnit is the answer for a file that is XML but not a JUnit report.
var ErrNotJUnit = errors.New("not a JUnit XML report (no <testsuites> or <testsuite> root)")

// ParseJUnit reads one JUnit XML report: counts of its test cases and the
// first failure (a failure or an error, in document order).
func ParseJUnit(data []byte) (Report, error) {
	var root struct {
		XMLName xml.Name
		junitSuite
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	if err := dec.Decode(&root); err != nil {
		return Report{}, fmt.Errorf("JUnit XML: %w", err)
	}
	var r Report
	switch root.XMLName.Local {
	case "testsuites", "testsuite":
		r.add(&root.junitSuite)
	default:
		return Report{}, ErrNotJUnit
	}
	return r, nil
}

func (r *Report) add(s *junitSuite) {
	for i := range s.Cases {
		c := &s.Cases[i]
		p := cmpProblem(c.Failure, c.Error)
		switch {
		case p != nil:
			r.Failed++
			if r.First == "" {
				r.First = Truncate(c.summary(p))
			}
		case c.Skipped != nil:
			r.Skipped++
		default:
			r.Passed++
		}
	}
	for i := range s.Suites {
		r.add(&s.Suites[i])
	}
}

func cmpProblem(a, b *junitProblem) *junitProblem {
	if a != nil {
		return a
	}
	return b
}

// summary: a failure body a runner family reads (a Rust panic, a Python
// traceback) says it best; otherwise "Class.test: File.java:12: type:
// message", the location from the stack frame of the test itself.
func (c *junitCase) summary(p *junitProblem) string {
	body := strings.TrimSpace(p.Body)
	if s, ok := firstFamily(splitLines([]byte(body))); ok {
		return s
	}
	name := c.Name
	if c.Classname != "" {
		name = shortClass(c.Classname) + "." + c.Name
	}
	msg := oneLine(p.Message)
	if msg == "" {
		msg, _, _ = strings.Cut(body, "\n")
		msg = oneLine(msg)
	} else if exceptionType.MatchString(p.Type) && !strings.Contains(msg, p.Type) {
		msg = p.Type + ": " + msg
	}
	where := frameOf(body, c.Classname, c.Name)
	if where == "" {
		for _, l := range splitLines([]byte(body)) {
			if m := pytestWhere.FindStringSubmatch(l.text); m != nil {
				where = m[1] // pytest: "tests/test_calc.py:8: AssertionError"
			}
		}
	}
	return join(name, where, msg)
}

// shortClass drops a Java package: "org.acme.CalcTest" → "CalcTest".
// Names that are not dotted identifiers ("tests/calc.test.js",
// "crate::module") are kept.
func shortClass(classname string) string {
	if javaClass.MatchString(classname) {
		return classname[strings.LastIndexByte(classname, '.')+1:]
	}
	return classname
}

var javaClass = regexp.MustCompile(`^[\w$]+(?:\.[\w$]+)+$`)

// exceptionType: a type attribute that names what was thrown
// ("java.lang.AssertionError", "AssertionError"), worth quoting; not a
// runner's category ("testCodeFailure", "test failure").
var exceptionType = regexp.MustCompile(`^(?:[\w$]+\.)+[\w$]+$|^[A-Z][\w$]*(?:Error|Exception)$`)

// frameOf finds "at pkg.Class.test(Class.java:23)" in a stack trace and
// returns "Class.java:23", or "".
func frameOf(body, classname, name string) string {
	want := classname + "." + name + "("
	for l := range strings.Lines(body) {
		l = strings.TrimSpace(l)
		if rest, ok := strings.CutPrefix(l, "at "); ok && strings.HasPrefix(rest, want) {
			return strings.TrimSuffix(rest[len(want):], ")")
		}
	}
	return ""
}
