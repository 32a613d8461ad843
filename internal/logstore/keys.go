package logstore

// Every key of one log is the caller's base key with a suffix, so all of
// them carry the base's hash tag (the caller puts the pipeline's, as in
// "sando:{app}:log:17:gate-unit") and share one Redis Cluster slot: each
// script below gets every key it touches in KEYS.
//
//	<base>:meta  hash: state ("live" or "done"), writer (the token of the
//	             Writer that holds the log), and once done: size, stored,
//	             cut, written, chunk, index (see closeScript)
//	<base>:live  string: the stream so far, APPENDed while the step runs;
//	             deleted when the log is done
//	<base>:done  string: the final stream, gzip members of chunk bytes each
//	             (one valid multi-member gzip file as a whole)
type keys struct {
	meta, live, done string
}

func keysOf(base string) keys {
	return keys{meta: base + ":meta", live: base + ":live", done: base + ":done"}
}

// all is the KEYS of every script, in this order.
func (k keys) all() []string { return []string{k.meta, k.live, k.done} }

// Keys are every Redis key a log under base may have, for a caller that
// deletes them in a script of its own (Delete does it otherwise).
func Keys(base string) []string { return keysOf(base).all() }
