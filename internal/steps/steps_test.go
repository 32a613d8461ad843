package steps

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/vocab"
)

func testPipeline(stage string) *pipeline.Pipeline {
	return &pipeline.Pipeline{
		Name: "app", Build: "make", Stage: stage,
		Gates: []pipeline.Gate{
			{Kind: "unit", Run: "true", Timeout: 3 * time.Minute},
			{Kind: "smoke", Run: "true", Timeout: 7 * time.Minute, Needs: []string{"unit"}},
		},
		Timeouts: pipeline.Timeouts{Fetch: time.Minute, Compile: 30 * time.Minute, Stage: 5 * time.Minute},
	}
}

// Each step's row of the table, as the rest of Sando reads it.
func TestTable(t *testing.T) {
	t.Parallel()
	p := testPipeline("cp x y")
	tests := []struct {
		step               Step
		name, typ, queue   string
		phase              vocab.Phase
		timeout            time.Duration
		retries, queuePrio int
	}{
		{Step{Kind: Fetch}, "fetch", "sando:fetch", "fetch", vocab.PhaseFetching, time.Minute, 5, 1},
		{Step{Kind: Compile}, "compile", "sando:compile", "disk:d1", vocab.PhaseCompiling, 30 * time.Minute, 3, 2},
		{Step{Kind: Stage}, "stage", "sando:stage", "disk:d1", vocab.PhaseStaging, 5 * time.Minute, 3, 2},
		{Step{Kind: Gate, Gate: "unit"}, "gate-unit", "sando:gate", "disk:d1", vocab.PhaseGating, 3 * time.Minute, 3, 2},
		{Step{Kind: Gate, Gate: "smoke"}, "gate-smoke", "sando:gate", "disk:d1", vocab.PhaseGating, 7 * time.Minute, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.step
			require.Equal(t, tt.name, s.Name())
			require.Equal(t, tt.typ, s.Type)
			require.Equal(t, tt.queue, s.QueueOn("d1"))
			require.Equal(t, tt.phase, s.Phase)
			require.Equal(t, tt.timeout, s.Timeout(p))
			require.Equal(t, tt.retries, s.Retries)
			require.Equal(t, tt.queuePrio, Queues("d1")[s.QueueOn("d1")], "a disk's started runs are served before new fetches")
			back, ok := Parse(s.Name())
			require.True(t, ok)
			require.Equal(t, s, back, "Parse is Name's inverse")
			k, ok := ByType(s.Type)
			require.True(t, ok)
			require.Same(t, s.Kind, k)
			require.Equal(t, "app:17:"+tt.name, TaskID("app", 17, s))
		})
	}
	for _, bad := range []string{"", "gate", "gate-", "deploy", "fetch.log"} {
		_, ok := Parse(bad)
		require.False(t, ok, bad)
	}
	require.Len(t, Queues("d1"), 2, "a worker polls two queues")
}

func TestAfter(t *testing.T) {
	t.Parallel()
	names := func(ss []Step) []string {
		out := []string{}
		for _, s := range ss {
			out = append(out, s.Name())
		}
		return out
	}
	staged, unstaged := testPipeline("cp x y"), testPipeline("")
	require.Equal(t, []string{"compile"}, names(After(staged, First())))
	require.Equal(t, []string{"stage"}, names(After(staged, Step{Kind: Compile})))
	require.Equal(t, []string{"gate-unit"}, names(After(staged, Step{Kind: Stage})), "without needs, the first gate alone")
	require.Equal(t, []string{"gate-unit"}, names(After(unstaged, Step{Kind: Compile})), "no stage command: no stage step")
	require.Equal(t, []string{"gate-smoke"}, names(GatesAfter(unstaged, "unit", map[string]bool{"unit": true})))
	require.Empty(t, names(GatesAfter(unstaged, "smoke", map[string]bool{"unit": true, "smoke": true})))
	noGates := testPipeline("")
	noGates.Gates = nil
	require.Empty(t, After(noGates, Step{Kind: Compile}), "no gates: compile is the last step")

	fan := testPipeline("")
	fan.Gates = []pipeline.Gate{
		{Kind: "lint", Timeout: time.Minute},
		{Kind: "unit", Timeout: time.Minute},
		{Kind: "e2e", Timeout: time.Minute, Needs: []string{"lint", "unit"}},
	}
	require.Equal(t, []string{"gate-lint", "gate-unit"}, names(After(fan, Step{Kind: Compile})), "needs: [] gates start together")
	require.Empty(t, GatesAfter(fan, "lint", map[string]bool{"lint": true}), "e2e waits for unit too")
	require.Equal(t, []string{"gate-e2e"}, names(GatesAfter(fan, "unit", map[string]bool{"lint": true, "unit": true})))
}

func TestLongest(t *testing.T) {
	t.Parallel()
	p := testPipeline("")
	for phase, want := range map[vocab.Phase]time.Duration{
		vocab.PhaseFetching: time.Minute, vocab.PhaseCompiling: 30 * time.Minute,
		vocab.PhaseStaging: 5 * time.Minute, vocab.PhaseGating: 7 * time.Minute,
	} {
		got, ok := Longest(p, phase)
		require.True(t, ok, phase)
		require.Equal(t, want, got, phase)
	}
	for _, phase := range []vocab.Phase{vocab.PhaseQueued, vocab.PhaseDone} {
		_, ok := Longest(p, phase)
		require.False(t, ok, phase)
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	p := testPipeline("")
	task := func(typ string, body any) *asynq.Task {
		b, _ := json.Marshal(body)
		return asynq.NewTask(typ, b)
	}
	tests := []struct {
		desc string
		task *asynq.Task
		want string // the step's name; "" for a poison task
	}{
		{"fetch", task(Fetch.Type, Payload{RunID: 1}), "fetch"},
		{"gate by kind", task(Gate.Type, Payload{RunID: 1, Gate: "smoke"}), "gate-smoke"},
		{"gate by index, as older versions enqueued it", task(Gate.Type, map[string]any{"run_id": 1, "gate": 1}), "gate-smoke"},
		{"first gate by index (omitempty dropped the 0)", task(Gate.Type, map[string]any{"run_id": 1}), "gate-unit"},
		{"unknown gate", task(Gate.Type, Payload{RunID: 1, Gate: "nope"}), ""},
		{"gate index out of range", task(Gate.Type, map[string]any{"run_id": 1, "gate": 9}), ""},
		{"no run id", task(Fetch.Type, Payload{}), ""},
		{"undecodable", asynq.NewTask(Fetch.Type, []byte("{")), ""},
		{"unknown type", task("sando:deploy", Payload{RunID: 1}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, s, err := Decode(p, tt.task)
			if tt.want == "" {
				require.ErrorIs(t, err, asynq.SkipRetry)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, s.Name())
		})
	}
}
