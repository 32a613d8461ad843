package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// profileWorst re-runs the scenario of the goal furthest from being met
// with Sando's processes serving pprof, takes a CPU profile of each, and
// puts the top of the busiest into the report.
func (b *bench) profileWorst(ctx context.Context) error {
	w := b.worst
	if w == nil {
		return nil
	}
	if err := b.redis.Flush(ctx); err != nil {
		return err
	}
	b.logf("== profile: %s (%.2f of its goal)", w.what, w.score)
	const secs = 5
	var profs map[string]string
	var err error
	switch w.scenario {
	case "poll-building", "poll-finished":
		var p *pollSetup
		p, err = b.pollStack(ctx, true)
		if err != nil {
			return err
		}
		defer p.Stop(ctx)
		path := "/runs/2"
		if w.scenario == "poll-finished" {
			path = "/runs/1"
		}
		profs, err = b.profileWhile(ctx, p.s, secs, func() error {
			_, err := httpLoad(ctx, p.s.API.Addr, path, b.opt.Conns, 0, (secs+1)*time.Second, 200)
			return err
		})
	case "throughput":
		// Enough runs to keep the workers busy for the whole profile; the
		// hook waits for the profile before the stack stops.
		var perr error
		_, err = b.sandoThroughput(ctx, 1, max(b.opt.Runs, 300), true, func(s *stack) func() {
			done, profiled := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(profiled)
				profs, perr = b.profileWhile(ctx, s, secs, func() error { <-done; return nil })
			}()
			return func() { close(done); <-profiled }
		}, 0)
		err = errors.Join(err, perr)
	default: // latency
		var s *stack
		s, err = b.startStack(stackOpts{Pipeline: pipelineSpec{Name: "lat", Repo: b.repo}, Workers: 1, Concurrency: b.opt.Concurrency, Profile: true})
		if err != nil {
			return err
		}
		defer s.Stop()
		a := newAPI(s.API.Addr, b.sha)
		profs, err = b.profileWhile(ctx, s, secs, func() error {
			for end := time.Now().Add((secs + 1) * time.Second); time.Now().Before(end); {
				id, err := a.Rebuild(ctx)
				if err != nil {
					return err
				}
				if _, err := a.WaitUntil(ctx, id, time.Minute, terminal); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return err
	}
	if len(profs) == 0 {
		return fmt.Errorf("profile of %s: no process served a profile", w.scenario)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "Worst ratio of this run: **%s** (%.2f of what the goal needs). CPU profile (pprof, %d s) of each Sando process "+
		"while that scenario runs again; the top of each by flat and by cumulative time:\n", w.what, w.score, secs)
	names := make([]string, 0, len(profs))
	for n := range profs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, mode := range [][]string{{"-top", "-nodecount=18"}, {"-top", "-cum", "-nodecount=18"}} {
			out, err := exec.CommandContext(ctx, "go", append(append([]string{"tool", "pprof"}, mode...), profs[n])...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("go tool pprof: %w: %s", err, out)
			}
			fmt.Fprintf(&sb, "\n`%s` (%s):\n\n```\n%s```\n", n, strings.Join(mode, " "), trimPprof(string(out)))
		}
	}
	b.report.Profile = sb.String()
	b.logf("profiles in %s", filepath.Dir(profs[names[0]]))
	return nil
}

// profileWhile takes a secs-long CPU profile of every process of s that
// serves pprof while load runs.
func (b *bench) profileWhile(ctx context.Context, s *stack, secs int, load func() error) (map[string]string, error) {
	out := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(s.Pprof)+1)
	for name, addr := range s.Pprof {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := filepath.Join(b.work, "profile-"+name+".pb.gz")
			if err := fetchProfile(ctx, addr, secs, path); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				return
			}
			mu.Lock()
			out[name] = path
			mu.Unlock()
		}()
	}
	if err := load(); err != nil {
		errs <- err
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	return out, nil
}

func fetchProfile(ctx context.Context, addr string, secs int, path string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("pprof: %d %s", resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// trimPprof keeps pprof's summary lines and the table.
func trimPprof(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") ||
			strings.HasPrefix(l, "Time:") || l == "" {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n") + "\n"
}
