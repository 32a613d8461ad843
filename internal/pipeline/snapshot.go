package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
)

// SnapshotVersion is the snapshot format Marshal writes and the only one
// Unmarshal reads. Change it with any change to the snapshot's shape or
// meaning, so a worker never misreads a run's definition.
const SnapshotVersion = 1

// snapshotFile names the source in errors from Unmarshal.
const snapshotFile = "pipeline snapshot"

// snapshot is the JSON form of a validated Pipeline that travels with a run.
// Durations are Go duration strings ("10m0s", as time.Duration.String writes
// them), which read back exactly. Every field is always written, empty
// lists as [] and an empty env as {}, so one Pipeline has one encoding.
type snapshot struct {
	Version     int               `json:"version"`
	Name        string            `json:"name"`
	Repo        string            `json:"repo"`
	Branch      string            `json:"branch"`
	VersionFile string            `json:"version_file"`
	Build       string            `json:"build"`
	Stage       string            `json:"stage"`
	Gates       []snapshotGate    `json:"gates"`
	Tier        string            `json:"tier"`
	Timeouts    snapshotTimeouts  `json:"timeouts"`
	Env         map[string]string `json:"env"`
	Webhooks    []string          `json:"webhooks"`
	Reuse       string            `json:"reuse"`
}

type snapshotGate struct {
	Kind    string   `json:"kind"`
	Run     string   `json:"run"`
	Timeout string   `json:"timeout"`
	Needs   []string `json:"needs"` // resolved: an absent needs is written as the gate before
	Report  string   `json:"report"`
}

type snapshotTimeouts struct {
	Fetch   string `json:"fetch"`
	Compile string `json:"compile"`
	Stage   string `json:"stage"`
}

// Marshal encodes p as a versioned JSON snapshot, for a run to carry its
// definition as it stood when the run was made. The encoding is canonical:
// equal pipelines give equal bytes, whatever the order of their env map.
func Marshal(p *Pipeline) ([]byte, error) {
	s := snapshot{
		Version: SnapshotVersion, Name: p.Name, Repo: p.Repo, Branch: p.Branch,
		VersionFile: p.VersionFile, Build: p.Build, Stage: p.Stage, Tier: p.Tier,
		Gates: make([]snapshotGate, 0, len(p.Gates)),
		Timeouts: snapshotTimeouts{
			Fetch: p.Timeouts.Fetch.String(), Compile: p.Timeouts.Compile.String(), Stage: p.Timeouts.Stage.String(),
		},
		Env:      orEmpty(p.Env),
		Webhooks: orNone(p.Webhooks),
		Reuse:    p.Reuse,
	}
	for _, g := range p.Gates {
		s.Gates = append(s.Gates, snapshotGate{Kind: g.Kind, Run: g.Run, Timeout: g.Timeout.String(),
			Needs: orNone(g.Needs), Report: g.Report})
	}
	return json.Marshal(s) // encoding/json sorts map keys
}

func orNone(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// Unmarshal decodes a snapshot written by Marshal and validates it as a
// pipeline file is validated (needs, cycles, commands, names, durations),
// so a worker never runs a definition the API would have refused. A
// snapshot of another version, with an unknown field, without a value a
// validated pipeline always has (name, branch, tier, durations), or with
// trailing data is refused. Errors are *Error with File "pipeline snapshot".
func Unmarshal(data []byte) (*Pipeline, error) {
	var s snapshot
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, &Error{File: snapshotFile, Problem: "not a pipeline snapshot: " + err.Error(), Err: err}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &Error{File: snapshotFile, Problem: "not a pipeline snapshot: data after the object"}
	}
	if s.Version != SnapshotVersion {
		return nil, &Error{File: snapshotFile, Field: "version",
			Problem: fmt.Sprintf("%d is not a snapshot version this build reads (%d)", s.Version, SnapshotVersion)}
	}
	// A validated pipeline has every default filled in; one missing here
	// would otherwise be filled again, silently, by validate.
	for _, f := range []struct{ field, value string }{
		{"name", s.Name}, {"branch", s.Branch}, {"tier", s.Tier},
	} {
		if f.value == "" {
			return nil, &Error{File: snapshotFile, Field: f.field, Problem: "required"}
		}
	}
	raw := rawFile{
		Name: s.Name, Repo: s.Repo, Branch: s.Branch, VersionFile: s.VersionFile,
		Build: s.Build, Stage: s.Stage, Tier: s.Tier,
		Timeouts: rawTimeouts{Fetch: s.Timeouts.Fetch, Compile: s.Timeouts.Compile, Stage: s.Timeouts.Stage},
		Env:      s.Env, Webhooks: s.Webhooks, Reuse: s.Reuse,
	}
	for _, g := range s.Gates {
		needs := g.Needs
		if needs == nil {
			needs = []string{} // explicit, never "the gate before"
		}
		raw.Gates = append(raw.Gates, &rawGate{Kind: g.Kind, Run: g.Run, Timeout: g.Timeout,
			Report: g.Report, Needs: &needs})
	}
	p, field, problem := raw.validate(origin{})
	if problem != "" {
		return nil, &Error{File: snapshotFile, Field: field, Problem: problem}
	}
	return p, nil
}

// Hash is the hex SHA-256 of p's snapshot (Marshal): equal for equal
// definitions, different when any field differs (a command, a gate, its
// needs, env, webhooks, a timeout, the name…). reuse: tree compares it,
// with the git tree, to a passed run's.
func (p *Pipeline) Hash() string {
	b, err := Marshal(p)
	if err != nil {
		// Strings, string slices and a string map always encode.
		panic(fmt.Sprintf("pipeline: marshal %q: %v", p.Name, err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
