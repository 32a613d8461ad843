package failure

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkSummary holds for every result of Compile and Gate: a single line of
// valid UTF-8, short enough for Sando to store, free of terminal controls.
func checkSummary(t *testing.T, got string) {
	t.Helper()
	if !utf8.ValidString(got) {
		t.Fatalf("invalid UTF-8: %q", got)
	}
	if n := utf8.RuneCountInString(got); n > MaxLen {
		t.Fatalf("%d runes > MaxLen: %q", n, got)
	}
	if strings.ContainsAny(got, "\n\r\x1b") {
		t.Fatalf("line break or escape left: %q", got)
	}
	if got != strings.TrimSpace(got) {
		t.Fatalf("not trimmed: %q", got)
	}
}

// seeds: the captured real outputs plus a few nasty shapes.
func seeds(f *testing.F) [][]byte {
	f.Helper()
	out := [][]byte{
		nil,
		[]byte("\r\r\n\x1b[\x1b]8;;\x1b\\\x1b"),
		[]byte("error: \xff\xc2\x9b31m\b\b\b\n"),
		[]byte(strings.Repeat("世", MaxLen+1)),
		[]byte("x" + strings.Repeat(" ", MaxLen) + "y"),
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	corpusFiles, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*.txt"))
	files = append(files, corpusFiles...)
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func FuzzCompile(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, output []byte) {
		checkSummary(t, Compile(output))
	})
}

func FuzzGate(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add("test", s, "exit status 1")
	}
	f.Add("a\nb\x1b[1m", []byte("FAIL"), "\r\n")
	f.Fuzz(func(t *testing.T, kind string, output []byte, fallback string) {
		checkSummary(t, Gate(kind, output, fallback))
	})
}

// Truncate must never split a rune even for strings Compile never makes.
func FuzzTruncate(f *testing.F) {
	f.Add(strings.Repeat("é", MaxLen+1))
	f.Add("\xff" + strings.Repeat("a", MaxLen))
	f.Fuzz(func(t *testing.T, s string) {
		got := Truncate(s)
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("split a rune: %q", got)
		}
		if n := utf8.RuneCountInString(got); n > MaxLen {
			t.Fatalf("%d runes", n)
		}
		if got != s && (!strings.HasSuffix(got, "…") || !strings.HasPrefix(s, strings.TrimSuffix(got, "…"))) {
			t.Fatalf("not a cut of the input: %q", got)
		}
	})
}
