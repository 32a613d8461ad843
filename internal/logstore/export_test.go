package logstore

// WithChunk sets the uncompressed size of a done log's gzip members, so a
// test covers reads across members without megabytes of input (which the
// race detector makes slow to compress).
func WithChunk(o Options, n int) Options {
	o.chunk = n
	return o
}
