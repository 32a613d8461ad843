package monitoring

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"time"

	"sando.dev/sando/internal/httpapi"
)

// unavailable makes Asynqmon's API answer like every other route while
// Redis is away: 503 problem+json with Retry-After, where Asynqmon itself
// answers a bare 500 with the dial error. A 500 is held back until the
// handler finishes; then one ping decides whether Redis was the cause.
// Other answers stream through untouched, and the static console is never
// buffered.
func unavailable(next http.Handler, ping func(context.Context) error) http.Handler {
	if ping == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, RootPath+"/api/") {
			next.ServeHTTP(w, r)
			return
		}
		hw := &holdWriter{ResponseWriter: w}
		next.ServeHTTP(hw, r)
		if !hw.held {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if ping(ctx) != nil {
			httpapi.WriteUnavailable(w)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write(hw.body.Bytes())
	})
}

// holdWriter passes every response through except a 500, whose header and
// body it keeps for unavailable to decide on.
type holdWriter struct {
	http.ResponseWriter
	held, wrote bool
	body        bytes.Buffer
}

func (h *holdWriter) WriteHeader(status int) {
	if h.wrote {
		return
	}
	h.wrote = true
	if status == http.StatusInternalServerError {
		h.held = true
		return
	}
	h.ResponseWriter.WriteHeader(status)
}

func (h *holdWriter) Write(p []byte) (int, error) {
	if !h.wrote {
		h.WriteHeader(http.StatusOK)
	}
	if h.held {
		return h.body.Write(p)
	}
	return h.ResponseWriter.Write(p)
}
