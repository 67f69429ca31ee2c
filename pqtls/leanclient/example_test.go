package leanclient_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// A probe-style handshake: offer two hybrids but send a key share only for
// the first, and report what the server chose.
func ExampleDial() {
	res, err := leanclient.Dial(context.Background(), "127.0.0.1:8443", &leanclient.Config{
		ServerName:      "localhost",
		Groups:          []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768},
		VerifySignature: true,
		Timeout:         5 * time.Second,
	})
	if err != nil {
		fmt.Println("handshake failed:", leanclient.KindOf(err), err)
		return
	}
	fmt.Println(res.Group, res.HelloRetry, res.ServerFlightBytes)
}

// Load mode: one ShareCache for every handshake of a benchmark. The reused
// keys destroy forward secrecy; never use it for real traffic.
func ExampleShareCache() {
	cache := leanclient.NewShareCache()
	if err := cache.Precompute(tls.X25519MLKEM768); err != nil {
		panic(err)
	}
	cfg := &leanclient.Config{
		Groups:                 []tls.CurveID{tls.X25519MLKEM768},
		Precomputed:            cache,
		SkipCertificateParsing: true,
		CloseNotify:            true,
	}
	for range 3 {
		if _, err := leanclient.Dial(context.Background(), "127.0.0.1:8443", cfg); err != nil {
			fmt.Println(leanclient.KindOf(err))
		}
	}
}

// Resumption: the first handshake reads a ticket, the second offers it.
// Result.Resumed says whether the server accepted it (no certificate was
// sent) or made a full handshake instead.
func ExampleSession() {
	cfg := &leanclient.Config{ServerName: "localhost", ReadTicket: true, CloseNotify: true}
	first, err := leanclient.Dial(context.Background(), "127.0.0.1:8443", cfg)
	if err != nil || first.Session == nil {
		fmt.Println("no ticket:", err)
		return
	}
	cfg.Session = first.Session
	res, err := leanclient.Dial(context.Background(), "127.0.0.1:8443", cfg)
	if err != nil {
		fmt.Println("handshake failed:", leanclient.KindOf(err), err)
		return
	}
	fmt.Println("resumed:", res.Resumed, "server flight:", res.ServerFlightBytes, "B")
}
