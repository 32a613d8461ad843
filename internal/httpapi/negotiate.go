package httpapi

import (
	"mime"
	"strconv"
	"strings"
)

// prefersHTML reports whether an Accept header ranks text/html above
// application/json: a browser's does ("text/html,…,*/*;q=0.8"); curl's
// "*/*", a CI client's "application/json" and no Accept at all do not, so
// a tie goes to JSON, the API's own type.
func prefersHTML(accept string) bool {
	if accept == "" || !strings.Contains(accept, "html") {
		return false // the hot path: every poll without a browser
	}
	return quality(accept, "text", "html") > quality(accept, "application", "json")
}

// quality is the q-value the most specific Accept range matching
// typ/sub gives it (RFC 9110 §12.5.1), 0 when none matches.
func quality(accept, typ, sub string) float64 {
	best, bestRank := 0.0, -1
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		t, s, _ := strings.Cut(mt, "/")
		rank := -1
		switch {
		case t == typ && s == sub:
			rank = 2
		case t == typ && s == "*":
			rank = 1
		case t == "*" && s == "*":
			rank = 0
		}
		if rank <= bestRank {
			continue
		}
		q := 1.0
		if raw, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(raw, 64); err == nil && v >= 0 && v <= 1 {
				q = v
			}
		}
		best, bestRank = q, rank
	}
	return best
}
