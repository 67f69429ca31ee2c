package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pqedge/pqedge/bench"
	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/server"
	"github.com/pqedge/pqedge/pqtls"
)

// startHTTP3Target runs bench's plain server with HTTP/3: TLS over TCP and
// QUIC on the same port, for groups.
func startHTTP3Target(t *testing.T, groups ...tls.CurveID) string {
	t.Helper()
	chain, err := bench.MakeChain(t.TempDir(), certs.AlgECDSAP256, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- bench.ServePlain(ctx, bench.PlainOptions{Listen: "127.0.0.1:0", CertFile: chain.CertFile, KeyFile: chain.KeyFile,
			Groups: groups, QUIC: true, Ready: func(a string) { ready <- a }})
	}()
	t.Cleanup(func() { cancel(); <-errc })
	select {
	case addr := <-ready:
		return addr
	case err := <-errc:
		t.Fatal(err)
	}
	return ""
}

func TestProbeQUIC(t *testing.T) {
	h3 := startHTTP3Target(t, tls.X25519MLKEM768, tls.X25519)
	tcpOnly := startTLSTarget(t, tls.X25519MLKEM768)
	tests := []struct {
		name string
		addr string
		rows []struct{ row, want string }
	}{
		{"HTTP/3 server", h3, []struct{ row, want string }{
			{"speaks HTTP/3", "speaks HTTP/3: yes (QUIC v1, ALPN h3, X25519MLKEM768, ecdsa_secp256r1_sha256)"},
			{"ClientHello:", "ClientHello: 2 Initial packets;"},
			{"  X25519MLKEM768", "X25519MLKEM768 yes yes"},
			{"  SecP256r1MLKEM768", "SecP256r1MLKEM768 yes no alert:handshake_failure"},
			{"  x25519", "x25519 no yes"},
		}},
		{"TCP only", tcpOnly, []struct{ row, want string }{
			{"no QUIC", "no QUIC: no answer within 500ms"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runProbe([]string{tt.addr, "-servername", "localhost", "-quic-timeout", "500ms"}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			out := stdout.String()
			for _, r := range tt.rows {
				if got := quicRow(out, r.row); !strings.HasPrefix(got, r.want) {
					t.Errorf("row %q is %q, want %q...\n%s", r.row, got, r.want, out)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := runProbe([]string{"-json", "-servername", "localhost", h3}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		var r probeReportJSON
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if q := r.QUIC; q == nil || !q.HTTP3 || q.Group != "X25519MLKEM768" || q.InitialPackets != 2 || q.AmplificationBudget != 3*q.ClientFirstFlight {
			t.Errorf("quic %+v", r.QUIC)
		}
	})

	t.Run("off", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := runProbe([]string{"-quic=false", tcpOnly}, &stdout, &stderr); code != 0 || strings.Contains(stdout.String(), "HTTP/3") {
			t.Errorf("exit %d, output:\n%s", code, stdout.String())
		}
	})
}

// quicRow is the first line of the HTTP/3 section that starts with
// prefix (leading spaces aside), whitespace collapsed.
func quicRow(out, prefix string) string {
	_, section, _ := strings.Cut(out, "HTTP/3 (QUIC")
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, prefix) || strings.HasPrefix(strings.TrimSpace(line), strings.TrimSpace(prefix)) {
			return strings.Join(strings.Fields(line), " ")
		}
	}
	return ""
}

// TestProbeQUICPQEdge probes pqedge's own HTTP/3 listener (pq-only): it
// speaks HTTP/3, accepts the hybrids and refuses the classical groups
// over QUIC as over TCP, and pqedge counts every probe handshake under its
// own family, pqedge, not as a visitor's.
func TestProbeQUICPQEdge(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pqedge.toml")
	os.WriteFile(file, []byte(`
data_dir = "data"
[log]
access = false
[[listener]]
name = "https"
address = "127.0.0.1:0"
http3 = true
[[site]]
name = "local"
server_names = ["localhost"]
[site.tls]
policy = "pq-only"
[[site.route]]
path = "/"
handler = "inspect"
`), 0o600)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	families := map[string]int{}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnHandshake: func(ev server.HandshakeEvent) {
		if ev.Transport == "quic" {
			mu.Lock()
			families[ev.Family]++
			mu.Unlock()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	var stdout, stderr bytes.Buffer
	if code := runProbe([]string{srv.ListenerAddr("https").String(), "-servername", "localhost"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, r := range []struct{ row, want string }{
		{"speaks HTTP/3", "speaks HTTP/3: yes (QUIC v1, ALPN h3, X25519MLKEM768, ecdsa_secp256r1_sha256)"},
		{"  X25519MLKEM768", "X25519MLKEM768 yes yes"},
		{"  SecP256r1MLKEM768", "SecP256r1MLKEM768 yes yes"},
		{"  SecP384r1MLKEM1024", "SecP384r1MLKEM1024 yes yes"},
		{"  x25519", "x25519 no no"},
	} {
		if got := quicRow(out, r.row); !strings.HasPrefix(got, r.want) {
			t.Errorf("row %q is %q, want %q...\n%s", r.row, got, r.want, out)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(families) != 1 || families[pqtls.FamilyPQEdge] < 5 {
		t.Errorf("pqedge counted the probe's QUIC handshakes under families %v, want pqedge alone", families)
	}
}
