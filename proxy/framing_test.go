package proxy

import (
	"slices"
	"testing"
	"time"
)

// canary is pipelined after each request of TestRequestFraming: it must
// reach the upstream only when the request before it was framed beyond
// doubt.
const canary = "GET /canary HTTP/1.1\r\nHost: x\r\n\r\n"

// TestRequestFraming sends ambiguous or malformed HTTP/1.x framing (RFC
// 9112 Sections 2.2, 5, 6.1 and 6.3) through a real http.Server in front
// of the proxy, each followed by a pipelined canary request.
//
// Rows marked "Go" are refused by net/http itself before any handler
// runs; the test pins that down, so a Go upgrade that relaxes one fails
// here. Rows marked "close" are accepted by net/http with the evidence
// removed (Content-Length deleted next to Transfer-Encoding, Transfer-
// Encoding ignored in HTTP/1.0, obs-fold joined): CheckRequest answers
// them with Connection: close, so the canary is never parsed as a request.
// The last rows are well framed and keep the connection.
func TestRequestFraming(t *testing.T) {
	tests := []struct {
		name     string
		request  string
		statuses []int    // every response read before the connection ended
		upstream []string // request targets the upstream saw
		open     bool     // the connection stays open for more
	}{
		// Go.
		{name: "Go: conflicting Content-Length", statuses: []int{400},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{name: "Go: Content-Length list", statuses: []int{400},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello"},
		{name: "Go: signed Content-Length", statuses: []int{400},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"},
		{name: "Go: negative Content-Length", statuses: []int{400},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"},
		{name: "Go: hex Content-Length", statuses: []int{400},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello"},
		{name: "Go: transfer coding other than chunked", statuses: []int{501},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello"},
		{name: "Go: chunked not alone", statuses: []int{501},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{name: "Go: chunked not last", statuses: []int{501},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
		{name: "Go: two Transfer-Encoding fields", statuses: []int{501},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{name: "Go: whitespace before the colon", statuses: []int{400},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello"},
		{name: "Go: two Host fields", statuses: []int{400},
			request: "GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
		{name: "Go: no Host in HTTP/1.1", statuses: []int{400},
			request: "GET /a HTTP/1.1\r\n\r\n"},
		{name: "Go: NUL in a field value", statuses: []int{400},
			request: "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"},
		{name: "Go: bare CR in a field value", statuses: []int{400},
			request: "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"},
		{name: "Go: obs-fold on the first field", statuses: []int{400},
			request: "GET /a HTTP/1.1\r\n Host: x\r\n\r\n"},
		{name: "Go: request line with two spaces", statuses: []int{400},
			request: "GET  /a HTTP/1.1\r\nHost: x\r\n\r\n"},
		// close.
		{name: "close: Content-Length and chunked", statuses: []int{200}, upstream: []string{"/a"},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{name: "close: chunked and Content-Length 0", statuses: []int{200}, upstream: []string{"/a"},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n"},
		{name: "close: chunked folded onto the next line", statuses: []int{200}, upstream: []string{"/a"},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"},
		{name: "close: Transfer-Encoding in HTTP/1.0 keep-alive", statuses: []int{200}, upstream: []string{"/a"},
			request: "POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc"},
		{name: "close: any chunked request", statuses: []int{200}, upstream: []string{"/a"},
			request: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{name: "close: HTTP/1.0 keep-alive", statuses: []int{200}, upstream: []string{"/a"},
			request: "GET /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"},
		// Well framed.
		{name: "GET", statuses: []int{200, 200}, upstream: []string{"/a", "/canary"}, open: true,
			request: "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"},
		{name: "Content-Length body", statuses: []int{200, 200}, upstream: []string{"/a", "/canary"}, open: true,
			request: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"},
		{name: "duplicate equal Content-Length", statuses: []int{200, 200}, upstream: []string{"/a", "/canary"}, open: true,
			request: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			px, rec, pool := proxyTo(t, HTTPOptions{})
			front := proxyServer(t, miniRouter{routes: []miniRoute{{prefix: "/", h: px}}})
			resps, _, closed := rawExchange(t, hostOf(front), tt.request+canary, 2*time.Second)
			if got := statuses(resps); !slices.Equal(got, tt.statuses) {
				t.Errorf("statuses %v, want %v", got, tt.statuses)
			}
			if got := rec.uris(); !slices.Equal(got, tt.upstream) {
				t.Errorf("upstream saw %q, want %q", got, tt.upstream)
			}
			if closed == tt.open {
				t.Errorf("connection closed = %v, want %v", closed, !tt.open)
			}
			if st := pool.Upstreams()[0]; st.ConsecutiveFailures != 0 {
				t.Errorf("upstream %+v, want no failure counted", st)
			}
		})
	}
}
