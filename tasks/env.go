package tasks

import (
	"os"
	"regexp"
	"sort"
	"strings"
)

// passThrough are the worker's variables a build may need: the toolchain's
// search paths and caches, locale and temp dir. Nothing else of the
// worker's environment reaches a phase: never REDIS_URL, SANDO_TOKEN or
// whatever secret the operator exported for Sando itself.
var passThrough = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
	"GOPATH", "GOCACHE", "GOMODCACHE", "GOPROXY", "GOFLAGS", "GOTOOLCHAIN", "GONOSUMDB", "GOPRIVATE",
	"CARGO_HOME", "RUSTUP_HOME", "JAVA_HOME", "MAVEN_OPTS", "GRADLE_USER_HOME",
	"NPM_CONFIG_CACHE", "npm_config_cache", "PIP_CACHE_DIR", "PYENV_ROOT",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
	"http_proxy", "https_proxy", "no_proxy", "CC", "CXX",
}

// BaseEnv picks the pass-through variables out of environ (os.Environ()
// when nil).
func BaseEnv(environ []string) []string {
	if environ == nil {
		environ = os.Environ()
	}
	keep := map[string]bool{}
	for _, k := range passThrough {
		keep[k] = true
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if keep[k] || strings.HasPrefix(k, "LC_") {
			out = append(out, kv)
		}
	}
	return out
}

// phaseEnv is base, then the pipeline's env:, then the run's SANDO_*
// variables, which nothing may override. In env: values, $SANDO_… and
// ${SANDO_…} naming one of the run's variables are expanded
// (CARGO_TARGET_DIR: $SANDO_CACHE_DIR/target); anything else, other
// variables and a lone $ among it, is passed on as written.
func phaseEnv(base []string, pipelineEnv map[string]string, runVars map[string]string) []string {
	env := append([]string(nil), base...)
	keys := make([]string, 0, len(pipelineEnv))
	for k := range pipelineEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+expandRunVars(pipelineEnv[k], runVars))
	}
	keys = keys[:0]
	for k := range runVars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+runVars[k])
	}
	return env // exec uses the last value of a duplicated key
}

// runVarRef is a reference to a SANDO_ variable, braced or not.
var runVarRef = regexp.MustCompile(`\$(\{SANDO_[A-Z_]+\}|SANDO_[A-Z_]+)`)

func expandRunVars(v string, runVars map[string]string) string {
	return runVarRef.ReplaceAllStringFunc(v, func(ref string) string {
		name := strings.Trim(ref, "${}")
		if val, ok := runVars[name]; ok {
			return val
		}
		return ref
	})
}
