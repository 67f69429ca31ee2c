package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/freeport"
)

// TestSIGTERMDuringSlowReload: a SIGHUP whose config orders a certificate
// from an ACME directory that never answers blocks that reload, not the
// process: SIGTERM cancels it and pqedge exits well within the drain
// deadline (timeouts.shutdown is 10 s here; the order's own bound is 2
// minutes).
func TestSIGTERMDuringSlowReload(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reached := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			reached <- c // held open, never answered
		}
	}()
	file := filepath.Join(dir, "pqedge.toml")
	base := lifecycleConfig(dir, freeport.Must(t), "127.0.0.1:1", "pq-preferred")
	if err := os.WriteFile(file, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPqedge(t, file)
	p.waitLog(t, "pqedge started")
	slow := base + `
[[site]]
name = "acme"
server_names = ["acme.pqedge.test"]
certs = "acme"
[site.acme]
email = "ops@pqedge.test"
directory = "https://` + ln.Addr().String() + `/directory"
[[site.route]]
path = "/"
handler = "inspect"
`
	if err := os.WriteFile(file, []byte(slow), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	select {
	case c := <-reached:
		defer c.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("the reload never contacted the ACME directory")
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("pqedge exited with %v, want 0", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("exit took %v after SIGTERM", took)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("pqedge did not exit after SIGTERM during a blocked reload")
	}
	p.waitLog(t, "reload failed")
}

// TestWaitReloads: after a shutdown, waitReloads waits for the reloads in
// flight and warns only when one outlives the shutdown deadline and its
// grace; with none in flight it says nothing, even when the shutdown used
// its whole deadline.
func TestWaitReloads(t *testing.T) {
	tests := []struct {
		name      string
		reload    time.Duration // how long the one reload runs; 0: none, -1: stuck
		cancelled bool          // the shutdown deadline has passed
		wantWarn  bool
	}{
		{name: "none in flight, deadline passed", cancelled: true},
		{name: "none in flight", cancelled: false},
		{name: "one ending before the deadline", reload: 50 * time.Millisecond},
		{name: "one ending just after the deadline", reload: 50 * time.Millisecond, cancelled: true},
		{name: "one stuck", reload: -1, cancelled: true, wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancelled {
				cancel()
			}
			stuck := make(chan struct{})
			defer close(stuck)
			var r inflight
			ended := make(chan struct{})
			switch {
			case tt.reload > 0:
				r.Go(func() { time.Sleep(tt.reload); close(ended) })
			case tt.reload < 0:
				r.Go(func() { <-stuck })
			}
			waitReloads(ctx, &r, log)
			if tt.reload > 0 {
				select {
				case <-ended:
				default:
					t.Error("waitReloads returned before the reload ended")
				}
			}
			if warned := strings.Contains(logs.String(), "had not ended"); warned != tt.wantWarn {
				t.Errorf("warned %v, want %v; log: %s", warned, tt.wantWarn, logs.String())
			}
		})
	}
}
