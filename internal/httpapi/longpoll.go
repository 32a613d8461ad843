package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sando.dev/sando/internal/runview"
	"sando.dev/sando/internal/vocab"
	"time"

	"github.com/gin-gonic/gin"
	lru "github.com/hashicorp/golang-lru/v2"
)

// maxWait caps ?wait= so a proxy's idle timeout is never the one that ends
// a long-poll.
const maxWait = 60 * time.Second

// rendered is a run view ready to send.
type rendered struct {
	body     []byte
	etag     string
	terminal bool
}

// viewCache holds rendered views of finished runs. A finished run never
// changes, so polling one costs no Redis call at all.
type viewCache = lru.Cache[int64, rendered]

func newViewCache(size int) *viewCache {
	c, err := lru.New[int64, rendered](size)
	if err != nil {
		panic(err) // only for size <= 0
	}
	return c
}

// view renders run id: from the cache when finished, else with one
// HGETALL shared by every request for the run that arrived while the
// previous read was in flight (see reads).
func (s *Server) view(ctx context.Context, id int64) (rendered, error) {
	if v, ok := s.cache.Get(id); ok {
		return v, nil
	}
	cat := s.catalog()
	return s.reads.do(id, func() (rendered, error) {
		// The read is shared: one client leaving must not fail the others.
		r, err := s.runOf(context.WithoutCancel(ctx), cat, id)
		if err != nil {
			return rendered{}, err
		}
		return s.render(r)
	})
}

// render is the one place a run becomes its JSON view and strong ETag; a
// finished run's rendering is kept, since it never changes again.
func (s *Server) render(r *vocab.Run) (rendered, error) {
	body, err := json.Marshal(runview.Of(r))
	if err != nil {
		return rendered{}, err
	}
	sum := sha256.Sum256(body)
	v := rendered{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, terminal: r.Result.Terminal()}
	if v.terminal {
		s.cache.Add(r.ID, v)
	}
	return v, nil
}

var (
	jsonType = []string{"application/json"}
	vary     = []string{"Accept"} // a browser gets the run's page instead
)

// send writes a view. It sets headers by their canonical keys: this is the
// hot path of every poll, and Header.Set would canonicalize per request.
func (s *Server) send(c *gin.Context, v rendered) {
	h := c.Writer.Header()
	h["Etag"] = []string{v.etag}
	h["Vary"] = vary
	if inm := c.Request.Header["If-None-Match"]; len(inm) > 0 && etagMatches(inm[0], v.etag) {
		c.Status(http.StatusNotModified)
		return
	}
	h["Content-Type"] = jsonType
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write(v.body)
}

func parseWait(c *gin.Context) (time.Duration, error) {
	raw, ok := c.GetQuery("wait")
	if !ok || raw == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		// Plain seconds ("30") are what many clients send.
		var n int
		if _, serr := fmt.Sscanf(raw, "%d", &n); serr != nil || fmt.Sprint(n) != raw {
			return 0, badRequest(fmt.Sprintf("wait=%q: want a duration such as 30s (at most 60s)", raw))
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 {
		return 0, badRequest(fmt.Sprintf("wait=%q: must not be negative", raw))
	}
	return min(d, maxWait), nil
}

// getRun answers GET /runs/{id}. With ?wait= and If-None-Match naming the
// view the client has, it holds the request until the run changes (200)
// or the wait ends (304). Waiters are woken through one Redis
// subscription per process (runwatch), never by polling Redis.
func (s *Server) getRun(c *gin.Context) {
	id, err := parseID(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	if accept := c.Request.Header["Accept"]; len(accept) > 0 && prefersHTML(accept[0]) {
		s.runHTML(c, id) // a browser: the page, which long-polls the JSON itself
		return
	}
	var wait time.Duration
	if c.Request.URL.RawQuery != "" { // most polls have no query: skip parsing one
		if wait, err = parseWait(c); err != nil {
			s.abort(c, err)
			return
		}
	}
	inm := c.GetHeader("If-None-Match")
	if wait == 0 || inm == "" || s.Watch == nil {
		v, err := s.view(c, id)
		if err != nil {
			s.abort(c, err)
			return
		}
		s.send(c, v)
		return
	}
	// A drain (shutdown) ends held requests with the state they have.
	ctx, stop := context.WithCancel(c)
	defer stop()
	if s.Draining != nil {
		defer context.AfterFunc(s.Draining, stop)()
	}
	deadline := time.Now().Add(wait)
	for {
		w := s.Watch.Watch(id) // before the read: no change slips between
		v, err := s.view(ctx, id)
		if err != nil {
			w.Close()
			s.abort(c, err)
			return
		}
		remaining := time.Until(deadline)
		if v.terminal && etagMatches(inm, v.etag) && remaining > 0 {
			// A finished run never changes: hold for the whole wait, as for
			// any run, so a client looping on ETag changes does not spin
			// (Consul's blocking queries do the same). Nothing to watch.
			w.Close()
			select {
			case <-time.After(remaining):
			case <-ctx.Done():
			}
			s.send(c, v) // 304
			return
		}
		if !etagMatches(inm, v.etag) || remaining <= 0 || ctx.Err() != nil {
			w.Close()
			s.send(c, v) // changed: 200; time up: 304
			return
		}
		w.Wait(ctx, remaining)
		w.Close()
	}
}
