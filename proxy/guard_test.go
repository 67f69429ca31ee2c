package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// miniRouter is what internal/server's router does with the guard:
// CheckRequest before matching, then the longest prefix, whose options
// travel in the context to the proxy.
type miniRouter struct {
	routes []miniRoute // longest prefix first
}

type miniRoute struct {
	prefix string
	h      http.Handler
	opts   RouteOptions
}

func (m miniRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if status, reason := CheckRequest(w, r); status != 0 {
		WriteRefusal(w, status, reason)
		return
	}
	for _, rt := range m.routes {
		if strings.HasPrefix(r.URL.Path, rt.prefix) {
			rt.h.ServeHTTP(w, r.WithContext(WithRouteOptions(r.Context(), rt.opts)))
			return
		}
	}
	http.Error(w, "404 Not Found: no route for this path", http.StatusNotFound)
}

// TestPathsRouteAsForwarded sends each path over HTTP/1.1 (the raw
// request line) and HTTP/2 (the raw :path) to a router with routes
// "/app/" and "/files/" (which allows encoded slashes) only: a path routes
// by its normalised form, reaches the upstream in exactly that form, or
// is refused.
func TestPathsRouteAsForwarded(t *testing.T) {
	app, appSeen, _ := proxyTo(t, HTTPOptions{})
	files, filesSeen, _ := proxyTo(t, HTTPOptions{})
	router := miniRouter{routes: []miniRoute{
		{prefix: "/files/", h: files, opts: RouteOptions{AllowEncodedSlashes: true}},
		{prefix: "/app/", h: app},
	}}
	tests := []struct {
		path   string
		status int
		app    string // what the /app/ upstream saw; "" nothing
		files  string // what the /files/ upstream saw
	}{
		{path: "/app/x", status: 200, app: "/app/x"},
		{path: "/app/./x/../y?q=1", status: 200, app: "/app/y?q=1"},
		{path: "/app/%7Euser/%41", status: 200, app: "/app/~user/A"},
		{path: "/app/a%2fb/../c", status: 200, app: "/app/c"}, // the segment with the slash is gone
		// The examples: never the /app/ pool.
		{path: "/app/../secret", status: 404},
		{path: "/app/%2e%2e/secret", status: 404},
		{path: "/app/..%2fsecret", status: 400},
		{path: "/app/..%2Fsecret", status: 400},
		{path: "/app/..;/secret", status: 400},
		{path: "/app/%252e%252e/secret", status: 400},
		{path: "/app/..\\secret", status: 400},
		{path: "/../app/x", status: 400},
		{path: "/app/%zz", status: 400}, // HTTP/2: Go resets the stream itself
		{path: "/app/%00", status: 400},
		// Encoded slashes: refused unless the route allows them, then
		// forwarded encoded.
		{path: "/app/a%2Fb", status: 400},
		{path: "/app/a%5cb", status: 400},
		{path: "/files/a%2fb", status: 200, files: "/files/a%2Fb"},
		{path: "/files/a%2F..%2Fb", status: 400},
		{path: "/files/x/../../app/y", status: 200, app: "/app/y"},
	}
	h1 := proxyServer(t, router)
	h2URL, h2Client := h2Front(t, router)
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		for _, tt := range tests {
			t.Run(proto+" "+tt.path, func(t *testing.T) {
				appBefore, filesBefore := len(appSeen.uris()), len(filesSeen.uris())
				status := 0
				if proto == "HTTP/1.1" {
					resps, _, _ := rawExchange(t, hostOf(h1), "GET "+tt.path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10*time.Second)
					if len(resps) != 1 {
						t.Fatalf("got %d responses", len(resps))
					}
					status = resps[0].StatusCode
				} else {
					req, _ := http.NewRequest("GET", h2URL, nil)
					req.URL.Opaque = tt.path // sent as :path, byte for byte
					resp, err := h2Client.Do(req)
					if err != nil && tt.status == 400 && strings.Contains(err.Error(), "PROTOCOL_ERROR") {
						// net/http refused the :path before any handler
						// ran (RFC 9113 Section 8.1.1, malformed).
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.ProtoMajor != 2 {
						t.Fatalf("front spoke %s", resp.Proto)
					}
					status = resp.StatusCode
				}
				if status != tt.status {
					t.Errorf("status %d, want %d", status, tt.status)
				}
				for _, u := range []struct {
					name   string
					seen   []string
					before int
					want   string
				}{{"/app/", appSeen.uris(), appBefore, tt.app}, {"/files/", filesSeen.uris(), filesBefore, tt.files}} {
					got := u.seen[u.before:]
					switch {
					case u.want == "" && len(got) > 0:
						t.Errorf("the %s upstream saw %q, want nothing", u.name, got)
					case u.want != "" && !slices.Equal(got, []string{u.want}):
						t.Errorf("the %s upstream saw %q, want %q", u.name, got, u.want)
					}
				}
			})
		}
	}
}

// protocolSwitcher answers 101 to every request carrying an Upgrade
// header, as a careless upstream would, and then echoes bytes; otherwise
// it answers 200 with what it saw.
var protocolSwitcher = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if up := r.Header.Get("Upgrade"); up != "" {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", up)
		io.Copy(c, brw)
		return
	}
	fmt.Fprintf(w, "normal answer; upgrade=%q connection=%q http2-settings=%q",
		r.Header.Get("Upgrade"), r.Header.Get("Connection"), r.Header.Get("HTTP2-Settings"))
})

func TestProtocolSwitches(t *testing.T) {
	pool := newTestPool(t, PoolOptions{Addresses: []string{httpUpstream(t, protocolSwitcher)}, Health: HealthOptions{Interval: -1}, MaxFails: 1, EjectFor: time.Hour})
	px := NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger})
	front := proxyServer(t, miniRouter{routes: []miniRoute{{prefix: "/", h: px}}})
	const normal = `normal answer; upgrade="" connection="" http2-settings=""`
	tests := []struct {
		name    string
		request string
		status  int
		body    string // for non-101 answers
	}{
		{
			name:    "h2c upgrade is stripped",
			request: "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
			status:  200, body: normal,
		},
		{
			name:    "h2c upgrade on a POST is stripped",
			request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nhi",
			status:  200, body: normal,
		},
		{
			name:    "unknown token is stripped",
			request: "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: foo/2\r\n\r\n",
			status:  200, body: normal,
		},
		{
			name:    "TLS upgrade is stripped",
			request: "OPTIONS / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: TLS/1.0\r\n\r\n",
			status:  200, body: normal,
		},
		{
			name:    "websocket on a POST is stripped",
			request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			status:  200, body: normal,
		},
		{
			name:    "websocket in HTTP/1.0 is stripped",
			request: "GET / HTTP/1.0\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			status:  200, body: normal,
		},
		{
			name:    "websocket with a body is stripped",
			request: "GET /chat HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nhello",
			status:  200, body: normal,
		},
		{
			name:    "websocket with a chunked body is stripped",
			request: "GET /chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			status:  200, body: normal,
		},
		{
			name:    "websocket upgrade passes",
			request: "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
			status:  101,
		},
		{
			name:    "websocket among other tokens passes as websocket alone",
			request: "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c, WebSocket\r\n\r\n",
			status:  101,
		},
		{
			name:    "CONNECT gets 405",
			request: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
			status:  405, body: "405 Method Not Allowed: CONNECT is not supported: pqedge is not a forward proxy\n",
		},
		{
			name:    "TRACE gets 405",
			request: "TRACE / HTTP/1.1\r\nHost: x\r\nCookie: session=secret\r\n\r\n",
			status:  405, body: "405 Method Not Allowed: TRACE is not supported\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", hostOf(front))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tt.request)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == http.StatusSwitchingProtocols {
				if got := resp.Header.Get("Upgrade"); got != "websocket" {
					t.Errorf("101 with Upgrade %q, want websocket", got)
				}
				io.WriteString(c, "frame\n")
				if line, err := br.ReadString('\n'); err != nil || line != "frame\n" {
					t.Errorf("tunnel echo: %q, %v", line, err)
				}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			if string(b) != tt.body {
				t.Errorf("body %q, want %q", b, tt.body)
			}
			if tt.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header (RFC 9110 Section 15.5.6)")
			}
		})
	}
	if st := pool.Upstreams()[0]; !st.Healthy || st.ConsecutiveFailures != 0 {
		t.Errorf("upstream after the protocol switches: %+v, want healthy with no failures", st)
	}
}

// TestConnectOverHTTP2 sends a plain CONNECT (RFC 9113 Section 8.5) over
// HTTP/2: it reaches the handler and gets 405, and nothing goes upstream.
func TestConnectOverHTTP2(t *testing.T) {
	px, rec, _ := proxyTo(t, HTTPOptions{})
	url, c := h2Front(t, px)
	req, _ := http.NewRequest("CONNECT", url, nil)
	req.URL.Opaque = "" // an authority-form request: :authority only
	req.Host = "example.com:443"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.ProtoMajor != 2 {
		t.Errorf("CONNECT over %s: status %d, want 405 over HTTP/2", resp.Proto, resp.StatusCode)
	}
	if n := len(rec.requests()); n != 0 {
		t.Errorf("the upstream saw %d requests", n)
	}
}
