package server

import (
	"crypto/tls"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestCryptoSlotsReturned: every kind of handshake, finished or failed,
// gives its crypto slot back (a leaked slot would stall every later
// handshake once GOMAXPROCS of them leaked).
func TestCryptoSlotsReturned(t *testing.T) {
	ts := startServer(t, baseConfig+inspectSite)
	addr := ts.addr("https")
	tests := []struct {
		name   string
		cfg    *tls.Config
		wantOK bool
	}{
		{"post-quantum TLS 1.3", &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"}, true},
		{"classical group", &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", CurvePreferences: []tls.CurveID{tls.CurveP256}}, true},
		{"TLS 1.2", &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", MaxVersion: tls.VersionTLS12}, true},
		// The client refuses the chain after the server's flight: the
		// server's handshake fails at its next read.
		{"client aborts", &tls.Config{ServerName: "localhost"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", addr, tt.cfg)
			if (err == nil) != tt.wantOK {
				t.Fatalf("handshake error %v, want success %v", err, tt.wantOK)
			}
			if err == nil {
				c.Close()
			}
			waitFor(t, "the crypto slot to be free", func() bool {
				st := ts.srv.limiter.Stats().Crypto
				return st.Running == 0 && st.Waiting == 0
			})
		})
	}
	t.Run("ClientHello never finished", func(t *testing.T) {
		c := dialTimeout(t, addr)
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a record header and one byte
		c.Close()
		// The record header's read took a crypto slot for its burst (as
		// any read during the handshake does); the failed handshake must
		// give it back, after the handshake slot (the event is recorded
		// between the two), so both are waited for.
		waitFor(t, "the handshake and crypto slots to be free", func() bool {
			st := ts.srv.limiter.Stats()
			return st.Handshakes == 0 && st.Crypto.Running == 0 && st.Crypto.Waiting == 0
		})
	})
	if n := ts.metricSum("pqedge_handshakes_crypto_waiting"); n != 0 {
		t.Errorf("pqedge_handshakes_crypto_waiting = %v, want 0", n)
	}
}

// TestQUICHandshakeWaitsForCryptoGate: a QUIC handshake takes its turn at
// the crypto gate before its key exchange, as a TCP one does, so that a
// QUIC flood is paced with the TCP handshakes.
func TestQUICHandshakeWaitsForCryptoGate(t *testing.T) {
	ts, hs := startH3(t, h3Config+inspectSite)
	release := holdCryptoSlots(t, ts)
	defer release()
	mark := hs.mark()
	client, _ := ts.h3Client()
	got := make(chan error, 1)
	go func() {
		resp, err := client.Get(ts.h3URL("https") + "/")
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	waitFor(t, "the QUIC handshake to wait for a crypto slot", func() bool {
		return ts.srv.limiter.Stats().Crypto.Waiting == 1
	})
	release()
	if err := <-got; err != nil {
		t.Fatalf("request over HTTP/3 after the gate opened: %v", err)
	}
	ev := hs.wait(t, mark, "a QUIC handshake", overQUIC)
	if ev.Err != nil {
		t.Errorf("handshake failed: %v", ev.Err)
	}
}

// holdCryptoSlots takes every slot of the server's crypto gate, so that the
// next handshake waits for one; release (idempotent) gives them back.
func holdCryptoSlots(t *testing.T, ts *testServer) (release func()) {
	t.Helper()
	far := time.Now().Add(time.Minute)
	n := runtime.GOMAXPROCS(0)
	for range n {
		if err := ts.srv.limiter.AcquireCrypto(far); err != nil {
			t.Fatal(err)
		}
	}
	released := false
	return func() {
		if !released {
			released = true
			for range n {
				ts.srv.limiter.ReleaseCrypto()
			}
		}
	}
}

// TestDepartedClientCostsNoCrypto: a client that resets or closes while its
// handshake waits for a crypto slot (a flood's attempts, which give up
// sooner than a queued handshake's turn comes) has its handshake ended
// once it has the slot, as client_left, before any key exchange or
// signature; a client that waits it out gets its handshake.
func TestDepartedClientCostsNoCrypto(t *testing.T) {
	ts := startServer(t, baseConfig+inspectSite)
	addr := ts.addr("https")
	tests := []struct {
		name       string
		leave      func(c *net.TCPConn) // nil: the client stays
		wantReason string               // "": the handshake succeeds
	}{
		{name: "reset", leave: func(c *net.TCPConn) { c.SetLinger(0); c.Close() }, wantReason: reasonClientLeft},
		{name: "FIN", leave: func(c *net.TCPConn) { c.CloseWrite() }, wantReason: reasonClientLeft},
		{name: "client stays"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			left := ts.metricSum("pqedge_handshake_failures_total", `reason="client_left"`)
			done0 := ts.metricSum("pqedge_handshakes_total")
			release := holdCryptoSlots(t, ts)
			defer release()
			raw := dialTimeout(t, addr).(*net.TCPConn)
			tc := tls.Client(raw, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"})
			done := make(chan error, 1)
			go func() { done <- tc.Handshake() }()
			waitFor(t, "the handshake to wait for a crypto slot", func() bool {
				return ts.srv.limiter.Stats().Crypto.Waiting == 1
			})
			if tt.leave != nil {
				tt.leave(raw)
				// The kernel has the reset or the FIN on loopback before
				// the call returns; the slot is handed over after.
			}
			release()
			err := <-done
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("handshake of a client that waited: %v", err)
				}
				// Closing right after its Finished: the server still
				// reads the Finished and counts a whole handshake.
				tc.Close()
				waitFor(t, "the server to count the handshake", func() bool {
					return ts.metricSum("pqedge_handshakes_total") == done0+1
				})
				if n := ts.metricSum("pqedge_handshake_failures_total", `reason="client_left"`); n != left {
					t.Errorf("a client that stayed counted as client_left (%v, was %v)", n, left)
				}
				return
			}
			waitFor(t, "the handshake to fail as "+tt.wantReason, func() bool {
				return ts.metricSum("pqedge_handshake_failures_total", `reason="`+tt.wantReason+`"`) == left+1
			})
			waitFor(t, "the slots to be free", func() bool {
				st := ts.srv.limiter.Stats()
				return st.Handshakes == 0 && st.Crypto.Running == 0 && st.Crypto.Waiting == 0
			})
		})
	}
}

// oneSlotConfig has one handshake slot and a queue, and idle handshakes
// are not evicted for a minute.
const oneSlotConfig = baseConfig + "[timeouts]\nhandshake_idle = \"1m\"\n[limits]\nhandshakes = 1\nhandshake_queue = 4\n" + inspectSite

// queueBehindSilentHolder, on a server with oneSlotConfig, takes the only
// handshake slot with a silent connection (holder) and queues a TLS
// client's handshake behind it on raw; done gets the handshake's result.
// The test closes both.
func queueBehindSilentHolder(t *testing.T, ts *testServer) (holder, raw *net.TCPConn, done <-chan error) {
	t.Helper()
	addr := ts.addr("https")
	holder = dialTimeout(t, addr).(*net.TCPConn)
	t.Cleanup(func() { holder.Close() })
	waitFor(t, "the silent connection to hold the slot", func() bool {
		return ts.srv.limiter.Stats().Handshakes == 1
	})
	raw = dialTimeout(t, addr).(*net.TCPConn)
	t.Cleanup(func() { raw.Close() })
	tc := tls.Client(raw, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"})
	result := make(chan error, 1)
	go func() { result <- tc.Handshake() }()
	waitFor(t, "the handshake to queue", func() bool {
		return ts.srv.limiter.Stats().WaitingHandshakes == 1
	})
	return holder, raw, result
}

// TestQueuedDepartedClientIsNotRead: a connection that waited in the
// handshake queue and whose client reset or closed meanwhile (a flood's
// attempts give up long before their turn) is closed when its turn comes
// without its ClientHello being read or parsed, counted as client_left;
// one whose client waited gets its handshake.
func TestQueuedDepartedClientIsNotRead(t *testing.T) {
	hs := &handshakeLog{}
	ts := startServerWith(t, oneSlotConfig,
		Options{OnHandshake: hs.add})
	tests := []struct {
		name  string
		leave func(c *net.TCPConn) // nil: the client stays
	}{
		{name: "reset", leave: func(c *net.TCPConn) { c.SetLinger(0); c.Close() }},
		{name: "FIN", leave: func(c *net.TCPConn) { c.CloseWrite() }},
		{name: "client stays"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			left := ts.metricSum("pqedge_handshake_failures_total", `reason="client_left"`)
			mark := hs.mark()
			holder, raw, done := queueBehindSilentHolder(t, ts)
			// The ClientHello is in the server's socket before the
			// client leaves: give the client's write time to land.
			time.Sleep(50 * time.Millisecond)
			if tt.leave != nil {
				tt.leave(raw)
			}
			holder.Close() // its handshake fails; the slot goes to the queue
			if tt.leave == nil {
				if err := <-done; err != nil {
					t.Fatalf("handshake of a client that waited in the queue: %v", err)
				}
				if n := ts.metricSum("pqedge_handshake_failures_total", `reason="client_left"`); n != left {
					t.Errorf("a client that stayed counted as client_left (%v, was %v)", n, left)
				}
				return
			}
			ev := hs.wait(t, mark, "the departed client's handshake event", func(ev HandshakeEvent) bool { return ev.Reason == reasonClientLeft })
			if ev.Hello != nil {
				t.Errorf("the departed client's ClientHello was read and parsed (%d bytes) when its turn came; want the connection closed unread", len(ev.Hello.Raw))
			}
			if n := ts.metricSum("pqedge_handshake_failures_total", `reason="client_left"`); n != left+1 {
				t.Errorf("client_left = %v, want %v", n, left+1)
			}
			waitFor(t, "the slots to be free", func() bool {
				st := ts.srv.limiter.Stats()
				return st.Handshakes == 0 && st.WaitingHandshakes == 0 && st.Crypto.Running == 0
			})
		})
	}
}

// TestFailedHandshakeWaitsForThePoller: while handshakes queue (the crypto
// gate paces), a handshake whose read fails (its client reset) waits for
// the network poller's next run before its cleanup, and so does a queued
// handshake handed the freed slot, so that a flood's connections readied
// together by one poll do not run back to back ahead of established
// connections (docs/BENCHMARKS.md, set L). The queued client is served.
func TestFailedHandshakeWaitsForThePoller(t *testing.T) {
	ts := startServer(t, oneSlotConfig)
	yielded := ts.srv.limiter.Stats().Crypto.Yielded
	holder, _, done := queueBehindSilentHolder(t, ts)
	// The queue made the gate pace (for 100 ms): the holder's failure and
	// the queued handshake's turn each wait for the poller once.
	holder.SetLinger(0)
	holder.Close()
	if err := <-done; err != nil {
		t.Fatalf("the queued client's handshake: %v", err)
	}
	if got := ts.srv.limiter.Stats().Crypto.Yielded - yielded; got != 2 {
		t.Errorf("waits for the poller = %d, want 2 (the failed handshake's cleanup, the queued handshake's turn)", got)
	}
}
