package main

import (
	"context"
	"crypto/tls"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// TestPKIRecipeFirstFlight follows the README's PKI recipe, and the bare
// defaults, through the real commands, serves the chain with crypto/tls
// and measures the server's first flight with the lean client: it must fit
// TCP's initial window (no extra round trip), and be what `certs issue`
// printed.
func TestPKIRecipeFirstFlight(t *testing.T) {
	tests := []struct {
		name       string
		init       []string
		issueExtra []string
	}{
		{"README recipe", []string{"--alg", "mldsa87", "--intermediate", "--intermediate-alg", "mldsa44"}, []string{"--alg", "mldsa44"}},
		{"defaults", []string{"--intermediate"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ca, leaf := filepath.Join(dir, "ca"), filepath.Join(dir, "www")
			if r := runCertsCLI(append([]string{"init", "--dir", ca}, tt.init...)...); r.code != 0 {
				t.Fatal(r.stderr)
			}
			r := runCertsCLI(append([]string{"issue", "--ca", ca, "--name", "www.example.com", "--out", leaf}, tt.issueExtra...)...)
			if r.code != 0 {
				t.Fatal(r.stderr)
			}
			m := regexp.MustCompile(`first flight (\d+) B: fits TCP's initial window`).FindStringSubmatch(r.stdout)
			if m == nil {
				t.Fatalf("certs issue does not say the chain fits:\n%s", r.stdout)
			}
			printed, _ := strconv.Atoi(m[1])

			cert, err := certs.LoadKeyPair(leaf+".crt", leaf+".key")
			if err != nil {
				t.Fatal(err)
			}
			addr := serveChain(t, cert)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := leanclient.Dial(ctx, addr, &leanclient.Config{
				ServerName: "www.example.com", Groups: []tls.CurveID{tls.X25519MLKEM768},
				SignatureAlgorithms: []tls.SignatureScheme{tls.MLDSA44}, ALPN: []string{"h2"},
				VerifySignature: true, CloseNotify: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.SignatureScheme != tls.MLDSA44 || res.Group != tls.X25519MLKEM768 {
				t.Fatalf("negotiated %v / %v, want ML-DSA-44 over X25519MLKEM768", res.SignatureScheme, res.Group)
			}
			if res.ServerFlightBytes > certs.InitialWindowBytes {
				t.Errorf("first flight %d B exceeds TCP's initial window (%d B)", res.ServerFlightBytes, certs.InitialWindowBytes)
			}
			// ECDSA-free chain: sizes are exact, only the record framing
			// could differ from the estimate.
			if d := res.ServerFlightBytes - printed; d < -8 || d > 8 {
				t.Errorf("measured first flight %d B, certs issue printed %d B", res.ServerFlightBytes, printed)
			}
			t.Logf("%s: first flight %d B (printed %d B)", tt.name, res.ServerFlightBytes, printed)
		})
	}
}

// serveChain runs a crypto/tls server with cert on loopback for the test's
// life. It sends no session tickets, which would follow the first flight.
func serveChain(t *testing.T, cert *tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{*cert}, NextProtos: []string{"h2"}, SessionTicketsDisabled: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				// Bounds a client that stalls mid-handshake or never closes.
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(io.Discard, c)
			})
		}
	})
	return ln.Addr().String()
}
