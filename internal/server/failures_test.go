package server

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// TestHandshakeFailureClasses drives real failing handshakes and checks the
// class each is counted under, as pqedge_handshake_failures_total and the
// HandshakeEvent report it.
func TestHandshakeFailureClasses(t *testing.T) {
	var mu sync.Mutex
	var events []HandshakeEvent
	dir := t.TempDir()
	cfg := loadConfig(t, dir, baseConfig+`
[timeouts]
handshake = "1s"
[[listener]]
name = "strict"
address = "127.0.0.1:0"
strict_sni = true
[[site]]
name = "local"
server_names = ["localhost", "pref.test"]
[[site.route]]
path = "/"
handler = "inspect"
[[site]]
name = "only"
server_names = ["only.test"]
[site.tls]
policy = "pq-only"
[[site.route]]
path = "/"
handler = "inspect"
[[site]]
name = "modern"
server_names = ["modern.test"]
[site.tls]
min_version = "1.3"
[[site.route]]
path = "/"
handler = "inspect"
`)
	srv, err := New(cfg, Options{Logger: testLogger(t), OnHandshake: func(ev HandshakeEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(t.Context()) })
	ts := &testServer{t: t, srv: srv, cfg: cfg, dir: dir}
	goTLS := func(c *tls.Config) func(addr string) {
		return func(addr string) {
			if conn, err := tls.Dial("tcp", addr, c); err == nil {
				conn.Close()
				t.Error("the handshake succeeded")
			}
		}
	}
	tests := []struct {
		name     string
		listener string
		client   func(addr string)
		reason   string
	}{
		{"plain HTTP", "https", func(addr string) {
			c := dialTimeout(t, addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(resp, "HTTP/1.0 400 ") {
				t.Errorf("plain HTTP got %q, %v; want a 400 status line", resp, err)
			}
		}, reasonNotTLS},
		{"silent client", "https", func(addr string) {
			c := dialTimeout(t, addr)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 1)) // returns when the server gives up
		}, reasonTimeout},
		{"client gone mid-hello", "https", func(addr string) {
			c := dialTimeout(t, addr)
			c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
			c.Close()
		}, reasonClientClosed},
		{"TLS 1.2 client offering only secp384r1", "https",
			goTLS(&tls.Config{ServerName: "localhost", MaxVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.CurveP384}, InsecureSkipVerify: true}),
			reasonNoCommonGroup},
		// RFC 8422 Section 5.1: the P-256 leaf is not for a TLS 1.2
		// client without P-256 in its groups (OpenSSL aborts: "wrong
		// curve"), and there is no other chain.
		{"TLS 1.2 client whose groups lack the leaf's curve", "https",
			goTLS(&tls.Config{ServerName: "localhost", MaxVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.X25519}, InsecureSkipVerify: true}),
			reasonCertificate},
		{"classical client on pq-only", "https",
			goTLS(&tls.Config{ServerName: "only.test", CurvePreferences: []tls.CurveID{tls.X25519}, InsecureSkipVerify: true}),
			reasonNoCommonGroup},
		{"TLS 1.2 client on a min_version 1.3 site", "https",
			goTLS(&tls.Config{ServerName: "modern.test", MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true}),
			reasonVersion},
		{"client rejects the certificate", "https",
			goTLS(&tls.Config{ServerName: "localhost"}), // the local CA is not in its roots
			reasonCertificate},
		{"no chain fits the client's signature algorithms", "https", func(addr string) {
			_, err := leanclient.Dial(t.Context(), addr, &leanclient.Config{ServerName: "localhost", Groups: []tls.CurveID{tls.X25519},
				SignatureAlgorithms: []tls.SignatureScheme{tls.Ed25519}, Timeout: 5 * time.Second})
			// RFC 8446 Section 6.2: no acceptable parameters is
			// handshake_failure; internal_error would blame the server.
			var le *leanclient.Error
			if !errors.As(err, &le) || le.Kind != leanclient.KindAlert || le.Alert != 40 {
				t.Errorf("the client got %v, want the handshake_failure alert (40)", err)
			}
		}, reasonCertificate},
		{"strict_sni and an unknown name", "strict",
			goTLS(&tls.Config{ServerName: "nothing.test", InsecureSkipVerify: true}),
			reasonUnknownName},
	}
	wantErr := map[string]string{
		"no chain fits the client's signature algorithms":   certs.ErrNoVerifiableChain.Error(),
		"TLS 1.2 client whose groups lack the leaf's curve": certs.ErrNoVerifiableChain.Error(),
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			before := len(events)
			mu.Unlock()
			tt.client(ts.addr(tt.listener))
			var ev HandshakeEvent
			waitFor(t, "the handshake event", func() bool {
				mu.Lock()
				defer mu.Unlock()
				if len(events) > before {
					ev = events[before]
					return true
				}
				return false
			})
			if ev.Handshake != nil || ev.Reason != tt.reason {
				t.Errorf("counted as %q (err %v), want %q", ev.Reason, ev.Err, tt.reason)
			}
			// The event says why in pqedge's words, not crypto/tls's.
			if want := wantErr[tt.name]; want != "" && (ev.Err == nil || !strings.Contains(ev.Err.Error(), want)) {
				t.Errorf("the event's error is %v, want one saying %q", ev.Err, want)
			}
		})
	}
	for reason, want := range map[string]float64{reasonNotTLS: 1, reasonTimeout: 1, reasonClientClosed: 1, reasonNoCommonGroup: 2, reasonVersion: 1, reasonCertificate: 3} {
		if got := ts.metricSum("pqedge_handshake_failures_total", `listener="https"`, `reason="`+reason+`"`); got != want {
			t.Errorf("pqedge_handshake_failures_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}
