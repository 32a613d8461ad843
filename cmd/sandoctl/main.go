// Command sandoctl drives a Sando server from CI scripts: it starts a
// rebuild, watches a run to its end, shows runs and logs, cancels runs,
// prints a run's page URL, and says how a run ended in its exit code.
//
//	sandoctl rebuild [--pipeline P] [--sha S | --ref R] [--wait] [--timeout D] [--idempotency-key K]
//	sandoctl watch ID [--timeout D]
//	sandoctl status [ID] [--pipeline P] [--json] [--timeout D]
//	sandoctl list [--pipeline P] [--limit N] [--json] [--timeout D]
//	sandoctl logs ID STEP [--follow] [--timeout D]
//	sandoctl logs LOG_REF [--follow] [--timeout D]
//	sandoctl cancel ID [--timeout D]
//	sandoctl open ID [--browser] [--timeout D]
//
// Flags may come before or after the arguments; "--" ends the flags.
//
// SANDO_URL is the server (default http://127.0.0.1:8080) and SANDO_TOKEN,
// when set, is sent as "Authorization: Bearer <token>". The token is
// never printed. SANDO_PIPELINE is the default of --pipeline, which names
// the pipeline to rebuild, list or show the state of on a server with
// several (with one it may be left out).
//
// Every request retries transient failures (connection refused or reset,
// a timed-out attempt, 502, 503, 504) with exponential backoff, 200ms
// doubling to 5s and honouring Retry-After, for up to 60s per request or
// until --timeout, whichever is sooner.
//
// rebuild always sends an Idempotency-Key, so a retried POST (by sandoctl
// or by a retried CI step) never starts a second run: --idempotency-key K
// if given; else, under GitHub Actions (GITHUB_RUN_ID set),
// "sandoctl-gh-<GITHUB_REPOSITORY>-<GITHUB_RUN_ID>-<GITHUB_RUN_ATTEMPT>-<h>";
// else, under GitLab CI (CI_JOB_ID set),
// "sandoctl-gl-<CI_PROJECT_ID>-<CI_JOB_ID>-<h>"; else a random key. <h>
// is a hash of --sha and --ref (and --pipeline, when given), so one CI
// job may rebuild different commits and pipelines; the same commit asked twice in one job attempt is the same run,
// and a re-run job (new attempt or job id) starts a new one.
//
// Exit codes:
//
//	0  the run passed; for commands that do not wait on a run, success
//	1  the run failed (its failure summary is printed); cancel: the run
//	   had already passed or failed, there was nothing to cancel
//	2  the run was aborted (canceled, or superseded by a newer rebuild)
//	3  the run (or log) does not exist, the server refused the request as
//	   malformed (400, 422), or a usage error
//	4  authentication refused (401 or 403): check SANDO_TOKEN
//	5  the server is unreachable or unavailable past the retries (or
//	   --timeout), answers 5xx, or answers something unreadable
//	6  --timeout was reached while the run was still building; the run is
//	   left running (sandoctl cancel stops it)
//	130 interrupted (SIGINT or SIGTERM)
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mattn/go-isatty"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	tty := isatty.IsTerminal(os.Stdout.Fd()) && os.Getenv("TERM") != "dumb"
	code := run(ctx, os.Args[1:], env{
		stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, tty: tty,
	})
	stop()
	os.Exit(code)
}
