package server

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// idleGrace is timeouts.handshake_idle in these tests: short, so that
// they are quick, and far below their timeouts.handshake (60s).
const idleGrace = 500 * time.Millisecond

// idleConfig is a listener with two handshake slots and a queue of four,
// a minute's handshake timeout and idleGrace; proxyIn adds a trusted
// load balancer at 127.0.0.1 (proxy_protocol_in).
func idleConfig(proxyIn bool) string {
	cfg := baseConfig
	if proxyIn {
		cfg += "proxy_protocol_in = [\"127.0.0.1/32\"]\n"
	}
	return cfg + "[timeouts]\nhandshake = \"60s\"\nhandshake_idle = \"" + idleGrace.String() + "\"\n" +
		"[limits]\nhandshakes = 2\nhandshake_queue = 4\n" + inspectSite
}

// TestIdleSlotHoldersGiveWay: two connections that keep their handshake
// waiting hold both slots, with room left in the queue (no accept pause);
// a real client queued behind them completes its handshake within
// timeouts.handshake_idle and a margin, far below timeouts.handshake,
// the holders closed and counted under their reason. Before, eviction
// ran only once the queue was full too, and only for silent clients: the
// client waited the whole handshake timeout.
func TestIdleSlotHoldersGiveWay(t *testing.T) {
	tests := []struct {
		name    string
		proxyIn bool
		header  bool   // each holder starts with a whole PROXY v2 header
		send    []byte // what each holder sends, and then nothing
		reason  string
	}{
		{name: "silent", reason: "silent"},
		{name: "one byte of a record header", send: []byte{0x16}, reason: "stalled"},
		{name: "half a ClientHello record header", send: []byte{0x16, 0x03, 0x01}, reason: "stalled"},
		// (A partial v1 header is refused at once by go-proxyproto.)
		{name: "part of a PROXY v2 header", proxyIn: true, send: []byte("\r\n\r\n\x00\r"), reason: "stalled"},
		{name: "silent behind a balancer", proxyIn: true, header: true, reason: "stalled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, idleConfig(tt.proxyIn))
			addr := ts.addr("https")
			var holders []net.Conn
			for range 2 {
				c := dialTimeout(t, addr)
				defer c.Close()
				if tt.header {
					writeProxyHeader(t, c, 2)
				}
				if _, err := c.Write(tt.send); err != nil {
					t.Fatal(err)
				}
				holders = append(holders, c)
			}
			waitFor(t, "the holders in both slots", func() bool { return ts.srv.limiter.Stats().Handshakes == 2 })

			// The margin covers a loaded machine; the handshake timeout
			// (60s) is what the client waited before.
			d := &net.Dialer{Timeout: idleGrace + 4*time.Second}
			raw, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			if tt.proxyIn {
				writeProxyHeader(t, raw, 1)
			}
			raw.SetDeadline(time.Now().Add(idleGrace + 4*time.Second))
			c := tls.Client(raw, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"})
			if err := c.Handshake(); err != nil {
				t.Fatalf("a client queued behind %s slot holders: %v, want served once they were evicted", tt.name, err)
			}
			// Under pressure only: once the client has a slot, a holder
			// not due for its check yet keeps its own.
			closed := 0
			for _, h := range holders {
				h.SetReadDeadline(time.Now().Add(2 * idleGrace))
				if _, err := io.ReadAll(h); !isTimeout(err) {
					closed++
				}
			}
			if closed == 0 {
				t.Error("no holder was closed by the server")
			}
			for _, reason := range []string{"silent", "stalled"} {
				want := 0.0
				if reason == tt.reason {
					want = float64(closed)
				}
				if n := ts.metricSum("pqedge_connections_refused_total", `reason="`+reason+`"`); n != want {
					t.Errorf("evictions counted as %s: %v, want %v (the holders closed)", reason, n, want)
				}
			}
		})
	}
}

// writeProxyHeader sends a PROXY header of version v for a client of
// 192.0.2.0/24, as a trusted balancer does when it connects.
func writeProxyHeader(t *testing.T, c net.Conn, v byte) {
	t.Helper()
	src := &net.TCPAddr{IP: net.IPv4(192, 0, 2, byte(c.LocalAddr().(*net.TCPAddr).Port%250+1)), Port: 4000}
	if _, err := proxyproto.HeaderProxyFromAddrs(v, src, c.RemoteAddr()).WriteTo(c); err != nil {
		t.Fatal(err)
	}
}

// slowHoldersAndQueuedClient starts a server with 2 handshake slots
// (idleConfig) held by two live, slow clients (their ClientHello
// answered, their Finished never sent), and a real crypto/tls client
// whose whole ClientHello waits in the queue behind them; served gets
// that client's handshake result. The holders are closed when t ends.
func slowHoldersAndQueuedClient(t *testing.T) (ts *testServer, addr string, cfg *tls.Config, holders []net.Conn, served <-chan error) {
	t.Helper()
	ts = startServer(t, idleConfig(false))
	addr = ts.addr("https")
	cfg = &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"}
	for range 2 {
		c := dialTimeout(t, addr)
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(clientHelloRecord(t, cfg)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil { // the server's flight
			t.Fatalf("a slow holder's ClientHello: %v, want the server's answer", err)
		}
		holders = append(holders, c)
	}
	result := make(chan error, 1)
	go func() {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr, cfg)
		if err == nil {
			c.Close()
		}
		result <- err
	}()
	waitFor(t, "the client's ClientHello in the queue", func() bool { return ts.srv.limiter.Stats().WaitingHandshakes == 1 })
	return ts, addr, cfg, holders, result
}

// TestQueuedClientHelloIsNotIdle: the false positive that would hurt. Two
// live, slow clients hold the slots (their ClientHello answered, they
// have not finished); a real client's complete ClientHello waits unread
// in the queue behind them. However long that lasts, nobody is evicted:
// the queued client is served as soon as a slot frees.
func TestQueuedClientHelloIsNotIdle(t *testing.T) {
	ts, _, _, holders, served := slowHoldersAndQueuedClient(t)
	// Waiting is what this test is about: several checks of every place
	// fall in it (the limiter checks each once per grace under pressure).
	time.Sleep(4 * idleGrace)
	select {
	case err := <-served:
		t.Fatalf("the queued client finished (%v) while both slots were held", err)
	default:
	}
	for _, reason := range []string{"silent", "stalled"} {
		if n := ts.metricSum("pqedge_connections_refused_total", `reason="`+reason+`"`); n != 0 {
			t.Errorf("evictions counted as %s: %v, want 0", reason, n)
		}
	}
	if st := ts.srv.limiter.Stats(); st.Handshakes != 2 || st.WaitingHandshakes != 1 {
		t.Errorf("%d handshakes, %d waiting; want the 2 holders and the queued client", st.Handshakes, st.WaitingHandshakes)
	}
	holders[0].Close()
	if err := <-served; err != nil {
		t.Fatalf("the queued client once a slot freed: %v, want served", err)
	}
}

// TestQueuedPartialClientHelloGivesWay: connections that send the start
// of a ClientHello record and then nothing, queued behind two live slow
// clients, are evicted as stalled while still queued, once
// timeouts.handshake_idle has passed since their last byte; a real
// client's whole ClientHello queued among them is not, and is served as
// soon as a slot frees. Before, a queued connection was judged only once
// it had a slot, so a client queued behind N of them waited N/handshakes
// graces more, and here they held the queue until the handshake timeout.
func TestQueuedPartialClientHelloGivesWay(t *testing.T) {
	ts, addr, cfg, holders, served := slowHoldersAndQueuedClient(t)
	hello := clientHelloRecord(t, cfg)
	var partial []net.Conn
	for _, n := range []int{1, 5, len(hello) - 1} {
		c := dialTimeout(t, addr)
		defer c.Close()
		if _, err := c.Write(hello[:n]); err != nil {
			t.Fatal(err)
		}
		partial = append(partial, c)
	}
	waitFor(t, "the partial ClientHellos evicted from the queue", func() bool {
		return ts.metricSum("pqedge_connections_refused_total", `reason="stalled"`) == 3
	})
	for i, c := range partial {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); isTimeout(err) {
			t.Errorf("partial ClientHello %d: still open, want closed by the server", i)
		}
	}
	if n := ts.metricSum("pqedge_connections_refused_total", `reason="silent"`); n != 0 {
		t.Errorf("evictions counted as silent: %v, want 0", n)
	}
	if st := ts.srv.limiter.Stats(); st.Handshakes != 2 || st.WaitingHandshakes != 1 {
		t.Errorf("%d handshakes, %d waiting; want the 2 holders and the queued client", st.Handshakes, st.WaitingHandshakes)
	}
	holders[0].Close()
	if err := <-served; err != nil {
		t.Fatalf("the queued client once a slot freed: %v, want served", err)
	}
}

// clientHelloRecord is a complete ClientHello record from a crypto/tls
// client with cfg.
func clientHelloRecord(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		tls.Client(client, cfg).Handshake()
		client.Close()
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(server, body); err != nil {
		t.Fatal(err)
	}
	if hdr[0] != 0x16 || !strings.HasPrefix(string(body), "\x01") {
		t.Fatalf("captured record %x..., want a ClientHello", hdr)
	}
	return append(hdr, body...)
}
