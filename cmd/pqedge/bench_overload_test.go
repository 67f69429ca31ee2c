package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/bench"
	"github.com/pqedge/pqedge/internal/peers"
)

func TestRunBenchOverloadErrors(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"unknown front", []string{"overload", "-fronts", "pqedge,haproxy"}, 2, []string{`-fronts: unknown front "haproxy"`, "hint: fronts are pqedge, plain, nginx"}},
		{"unknown front without a peer root", []string{"overload", "-fronts", "caddy", "-peers-dir", "/nonexistent"}, 2, []string{`-fronts: unknown front "caddy"`}},
		{"no front", []string{"overload", "-fronts", ","}, 2, []string{"no front to measure"}},
		{"zero flood", []string{"overload", "-flood", "0"}, 2, []string{"-flood 0 and -rate 200 must be positive"}},
		{"zero runs", []string{"overload", "-runs", "0"}, 2, []string{"must be at least 1"}},
		{"zero duration", []string{"overload", "-duration", "0s"}, 2, []string{"-duration, -flood-lead, -capacity-duration, -timeout and -flood-timeout must be positive"}},
		{"too many sources", []string{"overload", "-flood-sources", "70000"}, 2, []string{"-flood-sources 70000: at most 65536"}},
		{"too many flood conns", []string{"overload", "-flood-conns", "9000"}, 2, []string{"-flood-conns 9000: at most 8000"}},
		{"rate per connection", []string{"overload", "-conns", "1", "-rate", "5000"}, 2, []string{"more than 1,000 requests/s per connection", "hint: the measured traffic is meant to be modest"}},
		{"bad group", []string{"overload", "-group", "MLKEM512"}, 2, []string{"-group:"}},
		{"stray argument", []string{"overload", "now"}, 2, []string{`unexpected argument "now"`}},
		{"no peer root", []string{"overload", "-peers-dir", "/nonexistent"}, 1, []string{"bench overload needs the trixie peer root", "hint: the upstream (nginx) runs from it"}},
		{"NaN rate", []string{"overload", "-rate", "NaN"}, 2, []string{`invalid value "NaN" for flag -rate: want a finite number`, "hint: see `pqedge bench overload --help`"}},
		{"infinite flood", []string{"overload", "-flood", "+Inf"}, 2, []string{`invalid value "+Inf" for flag -flood: want a finite number`}},
		{"NaN control rate", []string{"overload", "-control-rate", "nan"}, 2, []string{`invalid value "NaN" for flag -control-rate: want a finite number`}},
		{"negative control rate", []string{"overload", "-control-rate", "-5"}, 2, []string{"-control-rate -5: want 0 (no control) up to 4000 requests/s"}},
		{"control rate too high", []string{"overload", "-control-rate", "5000"}, 2, []string{"-control-rate 5000: want 0 (no control) up to 4000 requests/s"}},
		{"bad flood client", []string{"overload", "-flood-client", "fast"}, 2, []string{`-flood-client "fast": want replay or full`}},
		{"replay over quic", []string{"handshake", "-target", "127.0.0.1:1", "-transport", "quic", "-replay"}, 2, []string{"-replay floods over tcp", "hint: drop -transport quic"}},
		{"replay with a request", []string{"handshake", "-target", "127.0.0.1:1", "-replay", "-request", "/"}, 2, []string{"-replay floods over tcp"}},
		{"handshake sources over quic", []string{"handshake", "-target", "127.0.0.1:1", "-transport", "quic", "-sources", "4"}, 2, []string{"-sources works over TCP only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runBench(tt.args, &stdout, &stderr); code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout on error: %s", stdout.String())
			}
		})
	}
}

// A tiny `bench overload` through the real main, as a user runs it: the
// three fronts, the upstream nginx from the peer root, the flood a child
// process. Its numbers mean nothing (not pinned, a fraction of a second
// per phase on a shared machine); the report must still be whole: requests
// answered in both phases, a flood attempted, pqedge's counters read.
func TestRunBenchOverload(t *testing.T) {
	root := peers.Trixie(t)
	pqedge, err := exec.LookPath("pqedge")
	if err != nil {
		t.Fatalf("testscript put no pqedge on PATH: %v", err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pqedge, "bench", "overload", "-fronts", "pqedge,plain,nginx", "-runs", "1",
		"-duration", "500ms", "-flood-lead", "200ms", "-capacity-duration", "300ms", "-capacity-concurrency", "2",
		"-flood", "2", "-flood-conns", "32", "-flood-sources", "4", "-conns", "2", "-rate", "40",
		"-timeout", "20s", "-pin=false", "-peers-dir", filepath.Dir(root.Root), "-out", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"unloaded p50", "flooded p50", "ratio (median)", "pqedge: flooded p99 <= 2x unloaded",
		"flood client: replay (" + bench.ReplayClient + ")", "whole flights", "flood reached", "control p99", "control ratio (median)",
		"control: 50 requests/s on 4 connections straight to the upstream"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), "FAILED") {
		t.Errorf("a front failed:\n%s\n%s", stdout.String(), stderr.String())
	}
	if n := strings.Count(stderr.String(), " run 1: capacity "); n != 3 {
		t.Errorf("%d run summaries on stderr, want 3:\n%s", n, stderr.String())
	}

	data, err := os.ReadFile(filepath.Join(out, "overload.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res bench.OverloadResult
	if err := json.Unmarshal(data, &res); err != nil || len(res.Fronts) != 3 || len(res.Checks) != 1 || res.FloodClient != bench.FloodReplay {
		t.Fatalf("overload.json: %v, %d fronts, %d checks, flood client %q", err, len(res.Fronts), len(res.Checks), res.FloodClient)
	}
	for _, f := range res.Fronts {
		if len(f.Runs) != 1 {
			t.Fatalf("%s: %d runs, want 1 (%s)", f.Front, len(f.Runs), f.Error)
		}
		r := f.Runs[0]
		if c := r.Control; c == nil || c.Unloaded.Requests == 0 || c.Flooded.Requests == 0 || c.Unloaded.Failed+c.Flooded.Failed != 0 {
			t.Errorf("%s: the control (requests straight to the upstream) = %+v, want requests answered in both phases, none failed", f.Front, c)
		}
		if r.Capacity <= 0 || r.Unloaded.Requests == 0 || r.Flooded.Requests == 0 || r.Unloaded.Latency.P99 == 0 || r.Flooded.Latency.P99 == 0 {
			t.Errorf("%s: capacity %.0f/s, requests %d unloaded and %d flooded, p99 %v and %v", f.Front, r.Capacity,
				r.Unloaded.Requests, r.Flooded.Requests, r.Unloaded.Latency.P99, r.Flooded.Latency.P99)
		}
		if r.Flood.Attempted == 0 || r.Flood.Rate != 2*r.Capacity || r.Flood.Client != bench.FloodReplay || r.Flood.Reached <= 0 {
			t.Errorf("%s: %s flood attempted %d (%.2f of the rate) at %.0f/s offered, want >0 at 2x %.0f/s", f.Front, r.Flood.Client, r.Flood.Attempted, r.Flood.Reached, r.Flood.Rate, r.Capacity)
		}
		if r.Ratio <= 0 || f.Ratio != r.Ratio {
			t.Errorf("%s: ratio %v, median %v", f.Front, r.Ratio, f.Ratio)
		}
		switch f.Front {
		case bench.ServerPQEdge:
			// The capacity run and the flood both completed handshakes
			// the front counted, and the flood's connections were
			// judged by the limits (refusals are counted by reason,
			// every reason present even at 0).
			if r.Server == nil || r.Server.Handshakes == 0 {
				t.Errorf("pqedge counters: %+v", r.Server)
				break
			}
			for _, reason := range []string{"connections", "per_client", "handshake_queue", "handshakes_per_client", "handshake_wait"} {
				if _, ok := r.Server.Refused[reason]; !ok {
					t.Errorf("pqedge counters: no refusals by %q in %+v", reason, r.Server.Refused)
				}
			}
		case bench.ServerPlain, bench.ServerNginx:
			if r.Server != nil {
				t.Errorf("%s has no metrics, yet counters %+v", f.Front, r.Server)
			}
		}
	}
	if entries, _ := filepath.Glob(filepath.Join(out, "work-*")); len(entries) > 0 {
		t.Errorf("work directory left behind: %v", entries)
	}
}
