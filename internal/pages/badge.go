package pages

import (
	"fmt"
	"html"
	"unicode/utf8"
)

// Badge results: the newest run that passed or failed, or none. An
// aborted run (superseded, canceled) never shows: a supersede must not
// turn a README's badge grey.
const (
	BadgePassed = "passed"
	BadgeFailed = "failed"
	BadgeNone   = "none"
)

var badgeColours = map[string]string{BadgePassed: "#4c1", BadgeFailed: "#e05d44", BadgeNone: "#9f9f9f"}

// Badge is a flat-style SVG badge, "<label> | <result>", as shields.io
// draws them. Text widths are estimated (Verdana 11px averages about 7px a
// character), which is what keeps this free of a font table.
func Badge(label, result string) []byte {
	colour, ok := badgeColours[result]
	if !ok {
		result, colour = BadgeNone, badgeColours[BadgeNone]
	}
	lw, rw := textWidth(label), textWidth(result)
	w := lw + rw
	l, r := html.EscapeString(label), html.EscapeString(result)
	return fmt.Appendf(nil, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="20" role="img" aria-label="%s: %s">`+
		`<title>%s: %s</title>`+
		`<linearGradient id="s" x2="0" y2="100%%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>`+
		`<clipPath id="r"><rect width="%d" height="20" rx="3" fill="#fff"/></clipPath>`+
		`<g clip-path="url(#r)"><rect width="%d" height="20" fill="#555"/><rect x="%d" width="%d" height="20" fill="%s"/><rect width="%d" height="20" fill="url(#s)"/></g>`+
		`<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">`+
		`<text x="%d" y="15" fill="#010101" fill-opacity=".3">%s</text><text x="%d" y="14">%s</text>`+
		`<text x="%d" y="15" fill="#010101" fill-opacity=".3">%s</text><text x="%d" y="14">%s</text>`+
		`</g></svg>`+"\n",
		w, l, r, l, r, w, lw, lw, rw, colour, w,
		lw/2, l, lw/2, l, lw+rw/2, r, lw+rw/2, r)
}

func textWidth(s string) int { return 7*utf8.RuneCountInString(s) + 10 }
