package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// seenRequest is what the test upstream received.
type seenRequest struct {
	path, rawPath string
	header        http.Header
}

// recordingUpstream answers 200 "ok" and remembers every request.
type recordingUpstream struct {
	mu   sync.Mutex
	seen []seenRequest
	addr string
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{path: r.URL.Path, rawPath: r.URL.RawPath, header: r.Header.Clone()})
		u.mu.Unlock()
		if r.URL.Path == "/huge-header" {
			w.Header().Set("X-Huge", strings.Repeat("a", 100<<10))
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	u.addr = strings.TrimPrefix(srv.URL, "http://")
	return u
}

func (u *recordingUpstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

// hardenedConfig routes /api/ (encoded slashes allowed) and / to one
// upstream that ejects after two failures.
func hardenedConfig(upstream string) string {
	return baseConfig + `
[limits]
h2_resets = 20
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/api/"
pool = "app"
allow_encoded_slashes = true
[[site.route]]
path = "/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["` + upstream + `"]
[pool.health]
eject_after = 2
eject_for = "1h"
`
}

// TestHostileRequestsThroughTheServer sends one request of each hostile
// kind of issue 12 through the real server and checks the answer, what
// reached the upstream, and that the upstream's health is untouched by the
// clients' faults.
func TestHostileRequestsThroughTheServer(t *testing.T) {
	up := newRecordingUpstream(t)
	ts := startServer(t, hardenedConfig(up.addr))
	addr := ts.addr("https")
	client := ts.client(tls.X25519MLKEM768)
	roots := ts.roots()
	raw := func(t *testing.T) *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	status := func(t *testing.T, r *bufio.Reader) int {
		t.Helper()
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("no response: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	t.Run("ambiguous framing", func(t *testing.T) {
		before := len(up.requests())
		c := raw(t)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
			"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n")
		br := bufio.NewReader(c)
		if code := status(t, br); code != http.StatusBadRequest {
			t.Errorf("Content-Length with Transfer-Encoding got %d, want 400", code)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("the connection stayed open after the ambiguous request (%v)", err)
		}
		for _, r := range up.requests()[before:] {
			t.Errorf("the upstream received %s", r.path)
		}
	})

	t.Run("h2c upgrade stripped, CONNECT refused", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "https://"+addr+"/upgrade", nil)
		req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
		req.Header.Set("Upgrade", "h2c")
		req.Header.Set("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
		c := raw(t)
		req.Write(c)
		if code := status(t, bufio.NewReader(c)); code != 200 {
			t.Fatalf("h2c upgrade attempt got %d, want a normal 200", code)
		}
		got := up.requests()
		h := got[len(got)-1].header
		if h.Get("Upgrade") != "" || h.Get("Http2-Settings") != "" {
			t.Errorf("the upstream saw Upgrade %q, HTTP2-Settings %q", h.Get("Upgrade"), h.Get("Http2-Settings"))
		}
		c2 := raw(t)
		io.WriteString(c2, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
		if code := status(t, bufio.NewReader(c2)); code != http.StatusMethodNotAllowed {
			t.Errorf("CONNECT got %d, want 405", code)
		}
	})

	t.Run("paths normalised before routing", func(t *testing.T) {
		for _, tt := range []struct {
			path     string
			status   int
			upstream string // path the upstream saw; "" when it saw none
		}{
			{"/app/../secret", 200, "/secret"},
			{"/app/%2e%2e/secret", 200, "/secret"},
			{"/app/..%2fsecret", 400, ""},
			{"/%2e%2e/etc/passwd", 400, ""},
			{"/a%2Fb", 400, ""},     // an encoded slash where the route does not allow it
			{"/api/a%2Fb", 200, ""}, // where it does: forwarded still encoded
		} {
			before := len(up.requests())
			c := raw(t)
			io.WriteString(c, "GET "+tt.path+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
			if code := status(t, bufio.NewReader(c)); code != tt.status {
				t.Errorf("%s: status %d, want %d", tt.path, code, tt.status)
				continue
			}
			got := up.requests()[before:]
			switch {
			case tt.status != 200 && len(got) != 0:
				t.Errorf("%s reached the upstream", tt.path)
			case tt.upstream != "" && (len(got) != 1 || got[0].path != tt.upstream):
				t.Errorf("%s reached the upstream as %+v, want %s", tt.path, got, tt.upstream)
			case tt.path == "/api/a%2Fb" && (len(got) != 1 || got[0].rawPath != "/api/a%2Fb"):
				t.Errorf("%s reached the upstream as %+v, want the slash still encoded", tt.path, got)
			}
		}
	})

	t.Run("trusted headers in every spelling", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "https://"+addr+"/spelling", nil)
		req.Header["PQEdge_TLS_PQ"] = []string{"true"}
		req.Header["X_Forwarded_For"] = []string{"6.6.6.6"}
		req.Header.Set("X-Real-IP", "6.6.6.6")
		req.Header.Set("Forwarded", "for=6.6.6.6")
		resp, err := ts.client(tls.X25519).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := up.requests()
		h := got[len(got)-1].header
		for name, vals := range h {
			if strings.Contains(name, "_") || strings.Contains(strings.Join(vals, ","), "6.6.6.6") {
				t.Errorf("the upstream got the client's %s: %v", name, vals)
			}
		}
		if h.Get("PQEdge-TLS-PQ") != "false" {
			t.Errorf("PQEdge-TLS-PQ = %q, want pqedge's own false", h.Get("PQEdge-TLS-PQ"))
		}
	})

	t.Run("client faults never eject the upstream", func(t *testing.T) {
		for range 5 { // eject_after is 2
			c := raw(t)
			io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n0\r\n\r\n")
			if code := status(t, bufio.NewReader(c)); code/100 != 4 {
				t.Errorf("a malformed chunked body got %d, want a 4xx", code)
			}
		}
		resp, err := client.Get("https://" + addr + "/after")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("after five client faults a good request got %d: the upstream was blamed", resp.StatusCode)
		}
		if g := ts.metric(`pqedge_upstream_healthy{pool="app",upstream="` + up.addr + `"}`); g != "1" {
			t.Errorf("upstream gauge %q, want 1", g)
		}
		if n := ts.metricSum("pqedge_client_errors_total"); n < 5 {
			t.Errorf("client errors counted %v, want at least 5", n)
		}
	})

	t.Run("an upstream header that never ends costs a 502", func(t *testing.T) {
		resp, err := client.Get("https://" + addr + "/huge-header")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("a 100 KiB upstream header got %d, want 502", resp.StatusCode)
		}
	})

	t.Run("HTTP/2 rapid reset closes the connection", func(t *testing.T) {
		floodH2(t, addr, roots, 400, 10*time.Second, func(id uint32) []byte {
			// HEADERS (END_STREAM|END_HEADERS) then RST_STREAM CANCEL.
			return append(h2frame(0x1, 0x5, id, h2GetBlock), h2frame(0x3, 0, id, []byte{0, 0, 0, 8})...)
		})
		waitFor(t, "the abuse counted", func() bool {
			return ts.metricSum("pqedge_http2_abuse_total", `reason="rapid_reset"`) >= 1
		})
	})
}

// TestConnectionCapPerClient: limits.connections_per_client refuses a
// client's connection beyond the cap at accept, before any cryptography,
// and counts it.
func TestConnectionCapPerClient(t *testing.T) {
	ts := startServer(t, baseConfig+"[limits]\nconnections_per_client = 2\n"+inspectSite)
	cfg := &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"}
	for range 2 {
		c, err := tls.Dial("tcp", ts.addr("https"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if c, err := tls.Dial("tcp", ts.addr("https"), cfg); err == nil {
		c.Close()
		t.Error("a third connection from one client got through a cap of 2")
	}
	if n := ts.metricSum("pqedge_connections_refused_total", `reason="per_client"`); n != 1 {
		t.Errorf("per-client refusals counted %v, want 1", n)
	}
	if n := ts.metricSum("pqedge_connections_open"); n != 2 {
		t.Errorf("open connections %v, want 2", n)
	}
}

// TestHandshakeCapPerClient: limits.handshakes_per_client refuses a
// client address's connection at accept once it holds that many handshake
// slots and queue places (here two connections that send nothing), counts
// it, and leaves other addresses, and the same one once a place is free,
// to handshake as before.
func TestHandshakeCapPerClient(t *testing.T) {
	ts := startServer(t, baseConfig+"[limits]\nhandshakes_per_client = 2\n"+inspectSite)
	cfg := &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"}
	var silent []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", ts.addr("https"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	waitFor(t, "two handshakes in progress", func() bool { return ts.metricSum("pqedge_handshakes_in_progress") == 2 })

	if c, err := tls.Dial("tcp", ts.addr("https"), cfg); err == nil {
		c.Close()
		t.Error("a third handshake from one address got through a cap of 2")
	}
	if n := ts.metricSum("pqedge_connections_refused_total", `reason="handshakes_per_client"`); n != 1 {
		t.Errorf("per-client handshake refusals counted %v, want 1", n)
	}
	other := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(other, "tcp", ts.addr("https"), cfg)
	if err != nil {
		t.Fatalf("another address was refused too: %v", err)
	}
	c.Close()

	silent[0].Close()
	waitFor(t, "the closed connection's place back", func() bool { return ts.metricSum("pqedge_handshakes_in_progress") == 1 })
	c, err = tls.Dial("tcp", ts.addr("https"), cfg)
	if err != nil {
		t.Fatalf("a handshake after one place came back: %v", err)
	}
	c.Close()
}

// isTimeout reports whether err is a deadline's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestHandshakeCapSparesForgeableQUIC: a QUIC Initial's source address
// is not proven (anyone can send one in another address's name), so a
// QUIC handshake whose client never answers does not take a place of
// that address's handshakes: under handshakes_per_client = 1, a TCP
// client of the same address still handshakes while it hangs.
func TestHandshakeCapSparesForgeableQUIC(t *testing.T) {
	ts := startServer(t, h3Config+"[limits]\nhandshakes_per_client = 1\n"+inspectSite)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 7)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: deafConn{udp}}
	defer tr.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go tr.Dial(ctx, ts.srv.QUICAddr("https"), &tls.Config{ServerName: "localhost", NextProtos: []string{"h3"}},
		&quic.Config{HandshakeIdleTimeout: 10 * time.Second})
	waitFor(t, "the QUIC handshake holding a slot", func() bool { return ts.metricSum("pqedge_handshakes_in_progress") == 1 })

	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 7)}, Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ts.addr("https"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TCP from the address an unanswered QUIC Initial came from: %v, want served", err)
	}
	c.Close()
	if n := ts.metricSum("pqedge_connections_refused_total", `reason="handshakes_per_client"`); n != 0 {
		t.Errorf("per-client handshake refusals counted %v, want 0", n)
	}
}

// TestConnCapCountsProvenQUICOnly: limits.connections_per_client counts a
// QUIC connection against its source address only once the handshake
// proved it. Unanswered Initials in an address's name leave its TCP
// connections alone; a QUIC client that completes its handshake while
// its address is at the cap is refused with H3_EXCESSIVE_LOAD and the
// cap's message, and counted.
func TestConnCapCountsProvenQUICOnly(t *testing.T) {
	ts := startServer(t, h3Config+"[limits]\nconnections_per_client = 1\nhandshakes_per_client = 1\n"+inspectSite)
	client := net.IPv4(127, 0, 0, 8)
	forged, err := net.ListenUDP("udp", &net.UDPAddr{IP: client})
	if err != nil {
		t.Fatal(err)
	}
	deaf := &quic.Transport{Conn: deafConn{forged}}
	defer deaf.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go deaf.Dial(ctx, ts.srv.QUICAddr("https"), &tls.Config{ServerName: "localhost", NextProtos: []string{"h3"}},
		&quic.Config{HandshakeIdleTimeout: 10 * time.Second})
	waitFor(t, "the unanswered QUIC handshake", func() bool { return ts.metricSum("pqedge_handshakes_in_progress") == 1 })

	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: client}, Timeout: 5 * time.Second}
	tcp, err := tls.DialWithDialer(d, "tcp", ts.addr("https"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TCP from the address of an unanswered QUIC Initial: %v, want served", err)
	}
	defer tcp.Close()
	if n := ts.metricSum("pqedge_connections_refused_total", `reason="per_client"`); n != 0 {
		t.Fatalf("per-client refusals %v after an unproven Initial and one TCP connection, want 0", n)
	}

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: client})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	conn, err := tr.Dial(ctx, ts.srv.QUICAddr("https"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"h3"}},
		&quic.Config{HandshakeIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("QUIC handshake: %v", err)
	}
	select {
	case <-conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a proven QUIC connection over the client's cap was not closed")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(conn.Context()); !errors.As(err, &ae) || ae.ErrorCode != quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad) ||
		!strings.Contains(ae.ErrorMessage, "too many connections from this client address") {
		t.Errorf("the refused QUIC client saw %v, want H3_EXCESSIVE_LOAD saying too many connections from this client address", err)
	}
	if n := ts.metricSum("pqedge_connections_refused_total", `reason="per_client"`); n != 1 {
		t.Errorf("per-client refusals %v, want 1", n)
	}
}

// deafConn sends what a QUIC client sends and drops what comes back, as
// a forged source address does.
// (Only net.PacketConn's methods: quic-go would read a *net.UDPConn's
// ReadMsgUDP directly.)
type deafConn struct{ net.PacketConn }

func (c deafConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if _, _, err := c.PacketConn.ReadFrom(b); err != nil {
			return 0, nil, err
		}
	}
}

// h2frame encodes one HTTP/2 frame (RFC 9113 section 4.1).
func h2frame(typ, flags byte, stream uint32, payload []byte) []byte {
	b := make([]byte, 9, 9+len(payload))
	b[0], b[1], b[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	b[3], b[4] = typ, flags
	binary.BigEndian.PutUint32(b[5:], stream&0x7fffffff)
	return append(b, payload...)
}

// h2GetBlock is "GET https://localhost/" in HPACK (RFC 7541 Appendix A).
var h2GetBlock = []byte{0x82, 0x87, 0x84, 0x01, 0x09, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't'}
