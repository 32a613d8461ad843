// Package logstore keeps one step's log in Redis, the only thing a fleet
// of workers shares, so the API serves it whichever worker wrote it and
// after that worker is gone, for as long as the run is retained.
//
// A Writer takes a build's combined output (next to a local file, through
// io.MultiWriter). It never blocks on Redis and never fails the build: it
// buffers in memory and a background flusher APPENDs the stream to a live
// key every FlushEvery (or at FlushBytes). Past Cap bytes the middle is
// cut: the first Cap/2 bytes stream live, the last Cap-Cap/2 are kept in a
// ring and stored at Close, with a one-line Marker at the cut. Close
// stores the final stream gzipped, in members of 1 MiB so a Range read
// decompresses one member, and publishes on the caller's events channel.
//
// What a reader sees while a log is live is always a prefix of the final
// stream (head, then marker and tail at Close), so byte offsets — a Range,
// a follower's position — stay valid across the step's end. A log past
// Cap/2 shows nothing new live until Close adds the marker and the tail.
//
// States of one log (see keys.go for the keys):
//
//	(none) --first flush or Close--> live --Close--> done --Delete--> (none)
//	live|done --a new Writer of the same base--> live (started afresh)
//
// Readers: Open gives an io.ReadSeeker for http.ServeContent (Range);
// Follow streams from an offset until the log is done, one cheap script
// per look; Delete drops logs for retention.
//
// Every function takes the caller's base key, which carries the hash tag
// (sando:{<pipeline>}:log:<run>:<step>), and derives its keys by suffix,
// so all of a log's keys share one Redis Cluster slot.
package logstore
