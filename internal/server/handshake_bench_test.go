//go:build unix

package server

import (
	"crypto/tls"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// processCPU is the user plus system CPU this process has used: on a
// shared, noisy machine CPU time is steadier than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHandshake compares a full TLS 1.3 handshake (X25519MLKEM768, no
// resumption, the same ECDSA P-256 certificate) through pqedge with the same
// handshake against a plain crypto/tls server (handshake only) and a plain
// net/http HTTPS server. Both sides run in this
// process, so ns/op is client plus server CPU: the client's share is the
// same in both, and the difference is what pqedge adds (ClientHello
// capture and parsing, site selection, certificate selection, recording and
// metrics). `pqedge bench` measures the server alone, from /proc.
//
//	go test -run '^$' -bench BenchmarkHandshake -benchtime 3s -count 6 ./internal/server
func BenchmarkHandshake(b *testing.B) {
	ts := startServer(b, baseConfig+inspectSite)
	cert := ts.srv.current.Load().sites["local"].certs.selector().Classical

	plainLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates:     []tls.Certificate{*cert},
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768},
		NextProtos:       []string{"h2", "http/1.1"},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer plainLn.Close()
	go func() {
		for {
			c, err := plainLn.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()

	// The same handshake in front of net/http: the floor for a Go HTTPS
	// server, which pays for a connection's HTTP state even when the client
	// leaves after the handshake, as pqedge does.
	httpsLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates:     []tls.Certificate{*cert},
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768},
		NextProtos:       []string{"h2", "http/1.1"},
	})
	if err != nil {
		b.Fatal(err)
	}
	https := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 10 * time.Second}
	go https.Serve(httpsLn)
	defer https.Close()

	client := &tls.Config{
		InsecureSkipVerify: true, // verification is client CPU, the same in both
		ServerName:         "localhost",
		CurvePreferences:   []tls.CurveID{tls.X25519MLKEM768},
		NextProtos:         []string{"h2", "http/1.1"},
	}
	for _, target := range []struct{ name, addr string }{
		{"plain-tls", plainLn.Addr().String()},
		{"plain-https", httpsLn.Addr().String()},
		{"pqedge", ts.addr("https")},
	} {
		b.Run(target.name, func(b *testing.B) {
			cpu := processCPU()
			for b.Loop() {
				raw, err := net.Dial("tcp", target.addr)
				if err != nil {
					b.Fatal(err)
				}
				c := tls.Client(raw, client)
				if err := c.Handshake(); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
