package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// benchSetup starts an upstream answering 1 KiB and a proxy in front of it,
// both on loopback, and returns their URLs and a keep-alive client.
func benchSetup(b *testing.B) (direct, proxied string, c *http.Client) {
	b.Helper()
	body := make([]byte, 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	b.Cleanup(up.Close)
	pool, err := NewPool("bench", PoolOptions{Addresses: []string{up.Listener.Addr().String()}, Health: HealthOptions{Interval: -1}, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pool.Close() })
	px := NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger})
	front := httptest.NewServer(px)
	b.Cleanup(front.Close)
	b.Cleanup(px.CloseIdleConnections)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	return up.URL, front.URL, &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func benchGet(b *testing.B, c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkHTTP measures one keep-alive client sending requests one after
// another, directly to the upstream and through the proxy.
func BenchmarkHTTP(b *testing.B) {
	direct, proxied, c := benchSetup(b)
	for _, bb := range []struct{ name, url string }{{"direct", direct}, {"proxy", proxied}} {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				benchGet(b, c, bb.url)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkHTTPProxyRatio alternates one direct and one proxied request, so
// both see the same machine noise, and reports their rates and the ratio
// proxy/direct (1 would mean the proxy is free).
func BenchmarkHTTPProxyRatio(b *testing.B) {
	direct, proxied, c := benchSetup(b)
	benchGet(b, c, direct) // open the keep-alive connections outside the timing
	benchGet(b, c, proxied)
	var tDirect, tProxy time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		benchGet(b, c, direct)
		t1 := time.Now()
		benchGet(b, c, proxied)
		tProxy += time.Since(t1)
		tDirect += t1.Sub(t0)
		n++
	}
	b.ReportMetric(float64(n)/tDirect.Seconds(), "direct-req/s")
	b.ReportMetric(float64(n)/tProxy.Seconds(), "proxy-req/s")
	b.ReportMetric(tDirect.Seconds()/tProxy.Seconds(), "proxy/direct")
}

// BenchmarkHTTPParallel is BenchmarkHTTP with GOMAXPROCS concurrent
// keep-alive clients.
func BenchmarkHTTPParallel(b *testing.B) {
	direct, proxied, c := benchSetup(b)
	for _, bb := range []struct{ name, url string }{{"direct", direct}, {"proxy", proxied}} {
		b.Run(bb.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchGet(b, c, bb.url)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkHTTP2BodyPreRead alternates HTTP/2 POSTs through the proxy
// whose bodies are read whole before an upstream is picked (PreReadBody
// bytes) with ones a byte longer, which are streamed, so both see the same
// machine noise; it reports each one's time per request and their ratio
// (pre-read over streamed; 1 would mean reading the body first is free).
func BenchmarkHTTP2BodyPreRead(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	b.Cleanup(up.Close)
	pool, err := NewPool("bench", PoolOptions{Addresses: []string{up.Listener.Addr().String()}, Health: HealthOptions{Interval: -1}, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pool.Close() })
	px := NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger})
	b.Cleanup(px.CloseIdleConnections)
	url, c := h2Front(b, px)
	post := func(body []byte) time.Duration {
		t0 := time.Now()
		resp, err := c.Post(url, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			b.Fatalf("%s over %s, want 200 over HTTP/2", resp.Status, resp.Proto)
		}
		return time.Since(t0)
	}
	preRead, streamed := make([]byte, PreReadBody), make([]byte, PreReadBody+1)
	post(preRead) // the connections, outside the timing
	post(streamed)
	var tPre, tStream time.Duration
	n := 0
	for b.Loop() {
		tPre += post(preRead)
		tStream += post(streamed)
		n++
	}
	b.ReportMetric(float64(tPre.Nanoseconds())/float64(n), "pre-read-ns/req")
	b.ReportMetric(float64(tStream.Nanoseconds())/float64(n), "streamed-ns/req")
	b.ReportMetric(tPre.Seconds()/tStream.Seconds(), "pre-read/streamed")
}
