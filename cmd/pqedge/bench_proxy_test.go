package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/bench"
	"github.com/pqedge/pqedge/internal/peers"
)

func TestRunBenchProxyErrors(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"unknown mode", []string{"proxy", "-modes", "h1,h3"}, 2, []string{`-modes: unknown mode "h3"`, "hint: see `pqedge bench proxy -h`"}},
		{"no mode", []string{"proxy", "-modes", " , "}, 2, []string{"names no mode"}},
		{"unknown front", []string{"proxy", "-fronts", "caddy"}, 2, []string{`unknown front "caddy"`, "hint: fronts are pqedge, plain, nginx"}},
		{"no front", []string{"proxy", "-fronts", ","}, 2, []string{"no front to measure"}},
		{"zero runs", []string{"proxy", "-runs", "0"}, 2, []string{"must be at least 1"}},
		{"zero duration", []string{"proxy", "-duration", "0s"}, 2, []string{"-duration and -timeout must be positive"}},
		{"too many idle connections", []string{"proxy", "-idle-conns", "9000"}, 2, []string{"-idle-conns 9000: at most 8000"}},
		{"bad group", []string{"proxy", "-group", "MLKEM512"}, 2, []string{"-group:", "hint: use a group"}},
		{"bad cert", []string{"proxy", "-cert", "dsa"}, 2, []string{`-cert: unknown certificate algorithm "dsa"`}},
		{"negative max-others", []string{"proxy", "-max-others", "-1"}, 2, []string{"-max-others -1: must not be negative"}},
		{"stray argument", []string{"proxy", "now"}, 2, []string{`unexpected argument "now"`}},
		{"no peer root", []string{"proxy", "-peers-dir", "/nonexistent"}, 1, []string{"bench proxy needs the trixie peer root", "hint: the upstream (nginx) and the load generator (h2load)"}},
		{"serve-plain half a stream", []string{"serve-plain", "-cert", "c", "-key", "k", "-stream-listen", "127.0.0.1:0"}, 2, []string{"-stream-listen and -stream-upstream go together"}},
		{"serve-plain public debug listener", []string{"serve-plain", "-cert", "c", "-key", "k", "-debug-listen", "0.0.0.0:6060"}, 2, []string{`-debug-listen "0.0.0.0:6060": not a loopback address`}},
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

func TestRunDebugListenRefusesPublicAddress(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := runServe([]string{"-config", "../../config.example.toml", "-debug-listen", "[::]:6060"}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "not a loopback address") || !strings.Contains(stderr.String(), "hint: give -debug-listen a loopback address") {
		t.Errorf("exit %d; stderr:\n%s", code, stderr.String())
	}
}

// A tiny `bench proxy` through the real main, as a user runs it: pqedge
// and the plain floor are child processes of this binary (the copy
// testscript puts on PATH as pqedge), nginx the upstream and h2load the
// load from the peer root. Not pinned: tests share the machine.
func TestRunBenchProxy(t *testing.T) {
	root := peers.Trixie(t)
	if err := bench.H2LoadPresent(root.Root); err != nil {
		peers.Missing(t, "h2load in the trixie root")
	}
	pqedge, err := exec.LookPath("pqedge")
	if err != nil {
		t.Fatalf("testscript put no pqedge on PATH: %v", err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pqedge, "bench", "proxy", "-fronts", "pqedge,plain", "-modes", "h1,stream,idle",
		"-runs", "1", "-duration", "300ms", "-warmup", "200ms", "-connections", "4", "-stream-conns", "2", "-idle-conns", "20",
		"-timeout", "20s", "-pin=false", "-peers-dir", filepath.Dir(root.Root), "-out", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"req/s", "MiB/s", "RSS/conn", "pqedge / other fronts", "pqedge CPU per request <= 1.0x the Go floor"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), "FAILED") {
		t.Errorf("a cell failed:\n%s\n%s", stdout.String(), stderr.String())
	}
	// Progress: one line per run.
	if n := strings.Count(stderr.String(), " run 1: "); n != 6 {
		t.Errorf("%d progress lines, want 6:\n%s", n, stderr.String())
	}

	data, err := os.ReadFile(filepath.Join(out, "proxy.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil || len(rows) != 7 {
		t.Fatalf("CSV %v: %d rows", err, len(rows))
	}
	col := func(row []string, name string) string { return row[slices.Index(rows[0], name)] }
	for _, row := range rows[1:] {
		switch mode := col(row, "mode"); mode {
		case "idle":
			if col(row, "rss_per_conn") == "" || col(row, "goroutines_per_conn") == "" {
				t.Errorf("idle row without memory numbers: %q", row)
			}
		default:
			// The Go fronts' allocations come from their debug listeners.
			if col(row, "front_cpu_us") == "" || col(row, "allocs_per_unit") == "" || col(row, "allocs_per_unit") == "0.0" {
				t.Errorf("%s row without CPU or allocation numbers: %q", mode, row)
			}
		}
	}
	var res bench.ProxyResult
	data, err = os.ReadFile(filepath.Join(out, "proxy.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil || len(res.Cells) != 6 || len(res.Checks) == 0 {
		t.Errorf("proxy.json: %v, %d cells", err, len(res.Cells))
	}
	if entries, _ := filepath.Glob(filepath.Join(out, "work-*")); len(entries) > 0 {
		t.Errorf("work directory left behind: %v", entries)
	}
}
