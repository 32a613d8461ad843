package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"sando.dev/sando/client"
)

// Exit codes; the package comment and usageText explain them.
const (
	exitPassed      = 0
	exitFailed      = 1
	exitAborted     = 2
	exitUsage       = 3
	exitAuth        = 4
	exitUnavailable = 5
	exitTimeout     = 6
	exitInterrupted = 130
)

const defaultURL = "http://127.0.0.1:8080"

const usageText = `sandoctl drives a Sando server from CI scripts.

Usage:
  sandoctl rebuild [--pipeline P] [--sha S | --ref R] [--wait] [--timeout D] [--idempotency-key K]
      Start a run (of pipeline P, when the server has several). Prints its id alone on stdout (its URL on stderr), so
      id=$(sandoctl rebuild) works. With --wait, prints "run ID: URL" and
      then watches the run like watch, exiting with its result.
  sandoctl watch ID [--timeout D]
      Follow a run to its end: one line per phase change and per gate
      status change ("run 7: compiling", "run 7: gate unit passed"), a
      progress line with the elapsed time when stdout is a terminal, then
      the result ("run 7 passed", "run 7 failed: <failure summary>").
  sandoctl status [ID] [--pipeline P] [--json] [--timeout D]
      A run's view as readable lines; without ID, the /state of pipeline P
      (what is deployed, what builds; P is needed when the server has
      several). --json prints the server's JSON.
  sandoctl list [--pipeline P] [--limit N] [--before ID] [--json] [--timeout D]
      Runs, newest first: pipeline P's, or every pipeline's.
  sandoctl logs ID STEP [--follow] [--timeout D]
  sandoctl logs LOG_REF [--follow] [--timeout D]
      Write a step's log to stdout. STEP is fetch, compile, stage or
      gate-KIND (e.g. gate-unit); LOG_REF is a gate's log_ref such as
      7/gate-unit.log. --follow streams until the step ends.
  sandoctl cancel ID [--timeout D]
      Abort a building run.
  sandoctl open ID [--browser] [--timeout D]
      Print the URL of run ID's page (what a person opens from a red
      check); --browser also opens it with xdg-open (open on macOS).
  sandoctl cache clear PIPELINE [--timeout D]
      Clear the pipeline's build caches (SANDO_CACHE_DIR and the reused
      worktrees) on every worker: each wipes them before a run takes them
      next. Runs building now keep theirs.

  Flags may come before or after the arguments. --timeout D (e.g. 90s,
  10m) bounds the whole command; 0, the default, means no limit.
  "sandoctl COMMAND -h" lists a command's flags.

Environment:
  SANDO_URL    the server (default http://127.0.0.1:8080)
  SANDO_TOKEN  sent as "Authorization: Bearer <token>" when set; never printed
  SANDO_PIPELINE  the default of --pipeline

  Requests retry transient failures (connection refused or reset, 502,
  503, 504) with backoff from 200ms doubling to 5s, honouring
  Retry-After, for up to 60s per request or until --timeout.

  rebuild always sends an Idempotency-Key, so a retried POST never starts
  a second run: --idempotency-key K; else under GitHub Actions one made of
  GITHUB_REPOSITORY, GITHUB_RUN_ID, GITHUB_RUN_ATTEMPT; else under GitLab
  CI one made of CI_PROJECT_ID, CI_JOB_ID; else a random one. The derived
  keys include a hash of --pipeline/--sha/--ref: a job may build several
  pipelines and commits, the
  same commit asked twice in one job attempt is one run, and a re-run job
  starts a new run.

Exit codes:
  0    the run passed; for commands that do not wait on a run, success
  1    the run failed (its failure summary is printed); cancel: the run
       had already passed or failed
  2    the run was aborted (canceled, or superseded by a newer rebuild)
  3    the run or log does not exist, the server refused the request as
       malformed (400, 422), or a usage error
  4    authentication refused (401, 403): check SANDO_TOKEN
  5    the server is unreachable or unavailable past the retries (or
       --timeout), answers 5xx, or answers something unreadable
  6    --timeout reached while the run is still building (it keeps
       running; sandoctl cancel stops it)
  130  interrupted
`

// env is what the command reads and writes, injected for tests.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	tty            bool // stdout is a terminal: draw a progress line
}

type cli struct {
	env
	c    *client.Client
	base string // SANDO_URL without a trailing slash, credentials removed for printing
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usageText)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(e.stdout, usageText)
		return exitPassed
	}
	commands := map[string]func(*cli, context.Context, []string) int{
		"rebuild": (*cli).rebuild, "watch": (*cli).watchCmd, "status": (*cli).status,
		"list": (*cli).list, "logs": (*cli).logs, "cancel": (*cli).cancel, "open": (*cli).open,
		"cache": (*cli).cache,
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "sandoctl: unknown command %q (sandoctl -h lists them)\n", args[0])
		return exitUsage
	}
	raw := strings.TrimRight(cmp.Or(e.getenv("SANDO_URL"), defaultURL), "/")
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(e.stderr, "sandoctl: SANDO_URL=%q: want http(s)://host[:port]\n", redact(raw))
		return exitUsage
	}
	c := client.New(raw, e.getenv("SANDO_TOKEN"))
	c.UserAgent = "sandoctl"
	return cmd(&cli{env: e, c: c, base: u.Redacted()}, ctx, args[1:])
}

func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable)"
}

// pipelineFlag adds --pipeline, whose default is SANDO_PIPELINE.
func (cl *cli) pipelineFlag(fs *flag.FlagSet, what string) *string {
	return fs.String("pipeline", cl.getenv("SANDO_PIPELINE"),
		what+" of pipeline `P` (default $SANDO_PIPELINE; needed when the server has several)")
}

// flags makes a command's flag set; every command has --timeout.
func (cl *cli) flags(name, synopsis string) (*flag.FlagSet, *time.Duration) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(cl.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: sandoctl %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\nsandoctl -h explains the environment and the exit codes.\n")
	}
	timeout := fs.Duration("timeout", 0, "give up after `D` (e.g. 90s, 10m); 0: no limit")
	return fs, timeout
}

// parse parses args with flags allowed anywhere among them and checks
// the number of the other arguments. When ok is false, the command
// exits with code.
func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int) (pos []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitPassed, false
			}
			return nil, exitUsage, false // the flag package said why
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) < minArgs || len(pos) > maxArgs {
		if len(pos) < minArgs {
			fmt.Fprintf(fs.Output(), "sandoctl %s: missing arguments\n", fs.Name())
		} else {
			fmt.Fprintf(fs.Output(), "sandoctl %s: unexpected argument %q\n", fs.Name(), pos[maxArgs])
		}
		fs.Usage()
		return nil, exitUsage, false
	}
	return pos, 0, true
}

// oneRun parses the arguments of a command on one run: its id and flags.
// When ok is false, the command exits with code.
func (cl *cli) oneRun(fs *flag.FlagSet, args []string) (id int64, code int, ok bool) {
	pos, code, ok := parse(fs, args, 1, 1)
	if !ok {
		return 0, code, false
	}
	id, err := runID(pos[0])
	if err != nil {
		return 0, cl.fail(err, ""), false
	}
	return id, 0, true
}

func runID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usageError{fmt.Sprintf("run id %q is not a positive integer", s)}
	}
	return id, nil
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

// fail prints err and returns its exit code. what names the object of
// the request, for a 404 ("run 7").
func (cl *cli) fail(err error, what string) int {
	status := client.StatusCode(err)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(cl.stderr, "sandoctl: %v\n", err)
		return exitUsage
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(cl.stderr, "sandoctl: interrupted")
		return exitInterrupted
	case errors.Is(err, client.ErrUnavailable):
		fmt.Fprintf(cl.stderr, "sandoctl: %s: %v\n", cl.base, err)
		return exitUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(cl.stderr, "sandoctl: %s: no answer within --timeout\n", cl.base)
		return exitUnavailable
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		fmt.Fprintf(cl.stderr, "sandoctl: %s: %v (check SANDO_TOKEN)\n", cl.base, err)
		return exitAuth
	case status == http.StatusNotFound && what != "":
		fmt.Fprintf(cl.stderr, "sandoctl: %s does not exist\n", what)
		return exitUsage
	case status >= 400 && status < 500:
		fmt.Fprintf(cl.stderr, "sandoctl: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(cl.stderr, "sandoctl: %s: %v\n", cl.base, err)
	return exitUnavailable
}

func (cl *cli) rebuild(ctx context.Context, args []string) int {
	fs, timeout := cl.flags("rebuild", "rebuild [--pipeline P] [--sha S | --ref R] [--wait] [--timeout D] [--idempotency-key K]")
	pipeline := cl.pipelineFlag(fs, "start a run")
	sha := fs.String("sha", "", "build commit `S` (7 to 40 hex digits)")
	ref := fs.String("ref", "", "build branch or tag `R` (default: the pipeline's branch)")
	wait := fs.Bool("wait", false, "watch the run to its end and exit with its result")
	key := fs.String("idempotency-key", "", "send Idempotency-Key `K` (default: derived from the CI job, else random)")
	if _, code, ok := parse(fs, args, 0, 0); !ok {
		return code
	}
	if *sha != "" && *ref != "" {
		return cl.fail(usageError{"rebuild: give --sha or --ref, not both"}, "")
	}
	k := cmp.Or(*key, ciKey(cl.getenv, *pipeline, *sha, *ref), "sandoctl-"+randomHex())
	ctx, cancel := withTimeout(ctx, *timeout)
	defer cancel()
	rb, err := cl.c.Rebuild(ctx, client.RebuildRequest{Pipeline: *pipeline, SHA: *sha, Ref: *ref, IdempotencyKey: k})
	if err != nil {
		if client.StatusCode(err) == http.StatusUnprocessableEntity {
			fmt.Fprintf(cl.stderr, "sandoctl: Idempotency-Key %q already started a run for another --sha/--ref\n", k)
		}
		return cl.fail(err, "")
	}
	link := cl.base + rb.URL
	if *wait {
		fmt.Fprintf(cl.stdout, "run %d: %s\n", rb.RunID, link)
	} else {
		fmt.Fprintln(cl.stdout, rb.RunID)
		fmt.Fprintf(cl.stderr, "run %d: %s\n", rb.RunID, link)
	}
	if rb.Replayed {
		fmt.Fprintf(cl.stderr, "run %d was already started with Idempotency-Key %q\n", rb.RunID, k)
	}
	for _, old := range rb.Superseded {
		fmt.Fprintf(cl.stderr, "run %d superseded (aborted)\n", old)
	}
	if !*wait {
		return exitPassed
	}
	return cl.watch(ctx, rb.RunID, *timeout)
}

// ciKey derives an Idempotency-Key from the CI job, "" outside CI. Without
// a pipeline it is the key of earlier versions.
func ciKey(getenv func(string) string, pipeline, sha, ref string) string {
	what := "sha=" + strings.ToLower(sha) + "\x00ref=" + ref
	if pipeline != "" {
		what += "\x00pipeline=" + pipeline
	}
	sum := sha256.Sum256([]byte(what))
	h := hex.EncodeToString(sum[:6])
	var parts []string
	switch {
	case getenv("GITHUB_RUN_ID") != "":
		parts = []string{"sandoctl-gh", getenv("GITHUB_REPOSITORY"), getenv("GITHUB_RUN_ID"),
			cmp.Or(getenv("GITHUB_RUN_ATTEMPT"), "1"), h}
	case getenv("CI_JOB_ID") != "":
		parts = []string{"sandoctl-gl", getenv("CI_PROJECT_ID"), getenv("CI_JOB_ID"), h}
	default:
		return ""
	}
	k := []byte(strings.Join(parts, "-"))
	for i, b := range k { // the server takes visible ASCII only, at most 255
		if b < 0x21 || b > 0x7e {
			k[i] = '_'
		}
	}
	if len(k) > 255 {
		k = k[len(k)-255:]
	}
	return string(k)
}

func (cl *cli) watchCmd(ctx context.Context, args []string) int {
	fs, timeout := cl.flags("watch", "watch ID [--timeout D]")
	id, code, ok := cl.oneRun(fs, args)
	if !ok {
		return code
	}
	ctx, cancel := withTimeout(ctx, *timeout)
	defer cancel()
	return cl.watch(ctx, id, *timeout)
}

// watch follows run id to its end and returns the exit code of its result.
func (cl *cli) watch(ctx context.Context, id int64, timeout time.Duration) int {
	p := &printer{out: cl.stdout, tty: cl.tty, id: id}
	stop := p.startProgress()
	last, err := cl.c.Watch(ctx, id, p.update)
	stop()
	if err != nil {
		if last != nil && errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, client.ErrUnavailable) {
			fmt.Fprintf(cl.stderr, "sandoctl: --timeout %s reached: run %d is still building (%s); it keeps running\n",
				timeout, id, last.Phase)
			return exitTimeout
		}
		return cl.fail(err, fmt.Sprintf("run %d", id))
	}
	return p.result(last)
}

func (cl *cli) status(ctx context.Context, args []string) int {
	fs, timeout := cl.flags("status", "status [ID] [--pipeline P] [--json] [--timeout D]")
	pipeline := cl.pipelineFlag(fs, "without ID, the state")
	asJSON := fs.Bool("json", false, "print the server's JSON")
	pos, code, ok := parse(fs, args, 0, 1)
	if !ok {
		return code
	}
	ctx, cancel := withTimeout(ctx, *timeout)
	defer cancel()
	if len(pos) == 0 {
		st, err := cl.c.State(ctx, client.StateOptions{Pipeline: *pipeline})
		if err != nil {
			return cl.fail(err, pipelineWhat(*pipeline))
		}
		if *asJSON {
			fmt.Fprintf(cl.stdout, "%s\n", st.Raw)
		} else {
			printState(cl.stdout, st)
		}
		return exitPassed
	}
	id, err := runID(pos[0])
	if err != nil {
		return cl.fail(err, "")
	}
	r, err := cl.c.Get(ctx, id)
	if err != nil {
		return cl.fail(err, fmt.Sprintf("run %d", id))
	}
	if *asJSON {
		fmt.Fprintf(cl.stdout, "%s\n", r.Raw)
	} else {
		printRun(cl.stdout, r, time.Now())
	}
	return exitPassed
}

func (cl *cli) list(ctx context.Context, args []string) int {
	fs, timeout := cl.flags("list", "list [--pipeline P] [--limit N] [--before ID] [--json] [--timeout D]")
	pipeline := cl.pipelineFlag(fs, "only the runs")
	limit := fs.Int("limit", 20, "show at most `N` runs (1 to 100)")
	before := fs.Int64("before", 0, "only runs older than run `ID`")
	asJSON := fs.Bool("json", false, "print the server's JSON")
	if _, code, ok := parse(fs, args, 0, 0); !ok {
		return code
	}
	ctx, cancel := withTimeout(ctx, *timeout)
	defer cancel()
	l, err := cl.c.List(ctx, client.ListOptions{Limit: *limit, Before: *before, Pipeline: *pipeline})
	if err != nil {
		return cl.fail(err, pipelineWhat(*pipeline))
	}
	if *asJSON {
		fmt.Fprintf(cl.stdout, "%s\n", l.Raw)
	} else {
		printList(cl.stdout, l.Runs)
	}
	return exitPassed
}

// pipelineWhat names pipeline for a 404, "" for none.
func pipelineWhat(pipeline string) string {
	if pipeline == "" {
		return ""
	}
	return "pipeline " + strconv.Quote(pipeline)
}

func (cl *cli) logs(ctx context.Context, args []string) int {
	fs, timeout := cl.flags("logs", "logs ID STEP [--follow] [--timeout D]  |  sandoctl logs LOG_REF [--follow] [--timeout D]")
	follow := fs.Bool("follow", false, "stream the log until the step ends")
	pos, code, ok := parse(fs, args, 1, 2)
	if !ok {
		return code
	}
	var ref string
	var id int64
	switch {
	case len(pos) == 2:
		var err error
		if id, err = runID(pos[0]); err != nil {
			return cl.fail(err, "")
		}
		step := strings.TrimSuffix(pos[1], ".log")
		if step == "" || strings.Contains(step, "/") {
			return cl.fail(usageError{fmt.Sprintf("logs: step %q: want fetch, compile, stage or gate-KIND", pos[1])}, "")
		}
		ref = fmt.Sprintf("%d/%s.log", id, step)
	case strings.Contains(pos[0], "/"):
		ref = strings.TrimPrefix(pos[0], "/")
		first, _, _ := strings.Cut(ref, "/")
		id, _ = strconv.ParseInt(first, 10, 64)
	default:
		return cl.fail(usageError{fmt.Sprintf("logs: %q: want ID STEP (e.g. 7 compile) or a LOG_REF (e.g. 7/gate-unit.log)", pos[0])}, "")
	}
	ctx, cancel := withTimeout(ctx, *timeout)
	defer cancel()
	rc, err := cl.c.Logs(ctx, ref, *follow)
	// Following a step that has not started yet: wait for its log while
	// the run builds.
	for *follow && id > 0 && client.StatusCode(err) == http.StatusNotFound {
		r, gerr := cl.c.Get(ctx, id)
		if gerr != nil || r.Result.Terminal() {
			break
		}
		select {
		case <-ctx.Done():
			return cl.fail(ctx.Err(), "")
		case <-time.After(time.Second):
		}
		rc, err = cl.c.Logs(ctx, ref, true)
	}
	if err != nil {
		what := "log " + ref
		if step, ok := strings.CutSuffix(ref[strings.Index(ref, "/")+1:], ".log"); ok &&
			client.StatusCode(err) == http.StatusNotFound && !strings.HasPrefix(step, "gate-") &&
			step != "fetch" && step != "compile" && step != "stage" {
			what += " (gate logs are gate-KIND, e.g. gate-" + step + ")"
		}
		return cl.fail(err, what)
	}
	defer rc.Close()
	if _, err := io.Copy(cl.stdout, rc); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			fmt.Fprintf(cl.stderr, "sandoctl: --timeout %s reached while following %s\n", *timeout, ref)
			return exitTimeout
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return cl.fail(ctx.Err(), "")
		}
		fmt.Fprintf(cl.stderr, "sandoctl: %s: log stream of %s broken: %v\n", cl.base, ref, err)
		return exitUnavailable
	}
	return exitPassed
}

func (cl *cli) cancel(ctx context.Context, args []string) int {
	fs, timeout := cl.flags("cancel", "cancel ID [--timeout D]")
	id, code, ok := cl.oneRun(fs, args)
	if !ok {
		return code
	}
	ctx, cancel := withTimeout(ctx, *timeout)
	defer cancel()
	r, err := cl.c.Cancel(ctx, id)
	if client.StatusCode(err) == http.StatusConflict {
		// Already finished: by an earlier cancel (maybe our own first
		// attempt, its answer lost) or on its own.
		if r, gerr := cl.c.Get(ctx, id); gerr == nil {
			if r.Result == client.ResultAborted {
				fmt.Fprintf(cl.stdout, "run %d aborted: %s\n", id, r.FailureSummary)
				return exitPassed
			}
			fmt.Fprintf(cl.stderr, "sandoctl: run %d already %s; nothing to cancel\n", id, r.Result)
			return exitFailed
		}
	}
	if err != nil {
		return cl.fail(err, fmt.Sprintf("run %d", id))
	}
	fmt.Fprintf(cl.stdout, "run %d aborted: %s\n", id, r.FailureSummary)
	return exitPassed
}

// open prints a run's page URL once the server says the run exists, so a
// mistyped id exits 3 rather than printing a dead link.
func (cl *cli) open(ctx context.Context, args []string) int {
	fs, timeout := cl.flags("open", "open ID [--browser] [--timeout D]")
	browser := fs.Bool("browser", false, "also open the page in the desktop's browser (xdg-open, or open on macOS)")
	id, code, ok := cl.oneRun(fs, args)
	if !ok {
		return code
	}
	ctx, cancel := withTimeout(ctx, *timeout)
	defer cancel()
	if _, err := cl.c.Get(ctx, id); err != nil {
		return cl.fail(err, fmt.Sprintf("run %d", id))
	}
	page := cl.base + "/runs/" + strconv.FormatInt(id, 10)
	fmt.Fprintln(cl.stdout, page)
	if !*browser {
		return exitPassed
	}
	opener := "xdg-open"
	if runtime.GOOS == "darwin" {
		opener = "open"
	}
	if err := exec.CommandContext(ctx, opener, page).Run(); err != nil {
		fmt.Fprintf(cl.stderr, "sandoctl: %s %s: %v\n", opener, page, err)
		return exitUsage
	}
	return exitPassed
}

func (cl *cli) cache(ctx context.Context, args []string) int {
	fs, timeout := cl.flags("cache", "cache clear PIPELINE [--timeout D]")
	pos, code, ok := parse(fs, args, 2, 2)
	if !ok {
		return code
	}
	if pos[0] != "clear" {
		return cl.fail(usageError{fmt.Sprintf("cache %s: the one cache command is clear (sandoctl cache clear PIPELINE)", pos[0])}, "")
	}
	ctx, cancel := withTimeout(ctx, *timeout)
	defer cancel()
	out, err := cl.c.ClearCache(ctx, pos[1])
	if err != nil {
		return cl.fail(err, fmt.Sprintf("pipeline %q", pos[1]))
	}
	fmt.Fprintf(cl.stdout, "pipeline %s: caches cleared (generation %d): %s\n", out.Pipeline, out.Generation, out.Detail)
	return exitPassed
}
