package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestWellFramedResponsesKeepTheConnection: the response framer
// (responseFramer) withholds only what comes after a response's end, so
// every ordinary kind of response leaves its upstream connection to the
// next request, counted as served: five sequential requests take one
// upstream connection, the answers and trailers arrive whole and the
// upstream stays healthy with no failure counted.
func TestWellFramedResponsesKeepTheConnection(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		req     func(url string) *http.Request
		status  int
		body    string
	}{
		{"200 length", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }, nil, 200, "hello"},
		{"HEAD length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1234")
		}, func(u string) *http.Request { r, _ := http.NewRequest("HEAD", u, nil); return r }, 200, ""},
		{"304 etag", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"abc"`)
			if r.Header.Get("If-None-Match") == `"abc"` {
				w.WriteHeader(304)
				return
			}
			io.WriteString(w, "full")
		}, func(u string) *http.Request {
			r, _ := http.NewRequest("GET", u, nil)
			r.Header.Set("If-None-Match", `"abc"`)
			return r
		}, 304, ""},
		{"chunked trailers", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "Grpc-Status")
			io.WriteString(w, "part1")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("Grpc-Status", "0")
			w.Header().Set(http.TrailerPrefix+"Grpc-Message", "ok")
		}, nil, 200, "part1part2"},
		{"103 then 200", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(103)
			io.WriteString(w, "final")
		}, nil, 200, "final"},
		{"204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }, nil, 204, ""},
		{"empty", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Content-Length", "0") }, nil, 200, ""},
		{"1 MiB", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) }, nil, 200, big},
		{"POST expect 100", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		}, func(u string) *http.Request {
			r, _ := http.NewRequest("POST", u, strings.NewReader("payload"))
			r.Header.Set("Expect", "100-continue")
			return r
		}, 200, "payload"},
		{"POST chunked with trailers", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
			io.WriteString(w, r.Trailer.Get("X-Sum"))
		}, func(u string) *http.Request {
			r, _ := http.NewRequest("POST", u, io.MultiReader(bytes.NewReader([]byte("pay")), strings.NewReader("load")))
			r.ContentLength = -1
			r.Trailer = http.Header{"X-Sum": {"42"}}
			return r
		}, 200, "payload42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, conns := connCountingUpstream(t, tt.handler)
			pool := newTestPool(t, PoolOptions{Addresses: []string{addr}, Health: HealthOptions{Interval: -1}})
			url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger}))
			c := testClient()
			for i := 0; i < 5; i++ {
				var req *http.Request
				if tt.req != nil {
					req = tt.req(url)
				} else {
					req, _ = http.NewRequest("GET", url, nil)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.status || string(b) != tt.body {
					t.Fatalf("request %d: %d %.40q, want %d %.40q", i, resp.StatusCode, b, tt.status, tt.body)
				}
				if tt.name == "chunked trailers" && (resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "ok") {
					t.Errorf("trailers %v", resp.Trailer)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("upstream accepted %d connections for 5 sequential requests, want 1", n)
			}
			if st := pool.Upstreams()[0]; !st.Healthy || st.ConsecutiveFailures != 0 {
				t.Errorf("upstream %+v, want healthy with no failure counted", st)
			}
		})
	}
}

// TestWellFramedResponsesKeepTheConnectionConcurrently: 16 clients mixing
// HEAD answers with a length, chunked answers with trailers, 304s and
// plain ones reuse their upstream connections (one a client) and get no
// 5xx.
func TestWellFramedResponsesKeepTheConnectionConcurrently(t *testing.T) {
	addr, conns := connCountingUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Content-Length", "99")
		case "/chunk":
			w.Header().Set("Trailer", "Grpc-Status")
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			w.Header().Set("Grpc-Status", "0")
		case "/304":
			w.Header().Set("ETag", `"x"`)
			w.WriteHeader(304)
		default:
			io.WriteString(w, strings.Repeat("y", 3000))
		}
	}))
	pool := newTestPool(t, PoolOptions{Addresses: []string{addr}, Health: HealthOptions{Interval: -1}})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger}))
	c := testClient()
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
	done := make(chan error)
	for g := 0; g < 16; g++ {
		go func() {
			var err error
			for i := 0; i < 200 && err == nil; i++ {
				m, p := "GET", []string{"/head", "/chunk", "/304", "/"}[i%4]
				if p == "/head" {
					m = "HEAD"
				}
				req, _ := http.NewRequest(m, url+p, nil)
				var resp *http.Response
				resp, err = c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 500 {
						err = fmt.Errorf("%s %s: %s", m, p, resp.Status)
					}
				}
			}
			done <- err
		}()
	}
	for g := 0; g < 16; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	// Go's transport may dial while a connection it just finished with
	// is on its way back to the idle pool (the body's EOF reaches the
	// client before the read loop returns the connection), and keeps the
	// dialled one: a clean-clone CI run under load saw 17. A framer that
	// failed well-framed connections would need one per such response,
	// hundreds here, so two per client still tells them apart.
	if n := conns.Load(); n > 2*16 {
		t.Errorf("upstream accepted %d connections for 3,200 requests from 16 clients, want at most 32", n)
	}
	if st := pool.Upstreams()[0]; !st.Healthy || st.ConsecutiveFailures != 0 {
		t.Errorf("upstream %+v, want healthy with no failure counted", st)
	}
}

// connCountingUpstream serves h on loopback and counts the connections
// it accepts; it is closed when the test ends.
func connCountingUpstream(t *testing.T, h http.Handler) (string, *atomic.Int32) {
	t.Helper()
	conns := new(atomic.Int32)
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String(), conns
}
