package server

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// TestQUICRefusalIsConnectionRefused: a QUIC client refused for want of a
// handshake place (the queue full, or its address holding
// limits.handshakes_per_client places) gets CONNECTION_REFUSED at its
// first Initial, as a TCP client is closed at accept, not the TLS
// internal_error (CRYPTO_ERROR 0x150) of a refusal at its ClientHello;
// the refusal is counted under the same reason as before.
func TestQUICRefusalIsConnectionRefused(t *testing.T) {
	tests := []struct {
		name   string
		limits string
		// ownPlace: a handshake from the refused client's own address,
		// proven by a Retry, holds a place first.
		ownPlace bool
		reason   string
	}{
		{name: "handshake queue full", limits: "handshakes = 1\nhandshake_queue = 1\n", reason: "handshake_queue"},
		{name: "client at handshakes_per_client", limits: "handshakes = 1\nhandshake_queue = 8\nhandshakes_per_client = 1\n",
			ownPlace: true, reason: "handshakes_per_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, h3Config+"[timeouts]\nhandshake = \"30s\"\nhandshake_idle = \"30s\"\n[limits]\n"+tt.limits+inspectSite)
			// Two TCP handshakes from other addresses hold the slot and
			// a queue place: handshakes then queue, so new QUIC clients
			// must answer a Retry first (their addresses are proven).
			holdHandshake(t, ts, net.IPv4(127, 0, 0, 20))
			waitFor(t, "a TCP handshake in the slot", func() bool { return ts.metricSum("pqedge_handshakes_in_progress") == 1 })
			holdHandshake(t, ts, net.IPv4(127, 0, 0, 21))
			waitFor(t, "a TCP handshake in the queue", func() bool { return ts.metricSum("pqedge_handshakes_waiting") == 1 })

			client := net.IPv4(127, 0, 0, 9)
			if tt.ownPlace {
				udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: client})
				if err != nil {
					t.Fatal(err)
				}
				tr := &quic.Transport{Conn: &deafAfterRetry{PacketConn: udp}}
				t.Cleanup(func() { tr.Close() })
				go tr.Dial(t.Context(), ts.srv.QUICAddr("https"), &tls.Config{ServerName: "localhost", NextProtos: []string{"h3"}},
					&quic.Config{HandshakeIdleTimeout: 20 * time.Second})
				waitFor(t, "the proven QUIC handshake in the queue", func() bool { return ts.metricSum("pqedge_handshakes_waiting") == 2 })
			}

			udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: client})
			if err != nil {
				t.Fatal(err)
			}
			tr := &quic.Transport{Conn: udp}
			defer tr.Close()
			_, err = tr.Dial(t.Context(), ts.srv.QUICAddr("https"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"h3"}},
				&quic.Config{HandshakeIdleTimeout: 5 * time.Second})
			if !errors.Is(err, &quic.TransportError{Remote: true, ErrorCode: quic.ConnectionRefused}) || !strings.Contains(err.Error(), "CONNECTION_REFUSED") {
				t.Fatalf("the refused QUIC client saw %v, want CONNECTION_REFUSED from the server", err)
			}
			if n := ts.metricSum("pqedge_connections_refused_total", `reason="`+tt.reason+`"`); n != 1 {
				t.Errorf("refusals counted as %s: %v, want 1", tt.reason, n)
			}
		})
	}
}

// holdHandshake opens a TCP connection from ip that sends the first byte
// of a TLS record and nothing more: its handshake holds a slot or a
// queue place until the test ends, or timeouts.handshake_idle while
// handshakes queue (it is then evicted as stalled, as one that sent
// nothing would be as silent).
func holdHandshake(t *testing.T, ts *testServer, ip net.IP) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", ts.addr("https"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte{0x16}); err != nil { // a handshake record's content type
		t.Fatal(err)
	}
}

// deafAfterRetry is a QUIC client's socket that reads the server's first
// packet, a Retry when handshakes queue, and drops the rest: the client
// proves its address and then never answers, as a client that stalls
// after its ClientHello does.
// (Only net.PacketConn's methods: quic-go would read a *net.UDPConn's
// ReadMsgUDP directly.)
type deafAfterRetry struct {
	net.PacketConn
	read atomic.Bool
}

func (c *deafAfterRetry) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || c.read.CompareAndSwap(false, true) {
			return n, addr, err
		}
	}
}
