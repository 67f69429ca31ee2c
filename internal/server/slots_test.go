package server

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// TestHandshakeSlotsComeBack: every way a connection's handshake ends
// (plain HTTP, a client that leaves, one that stalls past the handshake
// timeout, one that waits in the queue past it, a completed handshake)
// gives its slot or queue place back exactly once: afterwards nothing is
// held, and with one slot and one queue place a handshake still
// completes. A leaked place would leave the limiter full (the accept loop
// paused for good), a place given back twice would let more handshakes
// run than the cap.
func TestHandshakeSlotsComeBack(t *testing.T) {
	ts := startServer(t, baseConfig+shortTimeouts+"[limits]\nhandshakes = 1\nhandshake_queue = 1\n"+inspectSite)
	addr := ts.addr("https")
	handshake := func(t *testing.T) {
		t.Helper()
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		c.Close()
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"plain HTTP on the TLS port", func(t *testing.T) {
			c := dialTimeout(t, addr)
			defer c.Close()
			c.Write([]byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 512))
		}},
		{"client leaves at once", func(t *testing.T) { dialTimeout(t, addr).Close() }},
		{"half a record, then leaves", func(t *testing.T) {
			c := dialTimeout(t, addr)
			c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
			c.Close()
		}},
		{"stalls past the handshake timeout", func(t *testing.T) {
			c := dialTimeout(t, addr)
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 1)) // returns when the server closes it
		}},
		{"queued behind a staller, past the timeout", func(t *testing.T) {
			staller := dialTimeout(t, addr)
			defer staller.Close()
			waitFor(t, "the staller's slot", func() bool { return ts.srv.limiter.Stats().Handshakes == 1 })
			queued := dialTimeout(t, addr)
			defer queued.Close()
			waitFor(t, "the queued connection", func() bool { return ts.srv.limiter.Stats().WaitingHandshakes == 1 })
			queued.SetReadDeadline(time.Now().Add(5 * time.Second))
			queued.Read(make([]byte, 1))
		}},
		{"queued, then leaves", func(t *testing.T) {
			staller := dialTimeout(t, addr)
			defer staller.Close()
			waitFor(t, "the staller's slot", func() bool { return ts.srv.limiter.Stats().Handshakes == 1 })
			queued := dialTimeout(t, addr)
			waitFor(t, "the queued connection", func() bool { return ts.srv.limiter.Stats().WaitingHandshakes == 1 })
			queued.Close()
		}},
		{"a completed handshake", handshake},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t)
			waitFor(t, "every slot and queue place back", func() bool {
				st := ts.srv.limiter.Stats()
				return st.Handshakes == 0 && st.WaitingHandshakes == 0
			})
			// Given back twice, the count would go below zero and two
			// handshakes could hold the one slot: both fill it again.
			a, b := dialTimeout(t, addr), dialTimeout(t, addr)
			waitFor(t, "one slot and one queue place taken", func() bool {
				st := ts.srv.limiter.Stats()
				return st.Handshakes == 1 && st.WaitingHandshakes == 1
			})
			a.Close()
			b.Close()
			waitFor(t, "both given back", func() bool {
				st := ts.srv.limiter.Stats()
				return st.Handshakes == 0 && st.WaitingHandshakes == 0
			})
			handshake(t)
		})
	}
}
