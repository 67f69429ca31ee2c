package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestProbeCommand(t *testing.T) {
	addr := startTLSTarget(t, tls.X25519MLKEM768, tls.X25519)

	t.Run("table", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := runProbe([]string{addr, "-servername", "localhost"}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		out := stdout.String()
		for _, tt := range []struct{ row, want string }{
			{"X25519MLKEM768", "X25519MLKEM768 yes direct yes yes"},
			{"x25519", "x25519 no direct yes yes"},
			{"SecP256r1MLKEM768", "SecP256r1MLKEM768 yes refused no no alert handshake_failure"},
			{"preference:", "preference: X25519MLKEM768 > x25519 (server's own order)"},
			{"ECDSA", "ECDSA ok ecdsa_secp256r1_sha256 ECDSA P-256 2"}, // leaf + intermediate
			{"mldsa44", "mldsa44 alert handshake_failure - - - - -"},
			{"records+writes", "records+writes ok"},
		} {
			if got := tableRow(out, tt.row); !strings.HasPrefix(got, tt.want) {
				t.Errorf("row %q is %q, want %q...\n%s", tt.row, got, tt.want, out)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := runProbe([]string{"-json", "-servername", "localhost", addr}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		var r probeReportJSON
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			t.Fatalf("bad JSON: %v\n%s", err, stdout.String())
		}
		if strings.Join(r.Preference, ",") != "X25519MLKEM768,x25519" {
			t.Errorf("preference %v", r.Preference)
		}
		status := map[string]string{}
		for _, g := range r.Groups {
			status[g.Name] = g.Status
		}
		if status["X25519MLKEM768"] != "direct" || status["MLKEM512"] != "refused" {
			t.Errorf("group status %v", status)
		}
		var ecdsaOK bool
		for _, c := range r.Certificates {
			if c.SignatureList == "ECDSA" {
				ecdsaOK = c.OK && c.LeafKey == "ECDSA P-256" && c.ChainLength == 2 && c.ServerFlightBytes > c.ChainBytes
			}
		}
		if !ecdsaOK {
			t.Errorf("ECDSA certificate not reported: %+v", r.Certificates)
		}
		if len(r.Splits) != 3 || !r.Splits[0].OK {
			t.Errorf("splits %+v", r.Splits)
		}
	})
}

func TestProbeCommandErrors(t *testing.T) {
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	// A real plain HTTP server: net/http answers a ClientHello with a 400.
	httpSrv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 5 * time.Second}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go httpSrv.Serve(httpLn)
	t.Cleanup(func() { httpSrv.Close() })
	plainHTTP := httpLn.Addr().String()
	// A server that accepts and never says a word.
	silentLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	t.Cleanup(func() { silentLn.Close(); held.Wait() })
	held.Go(func() {
		for {
			c, err := silentLn.Accept()
			if err != nil {
				return
			}
			held.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second)) // bounds a client that stays
				io.Copy(io.Discard, c)
			})
		}
	})
	silent := silentLn.Addr().String()

	tests := []struct {
		name     string
		args     []string
		code     int
		wantErrs []string
		notErrs  []string // hints meant for another cause
	}{
		{name: "no address", args: nil, code: 2, wantErrs: []string{"pqedge: error: probe needs exactly one HOST:PORT", "hint: example"}},
		{name: "no port", args: []string{"localhost"}, code: 2, wantErrs: []string{"bad address", "hint: give HOST:PORT"}},
		{name: "bad timeout", args: []string{"-timeout", "0s", "127.0.0.1:1"}, code: 2, wantErrs: []string{"-timeout must be positive"}},
		{name: "unknown flag", args: []string{"-bogus", "127.0.0.1:1"}, code: 2, wantErrs: []string{"flag provided but not defined", "hint: see `pqedge probe --help`"}},
		{name: "nothing listens", args: []string{closed, "-timeout", "2s"}, code: 1, wantErrs: []string{"failed to probe", "connection refused", "hint: nothing listens on " + closed + ": check the host and port"},
			notErrs: []string{"raise -timeout"}},
		{name: "plain HTTP server", args: []string{plainHTTP, "-quic=false"}, code: 1, wantErrs: []string{
			"pqedge: error: " + plainHTTP + " is not a TLS server (it answered with HTTP); its first line: \"HTTP/1.1 400 Bad Request\"\n",
			"hint: pqedge probe speaks TLS first: give the port of a TLS service"}},
		{name: "silent server", args: []string{silent, "-quic=false", "-timeout", "300ms"}, code: 1, wantErrs: []string{
			"answered nothing to a TLS ClientHello: it is not a TLS server, or it is stalled",
			"hint: check that " + silent + " is the TLS port of the service", "hint: raise -timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runProbe(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			for _, w := range tt.wantErrs {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			for _, w := range tt.notErrs {
				if strings.Contains(stderr.String(), w) {
					t.Errorf("stderr has %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

// tableRow returns the output line whose first field is first, with its
// fields joined by single spaces (the column widths are tabwriter's).
func tableRow(out, first string) string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == first {
			return strings.Join(f, " ")
		}
	}
	return ""
}
