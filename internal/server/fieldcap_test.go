package server

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHeaderFieldCaps: limits.request_header_fields and
// limits.response_header_fields (100 by default) over every protocol. A
// request with one field more than the cap gets 431 and reaches no
// upstream: over HTTP/1.1 from h1guard before net/http parses it
// (counted as "too many header fields"), over HTTP/2 from net/http, over
// HTTP/3 from the proxy (quic-go counts bytes only). An upstream response
// with one field more gets 502. The caps themselves pass.
func TestHeaderFieldCaps(t *testing.T) {
	up := newRecordingUpstream(t)
	fields := func(n int) [][2]string {
		f := make([][2]string, n)
		for i := range f {
			f[i] = [2]string{fmt.Sprintf("x-f%d", i), "v"}
		}
		return f
	}
	manySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 100 - 3 // beside Content-Length, Content-Type and Date
		if r.URL.Path == "/fields/over" {
			n++
		}
		for i := range n {
			w.Header().Set(fmt.Sprintf("X-F%d", i), "v")
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(manySrv.Close)
	many := strings.TrimPrefix(manySrv.URL, "http://")
	ts := startServer(t, strings.Replace(baseConfig, `address = "127.0.0.1:0"`, "address = \"127.0.0.1:0\"\nhttp3 = true", 1)+`
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/fields/"
pool = "many"
[[site.route]]
path = "/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["`+up.addr+`"]
[[pool]]
name = "many"
upstreams = ["`+many+`"]
`)

	addr := ts.addr("https")

	t.Run("HTTP/1.1", func(t *testing.T) {
		for _, tt := range []struct {
			fields int // besides Host
			want   int
		}{{99, 200}, {100, 431}, {10000, 431}} {
			before := len(up.requests())
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			var req strings.Builder
			req.WriteString("GET /x HTTP/1.1\r\nHost: localhost\r\n")
			for _, f := range fields(tt.fields) {
				req.WriteString(f[0] + ": " + f[1] + "\r\n")
			}
			io.WriteString(c, req.String()+"\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("%d fields: no response: %v", tt.fields, err)
			}
			body, _ := io.ReadAll(resp.Body)
			c.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%d fields and Host: %d %q, want %d", tt.fields, resp.StatusCode, body, tt.want)
			}
			if got := len(up.requests()) - before; (got == 1) != (tt.want == 200) {
				t.Errorf("%d fields and Host: %d requests reached the upstream", tt.fields, got)
			}
			if tt.want == 431 && !strings.Contains(string(body), "more than 100 header fields") {
				t.Errorf("body %q does not say why", body)
			}
		}
		if n := ts.metricSum("pqedge_http1_refused_total", `reason="too many header fields"`); n != 2 {
			t.Errorf("refusals counted %v, want 2", n)
		}
	})

	for _, proto := range []struct {
		name string
		req  func(t *testing.T, ts *testServer, fields [][2]string) (func(string, bool), func() string)
	}{{"HTTP/2", h2Request}, {"HTTP/3", h3Request}} {
		t.Run(proto.name, func(t *testing.T) {
			for _, tt := range []struct {
				fields int
				want   string
			}{{100, "200"}, {101, "431"}, {1000, "431"}} {
				before := len(up.requests())
				head := [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/x"}}
				send, answer := proto.req(t, ts, append(head, fields(tt.fields)...))
				send("", true)
				if got := answer(); got != tt.want {
					t.Fatalf("%d fields: %s, want %s", tt.fields, got, tt.want)
				}
				if got := len(up.requests()) - before; (got == 1) != (tt.want == "200") {
					t.Errorf("%d fields: %d requests reached the upstream", tt.fields, got)
				}
			}
		})
	}

	t.Run("response", func(t *testing.T) {
		client := ts.client(tls.X25519MLKEM768)
		for _, tt := range []struct {
			path string
			want int
		}{{"/fields/cap", 200}, {"/fields/over", 502}} {
			resp, err := client.Get("https://" + addr + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%s: %d %q, want %d", tt.path, resp.StatusCode, body, tt.want)
			}
			if tt.want == 502 && resp.Header.Get("X-F0") != "" {
				t.Errorf("%s: the client got the upstream's fields", tt.path)
			}
		}
	})
}
