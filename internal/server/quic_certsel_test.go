package server

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/pqtls/quichello"
)

// TestHTTP3ChainSelectionWithoutClientHello: over QUIC the chain is chosen
// with the ClientHello the socket's tracker recorded from the Initial
// packets, for signature_algorithms_cert (RFC 8446 section 4.4.2.2). A Go
// 1.27 client lists ML-DSA in signature_algorithms only (go.dev/issue/82536),
// so under pq_certs = "always" it gets the classical chain, recorded or
// not: with the tracker full (1,024 attempts in its 10 s, which a busy
// listener or anyone sending Initials from as many addresses reaches) the
// ClientHello is unknown, and the ML-DSA chain, signed with ML-DSA-87, went
// to clients that said they cannot verify it.
func TestHTTP3ChainSelectionWithoutClientHello(t *testing.T) {
	ts, hs := startH3(t, h3Config+inspectSiteWith("pq_certs = \"always\"\n"))
	c, tr := ts.h3Client()
	get := func(what string, recorded bool) {
		t.Helper()
		mark := hs.mark()
		resp, err := c.Get(ts.h3URL("https") + "/")
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
		ev := hs.wait(t, mark, "the handshake event", overQUIC)
		if ev.Handshake == nil {
			t.Fatalf("%s: no handshake record (%v)", what, ev.Err)
		}
		if got := ev.Handshake.Signature; got != tls.ECDSAWithP256AndSHA256 {
			t.Errorf("%s: signed with %s, want the classical chain's ecdsa_secp256r1_sha256", what, pqtls.SignatureName(got))
		}
		if (ev.Hello != nil) != recorded {
			t.Errorf("%s: ClientHello recorded: %v, want %v", what, ev.Hello != nil, recorded)
		}
	}
	get("recorded ClientHello", true)

	fillTracker(t, ts, "https")
	get("tracker full", false)
}

// fillTracker fills the ClientHello tracker of a listener's QUIC socket with
// attempts from documentation addresses (192.0.2.0/24, RFC 5737), each an
// authentic first Initial of a quic-go client, so that it follows no new
// client for its TTL.
func fillTracker(t *testing.T, ts *testServer, listener string) {
	t.Helper()
	want := ts.srv.QUICAddr(listener).String()
	var tracker *quichello.Tracker
	ts.srv.sockets.mu.Lock()
	for _, sk := range ts.srv.sockets.byKey {
		if sk.quic != nil && sk.quic.udp.LocalAddr().String() == want {
			tracker = sk.quic.tracker
		}
	}
	ts.srv.sockets.mu.Unlock()
	if tracker == nil {
		t.Fatalf("no QUIC socket at %s", want)
	}
	initial := firstInitial(t)
	for i := range quichello.DefaultMaxAttempts {
		tracker.Observe(initial, &net.UDPAddr{IP: net.IPv4(192, 0, 2, byte(i%250+1)), Port: 1024 + i})
	}
	if tracker.Dropped() != 0 {
		t.Fatalf("the tracker dropped %d attempts while being filled", tracker.Dropped())
	}
}

// firstInitial returns the first datagram a quic-go client sends: an
// Initial packet with (the start of) its ClientHello.
func firstInitial(t *testing.T) []byte {
	t.Helper()
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	go quic.DialAddr(ctx, sink.LocalAddr().String(), &tls.Config{ServerName: "localhost", NextProtos: []string{"h3"}}, nil)
	sink.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := sink.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !quichello.IsInitial(buf[:n]) {
		t.Fatalf("the first datagram is no Initial: % x", buf[:min(n, 16)])
	}
	return buf[:n]
}
