package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary play the bench's process roles (baseline
// servers, Sando with pprof), as the bench binary does.
func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(m.Run())
}

// TestShort runs every benchmark once on tiny numbers so the bench program
// never rots. It asserts that each benchmark produced its figures, never a
// time: benchmarks are not tests.
func TestShort(t *testing.T) {
	o := defaultOptions()
	o.shorten()
	o.Out = filepath.Join(t.TempDir(), "BENCHMARKS.md")
	var log bytes.Buffer
	o.Log = &log
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, o, &out); err != nil {
		t.Fatalf("bench -short: %v\nprogress:\n%s", err, log.String())
	}
	md, err := os.ReadFile(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{bLatency, bThroughput, bPoll, bLongPoll, bFootprint, bBacklog, bScaling, bGates, bIdle, bEconomy, bWarm, bReuse, bPages, "## Goals", "cores"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	t.Logf("progress:\n%s\nreport:\n%s", log.String(), out.String())
}
