package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// startTLSTarget runs a crypto/tls server on loopback for the test's life,
// with an ECDSA P-256 chain for localhost and the given groups (default:
// crypto/tls's). Each connection is held until the client closes it.
func startTLSTarget(t *testing.T, groups ...tls.CurveID) string {
	t.Helper()
	cert, _, err := certs.NewChain(certs.AlgECDSAP256, []string{"localhost"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*cert}, CurvePreferences: groups})
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

// startHTTPSTarget is crypto/tls + net/http on loopback, answering
// /hello with "hello\n" and anything else with 404.
func startHTTPSTarget(t *testing.T) string {
	t.Helper()
	cert, _, err := certs.NewChain(certs.AlgECDSAP256, []string{"localhost"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*cert}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
