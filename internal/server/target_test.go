package server

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRequestTargetForms: an HTTP/1.1 request target is a path, an http
// or https URI (any case) whose authority replaces Host (RFC 9112 section
// 3.2.2), or "*" for OPTIONS; anything else gets 400 and no upstream
// hears of it (another scheme was routed by its authority and forwarded
// as an https request for its path; "http:///x" went upstream under the
// Host field's name). Over HTTP/2, a :scheme other than http or https and
// a :path that is not a path are refused too (net/http's server resets
// the stream; the rows guard that it stays so).
func TestRequestTargetForms(t *testing.T) {
	type seen struct{ host, path string }
	var (
		mu  sync.Mutex
		got []seen
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Host, r.URL.Path})
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	ts := startServer(t, baseConfig+`
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["`+strings.TrimPrefix(up.URL, "http://")+`"]
`)
	addr := ts.addr("https")
	upstreamGot := func() []seen {
		mu.Lock()
		defer mu.Unlock()
		return append([]seen(nil), got...)
	}

	h1 := []struct {
		target string
		status int
		want   seen   // what the upstream got, for a 200
		body   string // part of the refusal's body
	}{
		{target: "/x", status: 200, want: seen{"localhost", "/x"}},
		{target: "https://localhost/x", status: 200, want: seen{"localhost", "/x"}},
		{target: "HTTPS://localhost/x", status: 200, want: seen{"localhost", "/x"}},
		{target: "Http://localhost/a/../x?q=1", status: 200, want: seen{"localhost", "/x"}},
		{target: "https://localhost", status: 200, want: seen{"localhost", "/"}},
		// origin-form whose path begins with "//": a path, its Host is
		// the field's, its empty segments merged.
		{target: "//localhost/x", status: 200, want: seen{"localhost", "/localhost/x"}},
		{target: "ftp://localhost/x", status: 400, body: "neither a path nor an http or https URI"},
		{target: "ws://localhost/x", status: 400, body: "neither a path nor an http or https URI"},
		{target: "httpx://localhost/x", status: 400, body: "neither a path nor an http or https URI"},
		{target: "localhost/x", status: 400}, // net/http's own 400
		{target: "*", status: 400, body: "neither a path nor an http or https URI"},
		{target: "http:/x", status: 400, body: "names no host"},
		{target: "http:///x", status: 400, body: "names no host"},
		{target: "https:x", status: 400, body: "names no host"},
	}
	for _, tt := range h1 {
		t.Run("HTTP/1.1 "+tt.target, func(t *testing.T) {
			before := len(upstreamGot())
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			// The Host field names the site too: only a target that
			// takes its place may change the authority.
			io.WriteString(c, "GET "+tt.target+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.body) {
				t.Fatalf("%d %q, want %d containing %q", resp.StatusCode, body, tt.status, tt.body)
			}
			after := upstreamGot()[before:]
			switch {
			case tt.status != 200 && len(after) > 0:
				t.Errorf("the upstream got %+v", after)
			case tt.status == 200 && (len(after) != 1 || after[0] != tt.want):
				t.Errorf("the upstream got %+v, want %+v", after, tt.want)
			}
		})
	}

	// The absolute-form's authority takes Host's place: a target naming
	// another site is answered as that site's request (421 here: no site
	// serves it on this connection's certificate), never as localhost's.
	t.Run("HTTP/1.1 authority replaces Host", func(t *testing.T) {
		before := len(upstreamGot())
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET https://other.test/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no response: %v", err)
		}
		resp.Body.Close()
		for _, s := range upstreamGot()[before:] {
			if s.host != "other.test" {
				t.Errorf("the upstream got Host %q for a target naming other.test (status %d)", s.host, resp.StatusCode)
			}
		}
	})

	h2 := []struct {
		name   string
		fields [][2]string
		want   string // the answer's :status, or "reset"
	}{
		{"https", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/x"}}, "200"},
		{"ftp", [][2]string{{":method", "GET"}, {":scheme", "ftp"}, {":authority", "localhost"}, {":path", "/x"}}, "reset"},
		{"upper case", [][2]string{{":method", "GET"}, {":scheme", "HTTPS"}, {":authority", "localhost"}, {":path", "/x"}}, "reset"},
		{"absolute :path", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "https://localhost/x"}}, "reset"},
	}
	for _, tt := range h2 {
		t.Run("HTTP/2 "+tt.name, func(t *testing.T) {
			before := len(upstreamGot())
			send, answer := h2Request(t, ts, tt.fields)
			send("", true)
			if got := answer(); got != tt.want {
				t.Fatalf("answer %s, want %s", got, tt.want)
			}
			if after := upstreamGot()[before:]; tt.want != "200" && len(after) > 0 {
				t.Errorf("the upstream got %+v", after)
			}
		})
	}
}
