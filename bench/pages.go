package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/redis/go-redis/v9"

	"sando.dev/sando/internal/datadir"
	"sando.dev/sando/internal/httpapi"
	"sando.dev/sando/internal/logstore"
	"sando.dev/sando/internal/pipeline"
	"sando.dev/sando/internal/redistest"
	sandorun "sando.dev/sando/internal/vocab"
	"sando.dev/sando/runstore"
)

const bPages = "13. Pages for people"

// browserAccept is Chromium's Accept for a page.
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

// pagesBench measures the pages' server side in process (httpapi's
// handler called directly, so the time is the server's alone, no network)
// on the bench's redis-server, with a go-redis hook counting round trips
// (a command or a pipeline each) and commands:
//   - a failed run's page whose compile log has 10,000 lines, next to the
//     run's JSON view and the whole log;
//   - GET / for a browser with 50 pipelines of 5 runs each, next to GET /
//     for a JSON client (GET /pipelines' body).
func (b *bench) pages(ctx context.Context) error {
	o := b.opt
	pipes, logLines, requests := 50, 10_000, 200
	if o.Short {
		pipes, logLines, requests = 3, 100, 5
	}
	var traffic redistest.Traffic
	rdb := redis.NewClient(&redis.Options{Addr: b.redis.Addr, PoolSize: 16})
	defer rdb.Close()
	rdb.AddHook(&traffic)

	var defs []*pipeline.Pipeline
	for i := range pipes {
		defs = append(defs, &pipeline.Pipeline{Name: fmt.Sprintf("p%02d", i), Repo: b.repo, Branch: "main", Tier: "host",
			Build: "true", Gates: []pipeline.Gate{{Kind: "unit", Run: "true", Timeout: time.Minute}},
			Timeouts: pipeline.Timeouts{Fetch: time.Minute, Compile: time.Minute, Stage: time.Minute}})
	}
	set, err := pipeline.NewSet(defs...)
	if err != nil {
		return err
	}
	red, err := seedPages(ctx, rdb, defs, logLines)
	if err != nil {
		return err
	}
	srv := &httpapi.Server{
		Redis: rdb, Pipelines: func() *pipeline.Set { return set }, Layout: datadir.Layout{Root: b.work},
		Logger: slog.New(slog.DiscardHandler), Ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
	}
	h := srv.Handler()

	// measure GETs path with accept requests times; per request: server
	// time, bytes, round trips and commands.
	measure := func(path, accept string) (t, bytes, rt, cm value, err error) {
		t, bytes, rt, cm = value{Unit: "ms"}, value{Unit: "KiB"}, value{Unit: "round trips"}, value{Unit: "cmds"}
		for i := range requests + 1 {
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
			req.Header.Set("Accept", accept)
			w := httptest.NewRecorder()
			t0, r0, c0 := time.Now(), traffic.Trips(), traffic.Commands()
			h.ServeHTTP(w, req)
			el := time.Since(t0)
			if w.Code != http.StatusOK {
				return t, bytes, rt, cm, fmt.Errorf("GET %s: %d %s", path, w.Code, w.Body.String())
			}
			if i == 0 {
				continue // the first opens the catalog and caches the run's pipeline
			}
			t.Samples = append(t.Samples, ms(el))
			bytes.Samples = append(bytes.Samples, float64(w.Body.Len())/1024)
			rt.Samples = append(rt.Samples, float64(traffic.Trips()-r0))
			cm.Samples = append(cm.Samples, float64(traffic.Commands()-c0))
		}
		return t, bytes, rt, cm, nil
	}
	runPath := fmt.Sprintf("/runs/%d", red)
	pt, pb, pr, pc, err := measure(runPath, browserAccept)
	if err != nil {
		return err
	}
	jt, jb, jr, _, err := measure(runPath, "application/json")
	if err != nil {
		return err
	}
	logPath := "/logs/" + datadir.LogRef(red, "compile")
	lt, lb, _, _, err := measure(logPath, "*/*")
	if err != nil {
		return err
	}
	what := fmt.Sprintf("a failed run, compile log of %d lines", logLines)
	b.report.add(line{Bench: bPages, Measure: "run page: server time (" + what + ")", Sando: pt,
		Bases: []base{{"JSON view of the same run", jt}, {"the whole log (GET /logs)", lt}}})
	b.report.add(line{Bench: bPages, Measure: "run page: bytes", Sando: pb,
		Bases: []base{{"JSON view", jb}, {"the whole log", lb}}})
	b.report.add(line{Bench: bPages, Measure: "run page: Redis round trips", Sando: pr, Bases: []base{{"JSON view", jr}}})
	b.report.add(line{Bench: bPages, Measure: "run page: Redis commands", Sando: pc})
	b.report.goal(bPages, "a run page does not inline a 10,000-line log", pb.Median() < lb.Median()/4,
		"page %s, log %s", pb.String(), lb.String())

	dt, db, dr, dc, err := measure("/", browserAccept)
	if err != nil {
		return err
	}
	it, ib, ir, ic, err := measure("/", "application/json")
	if err != nil {
		return err
	}
	what = fmt.Sprintf("%d pipelines, 5 runs each", pipes)
	b.report.add(line{Bench: bPages, Measure: "GET / (browser): server time (" + what + ")", Sando: dt,
		Bases: []base{{"GET / for a JSON client (GET /pipelines)", it}}})
	b.report.add(line{Bench: bPages, Measure: "GET / (browser): bytes", Sando: db, Bases: []base{{"JSON", ib}}})
	b.report.add(line{Bench: bPages, Measure: "GET / (browser): Redis round trips", Sando: dr, Bases: []base{{"JSON", ir}}})
	b.report.add(line{Bench: bPages, Measure: "GET / (browser): Redis commands", Sando: dc, Bases: []base{{"JSON", ic}}})
	b.report.goal(bPages, fmt.Sprintf("GET / with %d pipelines: at most one Redis round trip per pipeline", pipes),
		dr.Median() <= float64(pipes), "%s in all", dr.String())
	return nil
}

// seedPages makes 5 runs of each pipeline, the last of the first pipeline
// failed in compiling with a compile log of lines lines, and returns its id.
func seedPages(ctx context.Context, rdb redis.UniversalClient, defs []*pipeline.Pipeline, lines int) (int64, error) {
	var red int64
	for i, def := range defs {
		st := runstore.New(rdb, def.Name)
		for k := range 5 {
			c, err := st.Create(ctx, runstore.CreateRequest{NoSupersede: true})
			if err != nil {
				return 0, err
			}
			for ph, step := range map[sandorun.Phase]string{sandorun.PhaseFetching: "fetch", sandorun.PhaseCompiling: "compile"} {
				if _, _, err := st.SetPhase(ctx, c.ID, ph, "bench", runstore.Where{Worker: "bench"}, datadir.LogRef(c.ID, step)); err != nil {
					return 0, err
				}
			}
			if i == 0 && k == 4 {
				red = c.ID
				w := logstore.NewWriter(rdb, st.Keys().Log(c.ID, "compile"), logstore.Options{})
				for n := 1; n <= lines; n++ {
					fmt.Fprintf(w, "src/module_%04d.go: compiling package %d of %d\n", n%700, n, lines)
				}
				fmt.Fprintln(w, "main.go:12:2: undefined: x")
				if err := w.Close(); err != nil {
					return 0, err
				}
			}
			if _, err := st.Fail(ctx, c.ID, "main.go:12:2: undefined: x"); err != nil {
				return 0, err
			}
		}
	}
	return red, nil
}
