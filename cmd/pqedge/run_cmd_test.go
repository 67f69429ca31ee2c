package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunStartupErrorsHaveHints: when the server cannot start, run says why
// and ends with hint lines, like every other command.
func TestRunStartupErrorsHaveHints(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "pqedge.toml")
	// The admin listener takes the busy port: the https one is free, so
	// the error is the bind, not a config problem.
	cfg := strings.Replace(lifecycleConfig(dir, freePort(t), "127.0.0.1:1", "pq-preferred"), "[log]",
		"[admin]\nlisten = \""+busy.Addr().String()+"\"\n[log]", 1)
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPqedge(t, file)
	select {
	case err := <-p.done:
		if err == nil {
			t.Fatal("pqedge started on a busy address")
		}
	case <-time.After(30 * time.Second): // a deadline, not a wait: startup takes well under a second
		t.Fatalf("pqedge did not stop; stderr:\n%s", p.stderr.String())
	}
	out := p.stderr.String()
	for _, want := range []string{
		"pqedge: error: failed to start: ",
		"hint: another process already listens on that address: stop it, or change the address in " + file,
		"hint: `pqedge config check " + file + "` checks the config and every file it names without starting",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
}
