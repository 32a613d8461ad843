package pipeline

import (
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"sando.dev/sando/internal/gitref"
)

const (
	defaultName           = "default"
	defaultBranch         = "main"
	defaultTier           = "host"
	defaultGateTimeout    = 10 * time.Minute
	defaultFetchTimeout   = 2 * time.Minute
	defaultCompileTimeout = 30 * time.Minute
	defaultStageTimeout   = 5 * time.Minute
)

// Patterns are kept unanchored so error messages show them as documented.
const (
	namePattern   = `[a-z0-9][a-z0-9_.-]{0,62}`
	kindPattern   = `[a-z0-9][a-z0-9_-]{0,31}`
	envKeyPattern = `[A-Za-z_][A-Za-z0-9_]*`
)

var (
	nameRE   = anchored(namePattern)
	kindRE   = anchored(kindPattern)
	envKeyRE = anchored(envKeyPattern)
	schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)
)

func anchored(p string) *regexp.Regexp { return regexp.MustCompile(`^(?:` + p + `)$`) }

// origin is where a pipeline file came from, for the defaults that depend
// on it.
type origin struct {
	// baseDir anchors relative local repo paths; "" leaves them relative.
	baseDir string
	// stem is the name of a nameless file in a directory of pipelines: its
	// base name without extension. "" for a lone file, whose name is then
	// "default".
	stem string
}

// validate checks fields in file order and stops at the first problem, so
// the same file always yields the same error.
func (r *rawFile) validate(o origin) (p *Pipeline, field, problem string) {
	p = &Pipeline{
		Name: or(r.Name, or(o.stem, defaultName)), Branch: or(r.Branch, defaultBranch),
		VersionFile: r.VersionFile, Build: r.Build, Stage: r.Stage,
		Tier: or(r.Tier, defaultTier),
	}
	switch {
	case r.Name == "" && !nameRE.MatchString(p.Name):
		return nil, "name", fmt.Sprintf("absent, and the file name %q does not match %s; add name: or rename the file",
			p.Name, namePattern)
	case !nameRE.MatchString(p.Name):
		return nil, "name", fmt.Sprintf("%q must match %s", p.Name, namePattern)
	}
	var prob string
	if p.Repo, prob = checkRepo(r.Repo, o.baseDir); prob != "" {
		return nil, "repo", prob
	}
	if err := gitref.CheckRef(p.Branch); err != nil {
		return nil, "branch", err.Error()
	}
	if p.VersionFile != "" && !filepath.IsLocal(p.VersionFile) {
		return nil, "version_file", mustBeLocal(p.VersionFile)
	}
	if prob := checkCommand(p.Build, true); prob != "" {
		return nil, "build", prob
	}
	if prob := checkCommand(p.Stage, false); prob != "" {
		return nil, "stage", prob
	}
	if p.Gates, field, prob = checkGates(r.Gates); prob != "" {
		return nil, field, prob
	}
	if !kindRE.MatchString(p.Tier) {
		return nil, "tier", fmt.Sprintf("%q must match %s", p.Tier, kindPattern)
	}
	t := r.Timeouts
	for _, d := range []struct {
		field string
		raw   any
		def   time.Duration
		dst   *time.Duration
	}{
		{"timeouts.fetch", t.Fetch, defaultFetchTimeout, &p.Timeouts.Fetch},
		{"timeouts.compile", t.Compile, defaultCompileTimeout, &p.Timeouts.Compile},
		{"timeouts.stage", t.Stage, defaultStageTimeout, &p.Timeouts.Stage},
	} {
		if *d.dst, prob = duration(d.raw, d.def); prob != "" {
			return nil, d.field, prob
		}
	}
	if field, prob = checkEnv(r.Env); prob != "" {
		return nil, field, prob
	}
	if len(r.Env) > 0 {
		p.Env = r.Env
	}
	for i, hook := range r.Webhooks {
		if prob := checkWebhook(hook); prob != "" {
			return nil, fmt.Sprintf("webhooks[%d]", i), prob
		}
	}
	if len(r.Webhooks) > 0 {
		p.Webhooks = r.Webhooks
	}
	if r.Reuse != "" && r.Reuse != ReuseTree {
		return nil, "reuse", fmt.Sprintf("%q is not a reuse mode (the one mode is %q)", r.Reuse, ReuseTree)
	}
	p.Reuse = r.Reuse
	return p, "", ""
}

func mustBeLocal(path string) string {
	return fmt.Sprintf("%q must be a relative path inside the repository", path)
}

// checkReport accepts a path or glob that cannot leave the worktree.
func checkReport(report string) string {
	switch {
	case report == "":
		return ""
	case !filepath.IsLocal(report):
		return mustBeLocal(report)
	case strings.ContainsFunc(report, isControl):
		return fmt.Sprintf("%q contains a control character", report)
	}
	if _, err := filepath.Match(report, ""); err != nil {
		return fmt.Sprintf("%q is not a valid glob (%v)", report, err)
	}
	return ""
}

// checkWebhook accepts absolute http(s) URLs with a host.
func checkWebhook(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("%q is not an http:// or https:// URL", raw)
	}
	return ""
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkRepo keeps URLs as given and makes local paths absolute. The
// URL/scp/local split mirrors git's: a ':' before any '/' means scp-like
// [user@]host:path, so this never reinterprets something git would fetch.
func checkRepo(repo, baseDir string) (string, string) {
	switch {
	case repo == "":
		return "", "required"
	case strings.HasPrefix(repo, "-"):
		// git would parse it as an option.
		return "", fmt.Sprintf("%q must not start with \"-\"", repo)
	case strings.ContainsFunc(repo, isControl):
		return "", fmt.Sprintf("%q contains a control character", repo)
	case schemeRE.MatchString(repo):
		return repo, ""
	}
	if colon := strings.IndexByte(repo, ':'); colon > 0 {
		if slash := strings.IndexByte(repo, '/'); slash < 0 || colon < slash {
			return repo, ""
		}
	}
	if filepath.IsAbs(repo) {
		return filepath.Clean(repo), ""
	}
	return filepath.Join(baseDir, repo), ""
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// checkCommand rejects NUL early because exec would otherwise fail only when
// the phase runs, long after the file was accepted.
func checkCommand(cmd string, required bool) string {
	switch {
	case required && strings.TrimSpace(cmd) == "":
		return "required"
	case strings.ContainsRune(cmd, 0):
		return "contains a NUL byte"
	}
	return ""
}

// checkGates validates each gate in file order, then the graph its needs
// draw. A need may name a later gate, so every kind in the file counts as a
// gate while the needs are checked; a later gate's bad kind is then reported
// at that gate.
func checkGates(raw []*rawGate) ([]Gate, string, string) {
	var gates []Gate
	kinds := map[string]bool{}
	for _, g := range raw {
		if g != nil {
			kinds[g.Kind] = true
		}
	}
	seen := map[string]int{}
	for i, g := range raw {
		at := fmt.Sprintf("gates[%d]", i)
		if g == nil {
			return nil, at, "empty entry"
		}
		switch {
		case g.Kind == "":
			return nil, at + ".kind", "required"
		case !kindRE.MatchString(g.Kind):
			return nil, at + ".kind", fmt.Sprintf("%q must match %s", g.Kind, kindPattern)
		}
		if j, dup := seen[g.Kind]; dup {
			return nil, at + ".kind", fmt.Sprintf("duplicate kind %q (also gates[%d])", g.Kind, j)
		}
		seen[g.Kind] = i
		if prob := checkCommand(g.Run, true); prob != "" {
			return nil, at + ".run", prob
		}
		d, prob := duration(g.Timeout, defaultGateTimeout)
		if prob != "" {
			return nil, at + ".timeout", prob
		}
		if prob := checkReport(g.Report); prob != "" {
			return nil, at + ".report", prob
		}
		needs, prob := checkNeeds(g, kinds)
		if prob != "" {
			return nil, at + ".needs", prob
		}
		if g.Needs == nil && i > 0 {
			needs = []string{raw[i-1].Kind} // absent: the gate before it
		}
		gates = append(gates, Gate{Kind: g.Kind, Run: g.Run, Timeout: d, Needs: needs, Report: g.Report})
	}
	if i, cycle := findCycle(gates); cycle != "" {
		return nil, fmt.Sprintf("gates[%d].needs", i), "cycle " + cycle
	}
	return gates, "", ""
}

const durationHint = "(e.g. 10m, 90s)"

// duration parses a YAML scalar as a Go duration. A bare number is the most
// likely mistake (seconds? minutes?), so it gets its own message rather than
// a guessed unit.
func duration(v any, def time.Duration) (time.Duration, string) {
	switch v := v.(type) {
	case nil:
		return def, ""
	case uint64, int64, float64:
		return 0, fmt.Sprintf("%v has no unit; add one %s", v, durationHint)
	case string:
		d, err := time.ParseDuration(v)
		switch {
		case err != nil && strings.Trim(v, "0123456789.") == "" && v != "":
			return 0, fmt.Sprintf("%q has no unit; add one %s", v, durationHint)
		case err != nil:
			return 0, fmt.Sprintf("%q is not a duration %s", v, durationHint)
		case d <= 0:
			return 0, fmt.Sprintf("%q must be greater than 0", v)
		}
		return d, ""
	case bool:
		return 0, fmt.Sprintf("%v is not a duration %s", v, durationHint)
	}
	return 0, "must be a duration string " + durationHint
}

func checkEnv(env map[string]string) (string, string) {
	// Sorted so the reported problem does not depend on map iteration order.
	for _, k := range slices.Sorted(maps.Keys(env)) {
		field := "env." + k
		if !envKeyRE.MatchString(k) {
			return fmt.Sprintf("env[%q]", k), fmt.Sprintf("name must match %s", envKeyPattern)
		}
		if strings.HasPrefix(k, "SANDO_") {
			// SANDO_* carries sando's own values (e.g. SANDO_STAGE_DIR);
			// letting the file override them would misdirect the phases.
			return field, "names starting with SANDO_ are reserved"
		}
		if strings.ContainsRune(env[k], 0) {
			return field, "value contains a NUL byte"
		}
	}
	return "", ""
}
