package h1guard

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/proxy"
)

// guardListener wraps every accepted connection as the server does: TLS
// first (when tlsConfig is set), then Wrap.
type guardListener struct {
	net.Listener
	tlsConfig *tls.Config
	opts      Options
}

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.tlsConfig != nil {
		tc := tls.Server(c, l.tlsConfig)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		tc.SetDeadline(time.Time{})
		c = tc
	}
	return Wrap(c, l.opts), nil
}

// seen records what a handler was asked for.
type seen struct {
	mu    sync.Mutex
	paths []string
	tls   []bool
}

func (s *seen) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.paths = append(s.paths, r.URL.Path)
	s.tls = append(s.tls, r.TLS != nil)
	s.mu.Unlock()
	io.WriteString(w, "ok")
}

func (s *seen) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...)
}

// serve runs an http.Server with h behind the guard and returns its
// address and the reasons the guard refused requests for.
func serve(t *testing.T, h http.Handler, tlsConfig *tls.Config) (string, func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reasons []string
	opts := Options{OnRefuse: func(r string) {
		mu.Lock()
		reasons = append(reasons, r)
		mu.Unlock()
	}}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: nil}
	go srv.Serve(guardListener{Listener: ln, tlsConfig: tlsConfig, opts: opts})
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), reasons...)
	}
}

// exchange writes raw and reads responses until the server closes the
// connection or stalls for a second.
// dialGuarded serves h behind the guard (serve), over TLS with cert when
// mode is "TLS", and dials it; the connection is closed when the test
// ends. It returns the connection and serve's refusals.
func dialGuarded(t *testing.T, h http.Handler, mode string, cert tls.Certificate) (net.Conn, func() []string) {
	t.Helper()
	var cfg *tls.Config
	if mode == "TLS" {
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	}
	addr, refusals := serve(t, h, cfg)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if cfg != nil {
		c = tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	}
	return c, refusals
}

func exchange(t *testing.T, c net.Conn, raw string) (statuses []int, closed bool) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			return statuses, !(errors.As(err, &ne) && ne.Timeout())
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
}

const canary = "GET /canary HTTP/1.1\r\nHost: x\r\n\r\n"

// TestGuardInFrontOfNetHTTP sends each request followed by a pipelined
// canary through a real http.Server, plain and over TLS.
func TestGuardInFrontOfNetHTTP(t *testing.T) {
	tests := []struct {
		name     string
		request  string
		statuses []int
		handled  []string
		refused  string // the guard's reason, "" if none
	}{
		{name: "Content-Length and chunked: refused, canary never read", statuses: []int{400}, refused: "both Content-Length and Transfer-Encoding",
			request: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{name: "Transfer-Encoding in HTTP/1.0: refused", statuses: []int{400}, refused: "HTTP/1.0",
			request: "POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc"},
		{name: "obs-fold: refused", statuses: []int{400}, refused: "obsolete line folding",
			request: "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"},
		{name: "bare LF: refused", statuses: []int{400}, refused: "bare LF",
			request: "GET /a HTTP/1.1\nHost: x\n\n"},
		{name: "good request, then a smuggling attempt", statuses: []int{200, 400}, handled: []string{"/a"}, refused: "both",
			request: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
		{name: "chunked with trailer, then the canary", statuses: []int{200, 200}, handled: []string{"/a", "/canary"},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"},
		// The chunk line fills net/http's 4 KiB bufio buffer, whose
		// last free byte is asked for alone: that read must get the
		// refusal (the handler answers), not wait as the background
		// read does (no answer until a body timeout).
		{name: "chunk extension past the line limit: refused, the handler's read fails", statuses: []int{200}, handled: []string{"/a"}, refused: "chunk line too long",
			request: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("e", 5000) + "\r\nhello\r\n0\r\n\r\n"},
		{name: "three pipelined", statuses: []int{200, 200, 200, 200}, handled: []string{"/a", "/a", "/a", "/canary"},
			request: strings.Repeat("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 3)},
	}
	cert := selfSigned(t)
	for _, mode := range []string{"plain", "TLS"} {
		for _, tt := range tests {
			t.Run(mode+" "+tt.name, func(t *testing.T) {
				h := &seen{}
				c, refusals := dialGuarded(t, h, mode, cert)
				statuses, closed := exchange(t, c, tt.request+canary)
				if !slices.Equal(statuses, tt.statuses) {
					t.Errorf("statuses %v, want %v", statuses, tt.statuses)
				}
				if got := h.get(); !slices.Equal(got, tt.handled) {
					t.Errorf("handler saw %q, want %q", got, tt.handled)
				}
				if r := refusals(); tt.refused == "" && len(r) > 0 || tt.refused != "" && (len(r) != 1 || !strings.Contains(r[0], tt.refused)) {
					t.Errorf("refusals %q, want one containing %q", r, tt.refused)
				}
				if tt.refused != "" && !closed {
					t.Error("the connection stayed open after a refusal")
				}
				if mode == "TLS" && len(h.tls) > 0 && !h.tls[0] {
					t.Error("net/http did not see the guarded connection as TLS")
				}
			})
		}
	}
}

// TestTargetTooLong: a request target longer than MaxHeaderBytes gets the
// guard's own 414 (RFC 9112 Section 3), whole, then the connection ends;
// no handler sees it, and net/http's 400 (or 431) is not written after
// it. One of exactly the limit is served. The longest target leaves most
// of itself unread when the 414 goes out: it must not reset the
// connection under the answer.
func TestTargetTooLong(t *testing.T) {
	long := func(n int) string { return "/" + strings.Repeat("a", n-1) }
	tests := []struct {
		name     string
		target   string
		statuses []int
		handled  []string
		refused  string
	}{
		{name: "of the limit", target: long(DefaultMaxHeaderBytes), statuses: []int{200, 200}, handled: []string{long(DefaultMaxHeaderBytes), "/canary"}},
		{name: "one byte over", target: long(DefaultMaxHeaderBytes + 1), statuses: []int{414}, refused: "request target too long"},
		{name: "past net/http's own limit", target: long(DefaultMaxHeaderBytes + 8<<10), statuses: []int{414}, refused: "request target too long"},
		{name: "four times the limit", target: long(4 * DefaultMaxHeaderBytes), statuses: []int{414}, refused: "request target too long"},
	}
	const wantBody = "414 URI Too Long: request target longer than 65536 bytes\n"
	cert := selfSigned(t)
	for _, mode := range []string{"plain", "TLS"} {
		for _, tt := range tests {
			t.Run(mode+" "+tt.name, func(t *testing.T) {
				h := &seen{}
				c, refusals := dialGuarded(t, h, mode, cert)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				req := "GET " + tt.target + " HTTP/1.1\r\nHost: x\r\n\r\n" + canary
				go io.WriteString(c, req) // a client may still be writing when the answer comes
				br := bufio.NewReader(c)
				var statuses []int
				for len(statuses) < len(tt.statuses) {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("after %v: %v", statuses, err)
					}
					body, err := io.ReadAll(resp.Body)
					if err != nil {
						t.Fatalf("body of the %d: %v", resp.StatusCode, err)
					}
					statuses = append(statuses, resp.StatusCode)
					if resp.StatusCode == http.StatusRequestURITooLong {
						if string(body) != wantBody || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !resp.Close {
							t.Errorf("414 %q, %q, close %v; want %q, text/plain, Connection: close", body, resp.Header, resp.Close, wantBody)
						}
					}
				}
				if !slices.Equal(statuses, tt.statuses) {
					t.Errorf("statuses %v, want %v", statuses, tt.statuses)
				}
				if tt.refused != "" {
					// Nothing after the 414: net/http's 400 must not follow.
					rest, err := io.ReadAll(br)
					if len(rest) > 0 || err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
						t.Errorf("after the 414: %q, %v; want the connection closed", rest, err)
					}
				}
				if got := h.get(); !slices.Equal(got, tt.handled) {
					t.Errorf("handler saw %d requests, want %d", len(got), len(tt.handled))
				}
				if r := refusals(); tt.refused == "" && len(r) > 0 || tt.refused != "" && (len(r) != 1 || r[0] != tt.refused) {
					t.Errorf("refusals %q, want %q", r, tt.refused)
				}
			})
		}
	}
}

// wsUpstream answers a WebSocket upgrade with 101 and then echoes bytes;
// any other request gets 400.
var wsUpstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "websocket" || r.URL.Path != "/ws" {
		http.Error(w, "no", http.StatusBadRequest)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	io.Copy(c, brw)
})

func proxyFront(t *testing.T) string {
	t.Helper()
	up := httptest.NewServer(wsUpstream)
	t.Cleanup(up.Close)
	pool, err := proxy.NewPool("ws", proxy.PoolOptions{Addresses: []string{up.Listener.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	addr, _ := serve(t, proxy.NewHTTPProxy(pool, proxy.HTTPOptions{}), nil)
	return addr
}

// TestWebSocketTunnel: after the proxy's 101, the bytes are WebSocket
// frames, not HTTP; the guard must let them through (the proxy's hijack
// tells it so).
func TestWebSocketTunnel(t *testing.T) {
	c, err := net.Dial("tcp", proxyFront(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	// A masked WebSocket frame is anything but an HTTP head: bare LFs,
	// control bytes, a Content-Length and Transfer-Encoding together.
	frame := "\x81\x85\x01\x02\x03\x04\n\x00 Content-Length: 1\r\nTransfer-Encoding: chunked\r\n \r\n\r\n"
	io.WriteString(c, frame)
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != frame {
		t.Fatalf("echo through the tunnel: %q, %v", got, err)
	}
}

// TestRefusedUpgradeKeepsWatching: an upgrade the upstream declines is an
// ordinary request; what follows it is still read as HTTP, and judged.
func TestRefusedUpgradeKeepsWatching(t *testing.T) {
	c, err := net.Dial("tcp", proxyFront(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	statuses, closed := exchange(t, c, "GET /not-ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"+
		"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n")
	if !slices.Equal(statuses, []int{400, 400}) || !closed {
		t.Errorf("statuses %v, closed %v; want the upstream's 400, then the guard's 400 and close", statuses, closed)
	}
}

// selfSigned makes a certificate for the TLS rows; the client does not
// verify it.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
