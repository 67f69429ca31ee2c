package main

import (
	"net"
	"os"
	"path/filepath"
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
