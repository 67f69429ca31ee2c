package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/freeport"
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
	cfg := strings.Replace(lifecycleConfig(dir, freeport.Must(t), "127.0.0.1:1", "pq-preferred"), "[log]",
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

// TestStartHints: each usual cause of a failed start gets the hint that
// fixes it, and no hint meant for another cause.
func TestStartHints(t *testing.T) {
	bindErr := func(errno syscall.Errno) error {
		return fmt.Errorf("failed to apply p.toml: failed to listen on 127.0.0.1:443: %w",
			&net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)})
	}
	for _, tt := range []struct {
		name  string
		err   error
		want  string // a hint that must be given
		wrong string // a hint that must not
	}{
		{name: "address in use", err: bindErr(syscall.EADDRINUSE),
			want: "another process already listens on that address"},
		{name: "privileged port", err: bindErr(syscall.EACCES),
			want: "ports below 1024 need root or CAP_NET_BIND_SERVICE"},
		{name: "anycast without CAP_NET_ADMIN",
			err:   fmt.Errorf("failed to apply p.toml: failed to create anycast device %q: pqedge needs CAP_NET_ADMIN: %w", "pqedge-any0", syscall.EACCES),
			want:  "[anycast] needs CAP_NET_ADMIN: run pqedge as root, or give its service AmbientCapabilities=CAP_NET_ADMIN",
			wrong: "ports below 1024"},
		{name: "anycast without /dev/net/tun",
			err:  fmt.Errorf("failed to create anycast device %q: /dev/net/tun is missing (containers need it passed in): %w", "pqedge-any0", fs.ErrNotExist),
			want: "pass it into the container (--device /dev/net/tun"},
		{name: "anything else", err: errors.New("failed to apply p.toml: something odd"),
			want: "`pqedge config check p.toml` checks the config"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hints := strings.Join(startHints(tt.err, "p.toml"), "\n")
			if !strings.Contains(hints, tt.want) {
				t.Errorf("hints lack %q:\n%s", tt.want, hints)
			}
			if tt.wrong != "" && strings.Contains(hints, tt.wrong) {
				t.Errorf("hints have %q, meant for another cause:\n%s", tt.wrong, hints)
			}
		})
	}
}
