package server

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/pqedge/pqedge/internal/freeport"
)

// reusePortConfig is a one-site config listening on port, with or
// without reuse_port.
func reusePortConfig(port int, reuse bool) string {
	return fmt.Sprintf(`data_dir = "{{DATA}}/data"
[log]
access = false
[[listener]]
name = "https"
address = "127.0.0.1:%d"
reuse_port = %t
`+inspectSite, port, reuse)
}

// TestReusePort: servers that all set reuse_port share an address; one
// that does not is refused it, as is one setting it beside a server that
// does not; a reload that only toggles reuse_port keeps the open socket
// and says the change waits for a restart.
func TestReusePort(t *testing.T) {
	port := freeport.Must(t)
	startOn := func(port int, reuse bool) (*Server, error) {
		return New(loadConfig(t, t.TempDir(), reusePortConfig(port, reuse)), Options{Logger: testLogger(t)})
	}
	start := func(reuse bool) (*Server, error) { return startOn(port, reuse) }
	var servers []*Server
	t.Cleanup(func() {
		for _, s := range servers {
			s.Shutdown(t.Context())
		}
	})
	for i := range 2 {
		s, err := start(true)
		if err != nil {
			t.Fatalf("server %d with reuse_port: %v", i+1, err)
		}
		servers = append(servers, s)
	}
	if s, err := start(false); err == nil {
		servers = append(servers, s)
		t.Fatal("a server without reuse_port bound an address two servers share")
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v, want address already in use", err)
	}

	other := freeport.Must(t)
	plain, err := startOn(other, false)
	if err != nil {
		t.Fatal(err)
	}
	servers = append(servers, plain)
	if s, err := startOn(other, true); err == nil {
		servers = append(servers, s)
		t.Fatal("a server with reuse_port joined an address a server without it holds")
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v, want address already in use", err)
	}

	t.Run("reload toggling it", func(t *testing.T) {
		var logs syncBuffer
		dir := t.TempDir()
		port := freeport.Must(t)
		s, err := New(loadConfig(t, dir, reusePortConfig(port, false)), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Shutdown(t.Context())
		before := s.ListenerAddr("https").String()
		if err := s.Reload(t.Context(), loadConfig(t, dir, reusePortConfig(port, true))); err != nil {
			t.Fatal(err)
		}
		if after := s.ListenerAddr("https").String(); after != before {
			t.Errorf("listener moved from %s to %s", before, after)
		}
		if !strings.Contains(logs.String(), "reuse_port changed on an address that stays open") {
			t.Errorf("no warning about the kept socket; log:\n%s", logs.String())
		}
	})
}

// TestChainControl: socket options run in order and the first error
// stops the bind.
func TestChainControl(t *testing.T) {
	var ran []string
	fn := func(name string, err error) func(string, string, syscall.RawConn) error {
		return func(string, string, syscall.RawConn) error {
			ran = append(ran, name)
			return err
		}
	}
	boom := errors.New("boom")
	tests := []struct {
		name    string
		fns     []func(string, string, syscall.RawConn) error
		wantRan []string
		wantErr error
	}{
		{"none", nil, nil, nil},
		{"one", []func(string, string, syscall.RawConn) error{fn("a", nil)}, []string{"a"}, nil},
		{"in order", []func(string, string, syscall.RawConn) error{fn("a", nil), fn("b", nil)}, []string{"a", "b"}, nil},
		{"first error stops", []func(string, string, syscall.RawConn) error{fn("a", boom), fn("b", nil)}, []string{"a"}, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran = nil
			c := chainControl(tt.fns...)
			if tt.fns == nil {
				if c != nil {
					t.Fatal("no option gives a Control function")
				}
				return
			}
			if err := c("tcp4", "127.0.0.1:0", nil); !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if fmt.Sprint(ran) != fmt.Sprint(tt.wantRan) {
				t.Errorf("ran %v, want %v", ran, tt.wantRan)
			}
		})
	}
}
