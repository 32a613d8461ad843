package failure

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
)

// cleanLine turns one raw line of output into the text a terminal would have
// left on screen, trimmed at both ends:
//   - a trailing "\r" (CRLF endings, or a tty's "\r\n") is ignored, and of the
//     rest only the text after the last "\r" is kept: progress bars redraw a
//     line with "\r" and only their last frame is visible;
//   - ANSI escape sequences (CSI such as colours and "erase line", OSC such as
//     hyperlinks, and the short ESC forms) are removed;
//   - backspace erases the previous rune, other control characters except tab
//     are dropped, and invalid UTF-8 becomes U+FFFD, so the result is always
//     valid UTF-8 with no line breaks.
//
// With limit > 0 it stops once the text is known to be longer than limit
// runes and returns it without right-trimming (more than limit runes), so the
// caller's Truncate still marks the cut; this keeps a huge last line cheap.
// limit == 0 cleans the whole line.
func cleanLine(raw []byte, limit int) string {
	raw = bytes.TrimRight(raw, "\r\n")
	if i := bytes.LastIndexByte(raw, '\r'); i >= 0 {
		raw = raw[i+1:]
	}
	out := make([]byte, 0, min(len(raw), 256))
	n := 0 // runes in out
	for i := 0; i < len(raw); {
		if raw[i] == 0x1b {
			i = skipEscape(raw, i+1)
			continue
		}
		r, size := utf8.DecodeRune(raw[i:])
		i += size
		switch {
		case r == 0x9b: // the one-byte-CSI form, as a UTF-8 rune
			i = skipCSI(raw, i)
			continue
		case r == '\b':
			if n > 0 {
				_, last := utf8.DecodeLastRune(out)
				out = out[:len(out)-last]
				n--
			}
			continue
		case r != '\t' && (r < 0x20 || (r >= 0x7f && r < 0xa0)):
			continue
		case unicode.IsSpace(r) && (n == 0 || (limit > 0 && n >= limit)):
			// Leading space is trimmed; past the limit, space only matters
			// if more text follows, which the next case notices.
			continue
		case limit > 0 && n >= limit:
			return string(utf8.AppendRune(out, r))
		}
		out = utf8.AppendRune(out, r) // RuneError (invalid input) is U+FFFD
		n++
	}
	return strings.TrimRightFunc(string(out), unicode.IsSpace)
}

// skipEscape returns the index after the escape sequence whose ESC byte was
// just before raw[i]. Unknown or unterminated sequences drop only what was
// recognised, so ordinary text after a stray ESC survives.
func skipEscape(raw []byte, i int) int {
	if i >= len(raw) {
		return i
	}
	switch raw[i] {
	case '[':
		return skipCSI(raw, i+1)
	case ']', 'P', 'X', '^', '_': // OSC, DCS, SOS, PM, APC: strings ended by BEL or ST
		return skipString(raw, i+1)
	}
	for i < len(raw) && raw[i] >= 0x20 && raw[i] <= 0x2f { // intermediates, e.g. ESC ( B
		i++
	}
	if i < len(raw) && raw[i] >= 0x30 && raw[i] <= 0x7e {
		i++
	}
	return i
}

// skipCSI skips parameter bytes, intermediate bytes and the final byte of a
// Control Sequence (ECMA-48 5.4).
func skipCSI(raw []byte, i int) int {
	for i < len(raw) && raw[i] >= 0x30 && raw[i] <= 0x3f {
		i++
	}
	for i < len(raw) && raw[i] >= 0x20 && raw[i] <= 0x2f {
		i++
	}
	if i < len(raw) && raw[i] >= 0x40 && raw[i] <= 0x7e {
		i++
	}
	return i
}

// skipString skips a control string up to and including its terminator: BEL,
// ESC \ or the C1 ST rune; unterminated, it runs to the end of the line.
func skipString(raw []byte, i int) int {
	for i < len(raw) {
		switch {
		case raw[i] == 0x07:
			return i + 1
		case raw[i] == 0x1b && i+1 < len(raw) && raw[i+1] == '\\':
			return i + 2
		case raw[i] == 0xc2 && i+1 < len(raw) && raw[i+1] == 0x9c:
			return i + 2
		}
		i++
	}
	return i
}

// oneLine cleans a caller-supplied string (kind, fallback) that might hold
// line breaks or colour codes, joining its non-empty lines with spaces.
func oneLine(s string) string {
	var parts []string
	for l := range strings.Lines(s) {
		if c := cleanLine([]byte(l), MaxLen); c != "" {
			parts = append(parts, c)
		}
	}
	return strings.Join(parts, " ")
}
