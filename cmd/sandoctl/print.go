package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"sando.dev/sando/client"
)

func randomHex() string { return strings.ToLower(rand.Text()) }

// printer writes what watch says about one run: a line per phase change
// and per gate status change, and on a terminal a progress line that is
// redrawn in place.
type printer struct {
	mu       sync.Mutex
	out      io.Writer
	tty      bool
	id       int64
	last     *client.Run
	progress bool // a progress line is on screen
	now      func() time.Time
}

// update prints what changed from the last view to r.
func (p *printer) update(r *client.Run) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	prev := p.last
	p.last = r
	if (prev == nil || prev.Phase != r.Phase) && r.Phase != client.PhaseDone && !r.Result.Terminal() {
		fmt.Fprintf(p.out, "run %d: %s\n", p.id, r.Phase)
	}
	for _, g := range r.Gates {
		before, seen := "", false
		if prev != nil {
			for _, pg := range prev.Gates {
				if pg.Kind == g.Kind {
					before, seen = pg.Status, true
				}
			}
		}
		if (seen && before == g.Status) || (g.Status == "" && r.Result.Terminal()) {
			continue
		}
		fmt.Fprintf(p.out, "run %d: gate %s %s\n", p.id, g.Kind, gateStatus(g.Status))
	}
	p.draw()
}

func gateStatus(s string) string {
	if s == "" {
		return "running"
	}
	return s
}

// startProgress redraws the progress line every second (on a terminal
// only) until the returned func is called, which also clears it.
func (p *printer) startProgress() (stop func()) {
	if !p.tty {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.mu.Lock()
				p.draw()
				p.mu.Unlock()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		p.mu.Lock()
		p.clear()
		p.mu.Unlock()
	}
}

// draw writes the progress line (p.mu held).
func (p *printer) draw() {
	if !p.tty || p.last == nil || p.last.Result.Terminal() {
		return
	}
	now := time.Now
	if p.now != nil {
		now = p.now
	}
	what := string(p.last.Phase)
	var running []string
	for _, g := range p.last.Gates {
		if g.Status == "" {
			running = append(running, g.Kind)
		}
	}
	if len(running) > 0 {
		what += " " + strings.Join(running, ", ")
	}
	fmt.Fprintf(p.out, "\r\x1b[Krun %d: %s… %s", p.id, what, p.last.Elapsed(now()).Truncate(time.Second))
	p.progress = true
}

// clear removes the progress line (p.mu held).
func (p *printer) clear() {
	if p.progress {
		fmt.Fprint(p.out, "\r\x1b[K")
		p.progress = false
	}
}

// result prints a finished run's result line and returns its exit code.
func (p *printer) result(r *client.Run) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	switch r.Result {
	case client.ResultPassed:
		line := fmt.Sprintf("run %d passed", r.ID)
		if r.Version != "" {
			line += " (version " + r.Version + ")"
		}
		fmt.Fprintln(p.out, line)
		return exitPassed
	case client.ResultFailed:
		fmt.Fprintln(p.out, resultLine(r))
		return exitFailed
	case client.ResultAborted:
		fmt.Fprintln(p.out, resultLine(r))
		return exitAborted
	}
	fmt.Fprintf(p.out, "run %d: unknown result %q\n", r.ID, r.Result)
	return exitUnavailable
}

func resultLine(r *client.Run) string {
	if r.FailureSummary == "" {
		return fmt.Sprintf("run %d %s", r.ID, r.Result)
	}
	return fmt.Sprintf("run %d %s: %s", r.ID, r.Result, r.FailureSummary)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printRun writes a run's view as aligned lines.
func printRun(w io.Writer, r *client.Run, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "run\t%d\n", r.ID)
	if r.Pipeline != "" {
		fmt.Fprintf(tw, "pipeline\t%s\n", r.Pipeline)
	}
	fmt.Fprintf(tw, "result\t%s\n", r.Result)
	fmt.Fprintf(tw, "phase\t%s\n", r.Phase)
	fmt.Fprintf(tw, "sha\t%s\n", orDash(r.SHA))
	if r.Ref != "" {
		fmt.Fprintf(tw, "ref\t%s\n", r.Ref)
	}
	fmt.Fprintf(tw, "version\t%s\n", orDash(r.Version))
	fmt.Fprintf(tw, "started\t%s\n", stamp(r.StartedAt))
	if r.Result.Terminal() {
		fmt.Fprintf(tw, "finished\t%s (took %s)\n", stamp(r.FinishedAt), r.Elapsed(now).Round(100*time.Millisecond))
	} else {
		fmt.Fprintf(tw, "elapsed\t%s\n", r.Elapsed(now).Truncate(time.Second))
	}
	if r.FailureSummary != "" {
		fmt.Fprintf(tw, "summary\t%s\n", r.FailureSummary)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, g := range r.Gates {
		fmt.Fprintf(tw, "gate %s\t%s\t%s\n", g.Kind, gateStatus(g.Status), g.LogRef)
	}
	tw.Flush()
}

// printState writes /state as lines.
func printState(w io.Writer, st *client.State) {
	if d := st.Deployed; d != nil {
		fmt.Fprintf(w, "%-10srun %d, version %s, sha %s, finished %s\n", "deployed", d.RunID, orDash(d.Version), short(d.SHA), stamp(d.FinishedAt))
		if len(d.Gates) > 0 {
			var gs []string
			for _, g := range d.Gates {
				gs = append(gs, g.Kind+" "+gateStatus(g.Status))
			}
			fmt.Fprintf(w, "%-10sgates: %s\n", "", strings.Join(gs, ", "))
		}
	} else {
		fmt.Fprintf(w, "%-10snone\n", "deployed")
	}
	if b := st.Build; b != nil {
		fmt.Fprintf(w, "%-10srun %d, %s, %s, version %s, sha %s, %ds\n", "build", b.RunID, b.Result, b.Phase, orDash(b.Version), short(b.SHA), b.ElapsedS)
		if b.FailureSummary != "" {
			fmt.Fprintf(w, "%-10ssummary: %s\n", "", b.FailureSummary)
		}
	} else {
		fmt.Fprintf(w, "%-10snone\n", "build")
	}
}

// printList writes runs as a table.
func printList(w io.Writer, runs []client.Run) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tRESULT\tPHASE\tPIPELINE\tVERSION\tSHA\tSTARTED\tSUMMARY")
	for _, r := range runs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Result, r.Phase, orDash(r.Pipeline), orDash(r.Version),
			short(r.SHA), stamp(r.StartedAt), r.FailureSummary)
	}
	tw.Flush()
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return orDash(sha)
}
