package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"sando.dev/sando/internal/testrepo"
)

const (
	bWarm  = "11. Warm rebuild"
	bReuse = "12. Tree reuse"
)

// warmOptions size the warm-rebuild project: a C project under make of
// Files generated files of Funcs functions each, big enough that a cold
// build takes 10 s or more on this machine (28 files took 7.3 s by hand
// on a quiet day, 22 s on a busy one); the report says whether it did.
type warmOptions struct {
	Files, Funcs int
	Changes      int // one-line changes timed, each a new commit
	ReuseRuns    int // reused runs timed
}

func defaultWarm() warmOptions { return warmOptions{Files: 48, Funcs: 60, Changes: 3, ReuseRuns: 20} }

func (w *warmOptions) shorten() { w.Files, w.Funcs, w.Changes, w.ReuseRuns = 2, 2, 1, 3 }

// warmMakefile builds every m*.c into $(OBJDIR) (default obj/, in the
// worktree, which the checkout cleans) and archives them.
const warmMakefile = `OBJDIR ?= obj
SRCS := $(wildcard m*.c)
OBJS := $(SRCS:%.c=$(OBJDIR)/%.o)
$(OBJDIR)/libapp.a: $(OBJS)
	ar rcs $@ $^
$(OBJDIR)/%.o: %.c
	@mkdir -p $(OBJDIR)
	$(CC) -O2 -c -o $@ $<
`

func warmFileName(i int) string { return fmt.Sprintf("m%d.c", i) }

// warmFile is generated file i; rev varies one line of it (the one-line
// change).
func warmFile(i, funcs, rev int) string {
	var sb strings.Builder
	sb.WriteString("#include <stdint.h>\n")
	fmt.Fprintf(&sb, "uint64_t rev%d(void) { return %d; }\n", i, rev)
	for j := range funcs {
		fmt.Fprintf(&sb, "uint64_t f%d_%d(uint64_t x) { uint64_t a = x * %du;\n", i, j, j+3)
		fmt.Fprintf(&sb, "  for (int k = 0; k < 64; k++) { a ^= (a << %d) + (a >> %d) + k * %du; a *= 0x9E3779B97F4A7C15ull; }\n",
			j%13+1, j%7+1, i+1)
		sb.WriteString("  switch (a & 15) {\n")
		for c := range 16 {
			fmt.Fprintf(&sb, "    case %d: a += %du * (a >> %d); break;\n", c, c*j+i, c%5+1)
		}
		sb.WriteString("  }\n  return a; }\n")
	}
	return sb.String()
}

// makeWarmRepo is the generated project's repository, one commit.
func makeWarmRepo(dir string, w warmOptions) (testrepo.Repo, string, error) {
	files := map[string]string{"Makefile": warmMakefile, ".gitignore": "obj/\n"}
	for i := range w.Files {
		files[warmFileName(i)] = warmFile(i, w.Funcs, 0)
	}
	return testrepo.New(dir, files)
}

// warm is the warm-rebuild benchmark: the second run after a one-line
// change, with SANDO_CACHE_DIR (objects in the cache, sources checked out
// in place), as Sando builds without using it (objects in the worktree,
// which every checkout cleans: a cold build), and the floor: the same
// checkout and make by hand in one persistent directory.
func (b *bench) warm(ctx context.Context) error {
	w := b.opt.Warm
	wr, sha, err := makeWarmRepo(filepath.Join(b.work, "warm-repo"), w)
	if err != nil {
		return err
	}
	repo := wr.Dir
	jobs := runtime.NumCPU()
	mk := fmt.Sprintf("make -s -j%d", jobs)
	pipes := []pipelineSpec{
		{Name: "cached", Repo: repo, Build: mk + ` OBJDIR="$SANDO_CACHE_DIR/obj"`},
		{Name: "cold", Repo: repo, Build: mk},
	}
	s, err := b.startStack(stackOpts{Pipelines: pipes, Workers: 1, Concurrency: b.opt.Concurrency})
	if err != nil {
		return err
	}
	defer s.Stop()
	build := func(pipeline, sha string) (float64, error) {
		t0 := time.Now()
		_, _, at, err := runPassed(ctx, newAPI(s.API.Addr, sha), pipeline, 10*time.Minute)
		if err != nil {
			return 0, fmt.Errorf("%w (logs in %s)", err, s.Dir)
		}
		return ms(at.Sub(t0)), nil
	}
	first, err := build("cached", sha)
	if err != nil {
		return err
	}
	b.logf("cold build through Sando (first run, empty cache): %.1f s", first/1000)

	floorDir := filepath.Join(b.work, "warm-floor")
	if _, err := (testrepo.Repo{Dir: b.work}).Git("clone", "-q", repo, floorDir); err != nil {
		return err
	}
	handMake := func() (float64, error) {
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, "sh", "-c", mk)
		cmd.Dir = floorDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("floor make: %w: %s", err, out)
		}
		return ms(time.Since(t0)), nil
	}
	floorCold, err := handMake()
	if err != nil {
		return err
	}
	b.logf("cold build by hand: %.1f s", floorCold/1000)

	cached, cold, floor := value{Unit: "ms"}, value{Unit: "ms"}, value{Unit: "ms"}
	for i := range w.Changes {
		next, err := wr.Commit(map[string]string{warmFileName(i % w.Files): warmFile(i%w.Files, w.Funcs, i+1)},
			fmt.Sprintf("one-line change %d", i+1))
		if err != nil {
			return err
		}
		x, err := build("cached", next)
		if err != nil {
			return err
		}
		cached.Samples = append(cached.Samples, x)
		if i == 0 { // a cold build costs the same every time: once is enough
			if x, err = build("cold", next); err != nil {
				return err
			}
			cold.Samples = append(cold.Samples, x)
		}
		// The floor: fetch and check out in place, then make, by hand.
		t0 := time.Now()
		if _, err := (testrepo.Repo{Dir: floorDir}).Git("pull", "-q", "--ff-only"); err != nil {
			return err
		}
		fetched := ms(time.Since(t0))
		x, err = handMake()
		if err != nil {
			return err
		}
		floor.Samples = append(floor.Samples, fetched+x)
		b.logf("change %d: Sando with SANDO_CACHE_DIR %.2f s, by hand %.2f s", i+1, last(cached)/1000, last(floor)/1000)
	}
	b.logf("Sando without the cache (cold): %.1f s", last(cold)/1000)
	what := fmt.Sprintf("C project under make (%d files, `make -j%d`), run after a one-line change, POST → passed", w.Files, jobs)
	b.report.add(line{Bench: bWarm, Measure: what + ", objects in `$SANDO_CACHE_DIR`", Sando: cached, Bases: []base{
		{"by hand: `git pull` + `make` in one persistent directory (the floor)", floor},
		{"Sando without the cache (objects in the worktree: cold)", cold},
	}})
	b.report.add(line{Bench: bWarm, Measure: "the same project's first (cold) build, POST → passed",
		Sando: value{Unit: "ms", Samples: []float64{first}},
		Bases: []base{{"by hand: `make` in a fresh clone", value{Unit: "ms", Samples: []float64{floorCold}}}}})
	r := cached.Median() / floor.Median()
	b.track(1.3/r, bWarm, "warm rebuild vs the floor")
	b.report.goal(bWarm, "with SANDO_CACHE_DIR within 1.3× of the same make by hand in one persistent directory", r <= 1.3,
		"%.2f× (%.2f s vs %.2f s; cold: %.1f s; a first build took %.1f s)", r, cached.Median()/1000, floor.Median()/1000,
		cold.Median()/1000, first/1000)
	if !b.opt.Short {
		b.report.goal(bWarm, "the project is big enough: its cold build by hand takes ≥ 10 s", floorCold >= 10000,
			"%.1f s (%d files of %d functions)", floorCold/1000, w.Files, w.Funcs)
	}
	return nil
}

// reuse is the tree-reuse benchmark: rebuilds of a commit whose tree and
// pipeline already passed, POST → passed, one at a time.
func (b *bench) reuse(ctx context.Context) error {
	w := b.opt.Warm
	s, err := b.startStack(stackOpts{Pipeline: pipelineSpec{Name: "reuse", Repo: b.repo, Reuse: true},
		Workers: 1, Concurrency: b.opt.Concurrency})
	if err != nil {
		return err
	}
	defer s.Stop()
	a := newAPI(s.API.Addr, b.sha)
	if _, _, _, err := runPassed(ctx, a, "reuse", time.Minute); err != nil { // builds, and is filed
		return err
	}
	var xs []float64
	for range w.ReuseRuns {
		t0 := time.Now()
		_, _, at, err := runPassed(ctx, a, "reuse", time.Minute)
		if err != nil {
			return err
		}
		xs = append(xs, ms(at.Sub(t0)))
	}
	p50 := percentile(xs, 50)
	b.report.add(line{Bench: bReuse, Measure: fmt.Sprintf("`reuse: tree`, rebuild of a tree that passed, POST → passed, p50 of %d", len(xs)),
		Sando: value{Unit: "ms", Samples: []float64{p50}},
		Bases: []base{{"p90", value{Unit: "ms", Samples: []float64{percentile(xs, 90)}}}}})
	b.track(50/p50, bReuse, "tree reuse POST → passed")
	b.report.goal(bReuse, "POST /rebuild → passed p50 ≤ 50 ms for a tree that passed", p50 <= 50, "p50 %.0f ms", p50)
	b.logf("tree reuse: p50 %.1f ms, p90 %.1f ms", p50, percentile(xs, 90))
	return nil
}
