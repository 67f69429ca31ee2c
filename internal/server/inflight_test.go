package server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRequestsPerClient: one client address has at most
// limits.requests_per_client requests in flight, over HTTP/1.1, HTTP/2
// and HTTP/3 together; one more is answered 429 with Retry-After before
// any upstream hears of it, and a slot is free again once its request
// ends. Before, nothing bounded them but 250 streams an HTTP/2
// connection: 100 connections of 100 streams each, holding their
// responses at a zero flow-control window, pinned 9,350 upstream
// connections and 830 MiB of pqedge for timeouts.response_write.
func TestRequestsPerClient(t *testing.T) {
	const capacity = 4
	var arrived atomic.Int32
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		if r.URL.Path == "/hold" {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	defer upstream.Close()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	cfg := strings.Replace(hardenedConfig(strings.TrimPrefix(upstream.URL, "http://")), baseConfig, h3Config, 1)
	cfg = strings.Replace(cfg, "h2_resets = 20", "h2_resets = 20\nrequests_per_client = 4", 1)
	ts, _ := startH3(t, cfg)
	h3, _ := ts.h3Client()
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}}
	h2 := ts.client()
	tcpURL, quicURL := "https://"+ts.addr("https"), ts.h3URL("https")

	// The cap's requests, over two protocols: three HTTP/2 streams on
	// one connection and one HTTP/3 stream.
	held := make(chan *http.Response, capacity)
	for i := range capacity {
		c, url := h2, tcpURL
		if i == capacity-1 {
			c, url = h3, quicURL
		}
		go func() {
			resp, err := c.Get(url + "/hold")
			if err != nil {
				t.Errorf("held request: %v", err)
				held <- nil
				return
			}
			held <- resp
		}()
	}
	waitFor(t, "the held requests to reach the upstream", func() bool { return arrived.Load() == capacity })

	over := []struct {
		proto  string
		client *http.Client
		url    string
	}{
		{"HTTP/1.1", h1, tcpURL},
		{"HTTP/2", h2, tcpURL},
		{"HTTP/3", h3, quicURL},
	}
	for _, o := range over {
		t.Run(o.proto+" over the cap", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", o.url+"/more", nil)
			resp, err := o.client.Do(req)
			if err != nil {
				t.Fatalf("request over the cap: %v; want 429 at once", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("request over the cap: %s (Retry-After %q), want 429 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
			}
			if !strings.Contains(string(body), "requests_per_client") {
				t.Errorf("429 body %q does not name limits.requests_per_client", body)
			}
		})
	}
	if n := arrived.Load(); n != capacity {
		t.Errorf("the upstream got %d requests, want the %d under the cap", n, capacity)
	}
	if n := ts.metricSum("pqedge_http_requests_total", `code="429"`); n != float64(len(over)) {
		t.Errorf("pqedge_http_requests_total{code=\"429\"} = %v, want %d", n, len(over))
	}

	unblock()
	for range capacity {
		if resp := <-held; resp != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("held request answered %s, want 200", resp.Status)
			}
		}
	}
	// Every slot is free again: as many requests at once as the cap.
	var wg sync.WaitGroup
	for range capacity {
		wg.Go(func() {
			resp, err := h2.Get(tcpURL + "/again")
			if err != nil {
				t.Errorf("after the held requests ended: %v", err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("after the held requests ended: %s, want 200", resp.Status)
			}
		})
	}
	wg.Wait()
}

// TestRequestClientKey: requests count under the address connections do
// (limits.connections_per_client): IPv4 as is, IPv4-mapped IPv6 as IPv4,
// IPv6 by its /64; a Unix socket under none.
func TestRequestClientKey(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string // "" for no key
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 443}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 443}, "192.0.2.7"},
		{&net.UDPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 443}, "2001:db8:1:2::"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:bbbb::9"), Port: 1}, "2001:db8:1:2::"},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, ""},
	} {
		key, ok := requestClientKey(tc.addr)
		got := ""
		if ok {
			got = key.String()
		}
		if got != tc.want {
			t.Errorf("requestClientKey(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	var f inflight
	k := netip.MustParseAddr("192.0.2.1")
	if !f.acquire(k, 2) || !f.acquire(k, 2) || f.acquire(k, 2) {
		t.Fatal("cap 2: want two acquired, the third refused")
	}
	f.release(k)
	if !f.acquire(k, 2) {
		t.Fatal("a released slot was not free again")
	}
	f.release(k)
	f.release(k)
	if len(f.n) != 0 {
		t.Errorf("after every release the map holds %v, want nothing", f.n)
	}
	if !f.acquire(k, 0) {
		t.Error("cap 0 (none) refused a request")
	}
}
