package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fieldLines is n header field lines "X-Fi: v".
func fieldLines(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-F%d: v\r\n", i)
	}
	return b.String()
}

// TestResponseFieldCap: an upstream response head (final or interim) or
// trailer section with more field lines than MaxResponseHeaderFields is
// the upstream's fault: 502 for a head (the response cut short for
// trailers, whose head went out already), counted toward ejection, and the
// connection is not reused. One of exactly the cap passes and keeps its
// connection. Before, only the 64 KiB byte cap applied: 10,000 fields
// passed.
func TestResponseFieldCap(t *testing.T) {
	const max = DefaultMaxHeaderFields
	chunked := func(trailers int) string {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n" + fieldLines(trailers) + "\r\n"
	}
	tests := []struct {
		name, answer string
		status       int  // the client's; 0: the body breaks
		bad          bool // counted against the upstream, its connection dropped
	}{
		{name: "fields of the cap", answer: "HTTP/1.1 200 OK\r\n" + fieldLines(max-1) + "Content-Length: 2\r\n\r\nok", status: 200},
		{name: "one field over", answer: "HTTP/1.1 200 OK\r\n" + fieldLines(max) + "Content-Length: 2\r\n\r\nok", status: 502, bad: true},
		{name: "ten thousand fields", answer: "HTTP/1.1 200 OK\r\n" + fieldLines(10000) + "Content-Length: 2\r\n\r\nok", status: 502, bad: true},
		{name: "interim over the cap", answer: "HTTP/1.1 103 Early Hints\r\n" + fieldLines(max+1) + "\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 502, bad: true},
		{name: "trailers of the cap", answer: chunked(max), status: 200},
		{name: "trailers one over", answer: chunked(max + 1), bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The most requests one upstream connection carried (the
			// health probe a failure starts dials its own).
			var most atomic.Int32
			up := rawUpstream(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for n := int32(1); ; n++ {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if n > most.Load() {
						most.Store(n)
					}
					if _, err := io.WriteString(c, tt.answer); err != nil {
						return
					}
				}
			})
			pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}, MaxFails: 2, EjectFor: time.Hour})
			url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger}))
			client := testClient()
			for i := range 2 {
				resp, err := client.Get(url)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case tt.status == 0 && err == nil:
					t.Fatalf("request %d: %d %q read whole, want the body cut short", i, resp.StatusCode, body)
				case tt.status != 0 && (resp.StatusCode != tt.status || err != nil):
					t.Fatalf("request %d: %d %q (%v), want %d", i, resp.StatusCode, body, err, tt.status)
				case tt.status == 200 && string(body) != "ok":
					t.Fatalf("request %d: body %q", i, body)
				case tt.status == 502 && !strings.Contains(string(body), "sent an invalid response"):
					t.Fatalf("request %d: body %q", i, body)
				}
				if f := resp.Header.Get("X-F0"); tt.bad && f != "" {
					t.Errorf("request %d: the client got the upstream's fields", i)
				}
			}
			if tt.bad {
				waitFor(t, "the upstream's ejection", func() bool { return !pool.Upstreams()[0].Healthy })
				if n := most.Load(); n != 1 {
					t.Errorf("an upstream connection carried %d requests: one over the cap was reused", n)
				}
				return
			}
			if n, up := most.Load(), pool.Upstreams()[0]; n != 2 || !up.Healthy {
				t.Errorf("one upstream connection carried at most %d of the 2 requests (want 2), healthy %v", n, up.Healthy)
			}
		})
	}
}

// TestRequestFieldCap: a request with more header fields than
// MaxRequestHeaderFields gets 431, one with more trailer fields 400, and
// neither reaches the upstream whole; the cap itself passes. (In front of the
// server, h1guard refuses such an HTTP/1.1 head before net/http parses it;
// this is the check every protocol meets.)
func TestRequestFieldCap(t *testing.T) {
	const max = DefaultMaxHeaderFields
	var reached atomic.Int32 // requests the upstream received whole
	up := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err == nil {
			reached.Add(1)
		}
	}))
	pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger}))
	chunked := func(trailers int) string {
		return "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n" + fieldLines(trailers) + "\r\n"
	}
	for _, tt := range []struct {
		name, raw string
		want      string // the answer begins so
		reaches   bool
	}{
		// Host is not counted: it is the request's authority, not a field
		// net/http keeps in the header map.
		{name: "fields of the cap", raw: "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fieldLines(max-1) + "\r\n", want: "HTTP/1.1 200", reaches: true},
		{name: "one field over", raw: "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fieldLines(max) + "\r\n", want: "HTTP/1.1 431"},
		// net/http's own reader stops at 10,000 (its 431).
		{name: "five thousand fields", raw: "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fieldLines(5000) + "\r\n", want: "HTTP/1.1 431"},
		{name: "trailers of the cap", raw: chunked(max), want: "HTTP/1.1 200", reaches: true},
		{name: "trailers one over", raw: chunked(max + 1), want: "HTTP/1.1 400"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := reached.Load()
			got := rawAll(t, hostOf(url), tt.raw)
			if !strings.HasPrefix(got, tt.want) {
				t.Fatalf("got %.200q, want it to begin %q", got, tt.want)

			}
			if n := reached.Load() - before; n != 0 != tt.reaches {
				t.Errorf("%d requests reached the upstream", n)
			}
		})
	}
}

// BenchmarkResponseFields measures a request whose upstream answers a head
// of 9,000 fields (7 bytes each, under the 64 KiB byte cap): passed on
// with the field cap off ("uncapped", the behaviour before it), refused
// with 502 at the 101st field with it ("capped"). The upstream writes
// the same bytes either way; the proxy's CPU and allocations differ.
func BenchmarkResponseFields(b *testing.B) {
	var head strings.Builder
	head.WriteString("HTTP/1.1 200 OK\r\n")
	for i := range 9000 {
		fmt.Fprintf(&head, "%c%03d:\r\n", 'a'+i/1000, i%1000)
	}
	head.WriteString("Content-Length: 2\r\n\r\nok")
	answer := head.String()
	for _, bb := range []struct {
		name string
		max  int
		want int
	}{{"uncapped", -1, 200}, {"capped", 0, 502}} {
		b.Run(bb.name, func(b *testing.B) {
			up := answeringUpstream(b, func(string) string { return answer })
			// Never ejected: every request is refused by the cap.
			pool, err := NewPool("bench", PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}, MaxFails: 1 << 30, Logger: quietLogger})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { pool.Close() })
			px := NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger, MaxResponseHeaderFields: bb.max})
			front := httptest.NewServer(px)
			b.Cleanup(front.Close)
			c := &http.Client{Transport: &http.Transport{MaxResponseHeaderBytes: 1 << 20}, Timeout: 10 * time.Second}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Get(front.URL)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != bb.want {
					b.Fatalf("status %d, want %d", resp.StatusCode, bb.want)
				}
			}
		})
	}
}
