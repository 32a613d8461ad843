package httpapi

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/logstore"
	"sando.dev/sando/runstore"
)

// A zero-length suffix range ("-0") is unsatisfiable: alone it is a 416
// problem naming the log's size, as a range past the end is; beside a
// satisfiable range it is ignored. Both stores of a log, the worker's file
// and Redis, answer alike. (http.ServeContent alone answers an empty 206
// with Content-Range "bytes 9-8/9".)
func TestLogZeroSuffixRange(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t)
	onDisk := a.diskLog("building\n")
	inRedis, err := a.store("app").Create(context.Background(), runstore.CreateRequest{})
	require.NoError(t, err)
	w := logstore.NewWriter(a.rdb, a.store("app").Keys().Log(inRedis.ID, "compile"), logstore.Options{})
	_, err = w.Write([]byte("building\n"))
	require.NoError(t, err)
	require.NoError(t, w.Close())

	for _, id := range []int64{onDisk, inRedis.ID} {
		log := "/logs/" + datadir.LogRef(id, "compile")
		for _, spec := range []string{"bytes=-0", "bytes=-000", "bytes=-0, -0"} {
			resp, body := a.do(http.MethodGet, log, "", "Range", spec)
			require.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode, "%s %s: %s", log, spec, body)
			require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), spec)
			require.Equal(t, "bytes */9", resp.Header.Get("Content-Range"), spec)
			require.Contains(t, body, "past the end of the log (9 bytes)", spec)
		}
		resp, body := a.do(http.MethodGet, log, "", "Range", "bytes=-0,0-4")
		require.Equal(t, http.StatusPartialContent, resp.StatusCode, "%s: %s", log, body)
		require.Equal(t, "bytes 0-4/9", resp.Header.Get("Content-Range"))
		require.Equal(t, "build", body)
		resp, body = a.do(http.MethodGet, log, "", "Range", "bytes=0-0")
		require.Equal(t, http.StatusPartialContent, resp.StatusCode, "the first byte is not a suffix: %s", body)
		require.Equal(t, "b", body)
		resp, body = a.do(http.MethodGet, log, "", "Range", "bytes=-3")
		require.Equal(t, http.StatusPartialContent, resp.StatusCode)
		require.Equal(t, "ng\n", body)
	}
}
