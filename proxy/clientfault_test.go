package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pqedge/pqedge/internal/h1guard"
)

// infoFront serves px and keeps the RequestInfo of every request.
type infoFront struct {
	px    http.Handler
	mu    sync.Mutex
	infos []*RequestInfo
}

func (f *infoFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, info := WithRequestInfo(r.Context())
	f.px.ServeHTTP(w, r.WithContext(ctx))
	f.mu.Lock()
	f.infos = append(f.infos, info)
	f.mu.Unlock()
}

func (f *infoFront) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.infos)
}

func (f *infoFront) last() RequestInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.infos[len(f.infos)-1]
}

// TestClientFaultsKeepUpstreamHealthy sends each kind of client fault
// five times to a pool that ejects after two consecutive failures. Each
// gets the client's answer (400, 405, 408, or nothing when the client
// left), is marked ClientError, and the upstream stays healthy with no
// failure counted: a good request afterwards is served.
func TestClientFaultsKeepUpstreamHealthy(t *testing.T) {
	const stall = 300 * time.Millisecond
	tests := []struct {
		name    string
		request string
		hangUp  bool // close the connection right after writing
		status  int  // 0: the client left, no answer read
	}{
		{name: "malformed chunk size", status: 400,
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
		{name: "chunk size overflow", status: 400,
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n"},
		{name: "chunk line with bare LF", status: 400,
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"},
		{name: "chunk data without CRLF", status: 400,
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"},
		{name: "CONNECT", status: 405,
			request: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"},
		{name: "encoded slash", status: 400,
			request: "GET /a%2Fb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		{name: "body stalls after 1000 of 100000 bytes", status: 408,
			request: "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("a", 1000)},
		{name: "chunked body stalls in its trailer", status: 408,
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: b\r\n"},
		{name: "chunked body stalls after its last chunk", status: 408,
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"},
		{name: "chunked body stalls in a chunk-size line", status: 408,
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1"},
		{name: "client leaves mid-body", hangUp: true,
			request: "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("a", 1000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			px, _, pool := proxyTo(t, HTTPOptions{RequestBodyTimeout: stall})
			front := &infoFront{px: px}
			url := proxyServer(t, front)
			for i := range 5 {
				if tt.hangUp {
					c, err := net.Dial("tcp", hostOf(url))
					if err != nil {
						t.Fatal(err)
					}
					io.WriteString(c, tt.request)
					c.Close()
					waitFor(t, "the proxy to finish the abandoned request", func() bool { return front.count() == i+1 })
				} else {
					resps, _, _ := rawExchange(t, hostOf(url), tt.request, 10*time.Second)
					if len(resps) == 0 || resps[0].StatusCode != tt.status {
						t.Fatalf("request %d: statuses %v, want %d", i, statuses(resps), tt.status)
					}
				}
				if st := pool.Upstreams()[0]; !st.Healthy || st.ConsecutiveFailures != 0 {
					t.Fatalf("after request %d: upstream %+v, want healthy with no failure counted", i, st)
				}
			}
			if info := front.last(); !info.ClientError || info.Err == nil {
				t.Errorf("RequestInfo = %+v, want a client error", info)
			}
			if status, body := get(t, testClient(), url+"/after"); status != 200 || body != "ok" {
				t.Errorf("good request afterwards: %d %q", status, body)
			}
		})
	}
}

// guardedListener wraps every connection in h1guard, as pqedge's server
// does: a malformed chunk line then fails the body read with a refusal and
// net/http cancels the request's context.
type guardedListener struct{ net.Listener }

func (l guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return h1guard.Wrap(c, h1guard.Options{}), nil
}

var _ refusedRequest = (*h1guard.Error)(nil)

// TestGuardedChunkRefusalIs400: behind h1guard, a chunk line refused
// mid-body is answered 400 to the client still waiting (not 499, the log's
// code for a client that left), as the client's fault, and the upstream
// stays healthy.
func TestGuardedChunkRefusalIs400(t *testing.T) {
	for _, tt := range []struct{ name, request string }{
		{name: "chunk size not hexadecimal",
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nxyz\r\n0\r\n\r\n"},
		{name: "chunk size overflow",
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n"},
		{name: "chunk data without CRLF",
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"},
		// net/http peeks at a trailer for its end before parsing it and
		// reports its own error ("suspiciously long trailer"), while
		// h1guard's refusal of the peeked bytes cancels the request.
		{name: "request line in the trailer",
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{name: "trailer field without a colon",
			request: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nno colon here\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			px, rec, pool := proxyTo(t, HTTPOptions{RequestBodyTimeout: 5 * time.Second})
			front := &infoFront{px: px}
			s := httptest.NewUnstartedServer(front)
			s.Listener = guardedListener{s.Listener}
			s.Start()
			t.Cleanup(s.Close)
			resps, bodies, _ := rawExchange(t, hostOf(s.URL), tt.request, 10*time.Second)
			if len(resps) != 1 || resps[0].StatusCode != http.StatusBadRequest || !strings.Contains(bodies[0], "malformed request body") {
				t.Fatalf("statuses %v, bodies %q; want one 400 about the malformed body", statuses(resps), bodies)
			}
			waitFor(t, "the proxy to record the request", func() bool { return front.count() == 1 })
			if info := front.last(); !info.ClientError {
				t.Errorf("RequestInfo = %+v, want a client error", info)
			}
			if st := pool.Upstreams()[0]; !st.Healthy || st.ConsecutiveFailures != 0 {
				t.Errorf("upstream %+v, want healthy with no failure counted", st)
			}
			for _, uri := range rec.uris() {
				if uri != "/up" {
					t.Errorf("the upstream saw a request for %q", uri)
				}
			}
		})
	}
}

// TestRequestBodyDeadlinesHTTP2 stalls and trickles request bodies over
// HTTP/2: the client gets 408, the upstream's request is abandoned and
// the upstream stays healthy.
func TestRequestBodyDeadlinesHTTP2(t *testing.T) {
	tests := []struct {
		name  string
		write func(w *io.PipeWriter, stop <-chan struct{})
	}{
		{"stalls after 1000 of 100000 bytes", func(w *io.PipeWriter, stop <-chan struct{}) {
			w.Write(make([]byte, 1000))
			<-stop
		}},
		{"trickles below the minimum rate", func(w *io.PipeWriter, stop <-chan struct{}) {
			// A byte every 50ms never stalls for 300ms but is far below
			// 1000 bytes per second.
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
					if _, err := w.Write([]byte{'a'}); err != nil {
						return
					}
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			px, rec, pool := proxyTo(t, HTTPOptions{RequestBodyTimeout: 300 * time.Millisecond, RequestBodyMinRate: 1000})
			url, c := h2Front(t, px)
			pr, pw := io.Pipe()
			stop := make(chan struct{})
			defer close(stop)
			go tt.write(pw, stop)
			req, _ := http.NewRequest("POST", url+"/up", pr)
			req.ContentLength = 100000
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout || resp.ProtoMajor != 2 {
				t.Errorf("%s status %d, want 408 over HTTP/2", resp.Proto, resp.StatusCode)
			}
			waitFor(t, "the upstream to see its request end", func() bool { return len(rec.requests()) == 1 })
			if got := rec.requests()[0]; got.BodyErr == nil {
				t.Errorf("the upstream read a complete body of %d bytes", len(got.Body))
			}
			if st := pool.Upstreams()[0]; !st.Healthy || st.ConsecutiveFailures != 0 {
				t.Errorf("upstream %+v, want healthy with no failure counted", st)
			}
		})
	}
}

// TestRequestBodyMinRateHTTP1 trickles an HTTP/1.1 body a byte at a time,
// never stalling for the whole timeout: the rate floor ends it with 408.
func TestRequestBodyMinRateHTTP1(t *testing.T) {
	px, _, pool := proxyTo(t, HTTPOptions{RequestBodyTimeout: 300 * time.Millisecond, RequestBodyMinRate: 1000})
	url := proxyServer(t, px)
	c, err := net.Dial("tcp", hostOf(url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			time.Sleep(50 * time.Millisecond)
			if _, err := c.Write([]byte{'a'}); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(newReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("status %d, close %v; want 408 and Connection: close", resp.StatusCode, resp.Close)
	}
	c.Close()
	<-done
	if st := pool.Upstreams()[0]; !st.Healthy || st.ConsecutiveFailures != 0 {
		t.Errorf("upstream %+v, want healthy with no failure counted", st)
	}
}

// endlessBodyUpstream starts an upstream whose every response body is
// endless, 64 KiB a write; done receives the error that ended the first
// response to fail.
func endlessBodyUpstream(t *testing.T) (addr string, done <-chan error) {
	ended := make(chan error, 1)
	addr = httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				select {
				case ended <- err:
				default:
				}
				return
			}
		}
	}))
	return addr, ended
}

// bothFronts serve a handler over HTTP/1.1 and over HTTP/2, each with a
// client for it.
var bothFronts = []struct {
	name  string
	front func(t *testing.T, h http.Handler) (url string, c *http.Client)
}{
	{"HTTP/1.1", func(t *testing.T, h http.Handler) (string, *http.Client) { return proxyServer(t, h), testClient() }},
	{"HTTP/2", func(t *testing.T, h http.Handler) (string, *http.Client) { return h2Front(t, h) }},
}

// TestResponseWriteTimeout: a client that asks for an endless response
// and stops reading. The proxy's write to it times out, the proxy drops
// the upstream response, and the upstream sees its connection end.
func TestResponseWriteTimeout(t *testing.T) {
	up, upstreamDone := endlessBodyUpstream(t)
	pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{ResponseWriteTimeout: 200 * time.Millisecond, Logger: quietLogger}))
	c, err := net.Dial("tcp", hostOf(url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096) // keep the kernel from reading for us
	io.WriteString(c, "GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
	// Read nothing more.
	select {
	case err := <-upstreamDone:
		t.Logf("upstream write ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the upstream is still writing to a client that stopped reading")
	}
}

// endlessUpstream answers every request with first and then next(0),
// next(1), ... without end, until the peer goes away (or 20 s pass).
func endlessUpstream(t *testing.T, first string, next func(i int) string) string {
	t.Helper()
	return rawUpstream(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf) // the request
		io.WriteString(c, first)
		for i := 0; ; i++ {
			if _, err := io.WriteString(c, next(i)); err != nil {
				return
			}
		}
	})
}

// rawHeaderUpstream answers every request with a status line and then
// header lines that never end.
func rawHeaderUpstream(t *testing.T) string {
	line := "X-Filler: " + strings.Repeat("f", 1000) + "\r\n"
	return endlessUpstream(t, "HTTP/1.1 200 OK\r\n", func(i int) string { return fmt.Sprintf("X-%d%s", i, line) })
}

// TestMaxResponseHeaderBytes: an upstream whose header never ends gets a
// 502 once it passes the cap, counted against it.
func TestMaxResponseHeaderBytes(t *testing.T) {
	pool := newTestPool(t, PoolOptions{Addresses: []string{rawHeaderUpstream(t)}, Health: HealthOptions{Interval: -1}, MaxFails: 100})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{MaxResponseHeaderBytes: 16 << 10, Logger: quietLogger}))
	status, body := get(t, testClient(), url)
	if want := "502 Bad Gateway: upstream pool \"app\" failed\n"; status != 502 || body != want {
		t.Errorf("got %d %q, want 502 %q", status, body, want)
	}
	if st := pool.Upstreams()[0]; st.ConsecutiveFailures != 1 {
		t.Errorf("upstream %+v, want the failure counted", st)
	}
	if got := NewHTTPProxy(pool, HTTPOptions{}).transport.MaxResponseHeaderBytes; got != DefaultMaxResponseHeaderBytes {
		t.Errorf("default MaxResponseHeaderBytes = %d, want %d", got, DefaultMaxResponseHeaderBytes)
	}
}

// TestResetRequestNotForwarded: a request whose context ended before the
// proxy ran (an HTTP/2 stream the client reset) goes nowhere.
func TestResetRequestNotForwarded(t *testing.T) {
	px, rec, _ := proxyTo(t, HTTPOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ctx, info := WithRequestInfo(ctx)
	req := httptest.NewRequestWithContext(ctx, "GET", "/x", nil)
	w := httptest.NewRecorder()
	px.ServeHTTP(w, req)
	if w.Code != StatusClientClosedRequest || !info.ClientError || info.Upstream != "" {
		t.Errorf("status %d, info %+v; want 499, a client error and no upstream", w.Code, *info)
	}
	if n := len(rec.requests()); n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}
}

// interimUpstream answers every request with the interim response head,
// again and again, and never with a final one.
func interimUpstream(t *testing.T, head string) string {
	return endlessUpstream(t, "", func(int) string { return head })
}

// TestInterimResponsesCapped: an upstream that sends interim (1xx)
// responses without end. net/http hands each to the proxy, which relays
// it (RFC 9110 Section 15.2), and leaves counting them to whoever
// examines them; their heads count toward MaxResponseHeaderBytes
// together, so the client gets at most that much of them and then a 502,
// counted against the upstream, long before the header timeout.
func TestInterimResponsesCapped(t *testing.T) {
	const limit = 4 << 10
	for _, tt := range []struct{ name, head string }{
		{"100 Continue", "HTTP/1.1 100 Continue\r\n\r\n"},
		{"103 Early Hints", "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pool := newTestPool(t, PoolOptions{Addresses: []string{interimUpstream(t, tt.head)}, Health: HealthOptions{Interval: -1}, MaxFails: 100})
			px := NewHTTPProxy(pool, HTTPOptions{MaxResponseHeaderBytes: limit, ResponseHeaderTimeout: 3 * time.Second, Logger: quietLogger})
			url := proxyServer(t, px)
			resps, _, _ := rawExchange(t, hostOf(url), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10*time.Second)
			if len(resps) == 0 || resps[len(resps)-1].StatusCode != http.StatusBadGateway {
				t.Fatalf("%d responses, the last %v; want a 502 last", len(resps), statuses(resps[max(0, len(resps)-1):]))
			}
			if interim := len(resps) - 1; interim*len(tt.head) > limit+len(tt.head) {
				t.Errorf("the client got %d interim responses (%d bytes), want at most %d bytes", interim, interim*len(tt.head), limit)
			}
			if st := pool.Upstreams()[0]; st.ConsecutiveFailures != 1 {
				t.Errorf("upstream %+v, want the failure counted", st)
			}
		})
	}
}

// TestHTTP2BodyFaultKeepsConnection: over HTTP/2 a request whose body
// failed is answered on its own stream, and the connection carries the
// next request: "Connection: close", which ends an HTTP/1.1 connection
// whose next bytes are no request, would make net/http's HTTP/2 server
// send GOAWAY for every stream of the connection.
func TestHTTP2BodyFaultKeepsConnection(t *testing.T) {
	px, _, _ := proxyTo(t, HTTPOptions{RequestBodyTimeout: 300 * time.Millisecond})
	url, c := h2Front(t, px)
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write(make([]byte, 100)) // then nothing: the body stalls
	req, _ := http.NewRequest("POST", url+"/up", pr)
	req.ContentLength = 1000
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || resp.ProtoMajor != 2 {
		t.Fatalf("%s %d, want 408 over HTTP/2", resp.Proto, resp.StatusCode)
	}
	var reused bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }})
	req, _ = http.NewRequestWithContext(ctx, "GET", url+"/next", nil)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !reused {
		t.Errorf("next request: status %d, connection reused %v; want 200 on the same connection", resp.StatusCode, reused)
	}
}

// TestResponseWriteTimeoutHTTP2: TestResponseWriteTimeout over HTTP/2,
// where the write deadline is the stream's: a client that stops reading
// (its stream's flow-control window runs out) still ends the upstream
// response.
func TestResponseWriteTimeoutHTTP2(t *testing.T) {
	up, upstreamDone := endlessBodyUpstream(t)
	pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}})
	url, c := h2Front(t, NewHTTPProxy(pool, HTTPOptions{ResponseWriteTimeout: 200 * time.Millisecond, Logger: quietLogger}))
	resp, err := c.Get(url + "/endless")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Read nothing.
	select {
	case err := <-upstreamDone:
		t.Logf("upstream write ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the upstream is still writing to a client that stopped reading")
	}
}

// TestResponsePauseIsNotAStalledClient: an upstream that pauses between
// two writes of its response for longer than ResponseWriteTimeout (but
// within UpstreamIdleTimeout) while the client reads everything: the
// response arrives whole, over HTTP/1.1 and HTTP/2 alike. The write
// timeout bounds a write the client does not take, not the upstream's
// pauses (HTTP/2's stream deadline, left armed between writes, reset such
// responses).
func TestResponsePauseIsNotAStalledClient(t *testing.T) {
	const timeout = 100 * time.Millisecond
	up := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first,")
		w.(http.Flusher).Flush()
		time.Sleep(5 * timeout)
		io.WriteString(w, "second")
	}))
	for _, tt := range bothFronts {
		t.Run(tt.name, func(t *testing.T) {
			pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}})
			for _, flush := range []time.Duration{0, -1} {
				url, c := tt.front(t, NewHTTPProxy(pool, HTTPOptions{ResponseWriteTimeout: timeout, FlushInterval: flush, Logger: quietLogger}))
				resp, err := c.Get(url + "/paused")
				if err != nil {
					t.Fatalf("flush interval %v: %v", flush, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || string(body) != "first,second" {
					t.Errorf("flush interval %v: %d %q, %v; want 200 \"first,second\"", flush, resp.StatusCode, body, err)
				}
			}
		})
	}
}

// TestUpstreamReadPauseIsNotAStalledBody: an upstream that stops reading
// a request body for longer than RequestBodyTimeout, while the client has
// it all ready to send, gets the whole body once it reads again, over
// HTTP/1.1 and HTTP/2 alike: the client is held back by the upstream (TCP
// and flow control), not stalling, and is not answered 408 (HTTP/2's
// stream read deadline, left armed between reads, ended such bodies).
func TestUpstreamReadPauseIsNotAStalledBody(t *testing.T) {
	// stall leaves room for the test's own client, in this process, to
	// be held off the CPU between its writes on a loaded machine under
	// -race: at 100 ms a full run once saw 408s that were the client's
	// own pauses. The upstream's pause is several stalls long.
	const stall = 300 * time.Millisecond
	const size = 16 << 20 // beyond the socket buffers and flow-control windows
	up := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(4 * stall)
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
		fmt.Fprint(w, n)
	}))
	for _, tt := range bothFronts {
		t.Run(tt.name, func(t *testing.T) {
			pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}})
			url, c := tt.front(t, NewHTTPProxy(pool, HTTPOptions{RequestBodyTimeout: stall, RequestBodyMinRate: -1, Logger: quietLogger}))
			resp, err := c.Post(url+"/upload", "application/octet-stream", bytes.NewReader(make([]byte, size)))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != strconv.Itoa(size) {
				t.Errorf("%d %q, want 200 %q", resp.StatusCode, body, strconv.Itoa(size))
			}
		})
	}
}

// TestClientStatus: which status a failed request body is answered with.
// A request stream that ends short of its Content-Length while the client
// waits (an HTTP/3 FIN; quic-go reports io.ErrUnexpectedEOF) is a
// malformed body, 400, not a client that left (499, which curl received).
func TestClientStatus(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		clientGone bool
		http1      bool
		want       int
	}{
		{"HTTP/1.1 connection ends mid-body", io.ErrUnexpectedEOF, false, true, StatusClientClosedRequest},
		{"HTTP/3 stream ends short, client waiting", io.ErrUnexpectedEOF, false, false, http.StatusBadRequest},
		{"HTTP/3 stream ends short, client gone", io.ErrUnexpectedEOF, true, false, StatusClientClosedRequest},
		{"stalled body", os.ErrDeadlineExceeded, false, false, http.StatusRequestTimeout},
		{"body too large", &http.MaxBytesError{Limit: 1}, false, true, http.StatusRequestEntityTooLarge},
		{"HTTP/2 stream reset by the client", errors.New("client disconnected"), true, false, StatusClientClosedRequest},
		{"HTTP/2 stream past its content-length, reset", errBodyTooLong, true, false, http.StatusBadRequest},
		{"HTTP/3 stream reset by the client", fmt.Errorf("H3_REQUEST_CANCELLED: %w", &quic.StreamError{StreamID: 4, ErrorCode: 0x10c, Remote: true}), false, false, StatusClientClosedRequest},
		{"HTTP/3 stream reset by the client past the body's deadline", stalledRead{&quic.StreamError{StreamID: 4, ErrorCode: 0x10c, Remote: true}}, false, false, StatusClientClosedRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, why := clientStatus(tt.err, tt.clientGone, tt.http1); got != tt.want {
				t.Errorf("clientStatus(%v, gone %v, http1 %v) = %d (%s), want %d", tt.err, tt.clientGone, tt.http1, got, why, tt.want)
			}
		})
	}
}

// TestUnsendableRequestIsNotBlamed: a request the transport refuses before
// it takes an upstream connection (its own checks of the method and the
// header fields) never reached the upstream, so it is answered 400 as the
// request's fault and counts nothing against the upstream, however often
// it comes. Such requests get past CheckRequest only when a handler built
// or changed them (the servers refuse these fields); before, each was
// answered 502 and counted, and two ejected the upstream.
func TestUnsendableRequestIsNotBlamed(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(r *http.Request)
	}{
		{"NUL in a field value", func(r *http.Request) { r.Header.Set("X-A", "a\x00b") }},
		{"LF in a field value", func(r *http.Request) { r.Header["X-A"] = []string{"a\r\nX-B: b"} }},
		{"DEL in a field value", func(r *http.Request) { r.Header.Set("X-Trace", "a\x7fb") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			px, _, pool := proxyTo(t, HTTPOptions{})
			for i := range 3 {
				r := httptest.NewRequest(http.MethodGet, "http://x/up", nil)
				tt.edit(r)
				ctx, info := WithRequestInfo(r.Context())
				w := httptest.NewRecorder()
				px.ServeHTTP(w, r.WithContext(ctx))
				if w.Code != http.StatusBadRequest || !info.ClientError {
					t.Fatalf("request %d: answered %d, ClientError %v (%v); want 400, the client's", i, w.Code, info.ClientError, info.Err)
				}
				if st := pool.Upstreams()[0]; !st.Healthy || st.ConsecutiveFailures != 0 {
					t.Fatalf("after request %d: upstream %+v, want healthy with no failure counted", i, st)
				}
			}
		})
	}
}

// TestSlowUploadIsNotAnUpstreamStall: a client that sends its body
// steadily, within RequestBodyTimeout and RequestBodyMinRate, for longer
// than UpstreamIdleTimeout gets its answer, and the upstream (which reads
// the whole body before it answers, as most do) is not blamed: it had
// nothing to answer while the body came. Before, the transport's read of
// the response timed out while the body was still being written, and
// each such upload was answered 502 and counted, two ejecting the
// upstream. An upstream that then stalls its answer is still counted.
func TestSlowUploadIsNotAnUpstreamStall(t *testing.T) {
	const idle = 300 * time.Millisecond
	up := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if r.URL.Path == "/stall" {
			time.Sleep(3 * idle)
		}
		fmt.Fprintf(w, "%d %v", len(b), err)
	}))
	pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}, MaxFails: 3, EjectFor: time.Hour})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{UpstreamIdleTimeout: idle, RequestBodyTimeout: 5 * time.Second, RequestBodyMinRate: 1, Logger: quietLogger}))
	upload := func(path string) (int, string) {
		pr, pw := io.Pipe()
		go func() {
			// 1,000 bytes over 10 x idle/3: three idle timeouts' worth.
			for range 10 {
				pw.Write([]byte(strings.Repeat("a", 100)))
				time.Sleep(idle / 3)
			}
			pw.Close()
		}()
		req, _ := http.NewRequest(http.MethodPost, url+path, pr)
		req.ContentLength = 1000
		resp, err := testClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for i := range 2 {
		if code, body := upload("/up"); code != 200 || body != "1000 <nil>" {
			t.Fatalf("upload %d: %d %q, want 200 %q", i, code, body, "1000 <nil>")
		}
		if st := pool.Upstreams()[0]; !st.Healthy || st.ConsecutiveFailures != 0 {
			t.Fatalf("after upload %d: upstream %+v, want healthy with no failure counted", i, st)
		}
	}
	if code, _ := upload("/stall"); code != http.StatusBadGateway && code != http.StatusGatewayTimeout {
		t.Errorf("an upstream stalling its answer: %d, want 502 or 504", code)
	}
	if st := pool.Upstreams()[0]; st.ConsecutiveFailures != 1 {
		t.Errorf("after an upstream's stall: upstream %+v, want one failure counted", st)
	}
}

// TestEarlyRefusalIsNotAnUpstreamFailure: an upstream that answers a large
// body early (413 after the headers) and closes at once resets the
// connection under the body still coming, and pqedge often loses the
// answer with the reset (502). Sent 40 times to a pool that ejects after
// two consecutive failures, the upstream stays healthy: it refused a
// request it never took whole, which any client can repeat. Before, the
// lost answers ejected it within a few dozen requests. An upstream that
// reads the whole request and then closes without an answer is still
// counted.
func TestEarlyRefusalIsNotAnUpstreamFailure(t *testing.T) {
	// Each connection is closed with the body unread: a reset.
	up := rawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		length := 0
		for {
			h, err := br.ReadString('\n')
			if err != nil || h == "\r\n" {
				break
			}
			if v, ok := strings.CutPrefix(h, "Content-Length: "); ok {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if strings.Contains(line, "/late") {
			io.CopyN(io.Discard, br, int64(length))
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
	})
	pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}, MaxFails: 2, EjectFor: time.Hour})
	url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger}))
	post := func(path string, size int) int {
		req, _ := http.NewRequest(http.MethodPost, url+path, bytes.NewReader(make([]byte, size)))
		resp, err := testClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	codes := map[int]int{}
	for range 40 {
		codes[post("/early", 8<<20)]++
		if st := pool.Upstreams()[0]; !st.Healthy {
			t.Fatalf("after statuses %v: upstream %+v, want healthy", codes, st)
		}
	}
	t.Logf("statuses %v", codes)
	if codes[http.StatusRequestEntityTooLarge]+codes[http.StatusBadGateway] != 40 {
		t.Errorf("statuses %v, want 413s and 502s only", codes)
	}
	for i := range 2 {
		if code := post("/late", 1000); code != http.StatusBadGateway {
			t.Errorf("a request read whole, then closed on: %d, want 502", code)
		}
		if st := pool.Upstreams()[0]; st.ConsecutiveFailures != i+1 && !st.Ejected {
			t.Errorf("after %d closed on: upstream %+v, want the failure counted", i+1, st)
		}
	}
	if st := pool.Upstreams()[0]; !st.Ejected {
		t.Errorf("after two requests read whole and closed on: upstream %+v, want ejected", st)
	}
}

// TestUpstreamCrashMidBodyIsCounted: an upstream that takes part of a
// request's body and then closes the connection without a byte of answer
// (a worker crashing on the upload, killed for its memory) is failing, not
// refusing the request: it is counted toward ejection, as one closing on a
// request it read whole is; so is one that sent an interim response first
// (100 Continue, which curl asks for before a large upload). An upstream
// that answers before it closes (TestEarlyRefusalIsNotAnUpstreamFailure)
// refused it instead. Before, every such crash under a body still being
// written went uncounted.
func TestUpstreamCrashMidBodyIsCounted(t *testing.T) {
	for _, tt := range []struct {
		name    string
		interim string // written before the crash
	}{
		{"no answer", ""},
		{"after 100 Continue", "HTTP/1.1 100 Continue\r\n\r\n"},
		{"after 103 Early Hints", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Each connection is closed with the rest of the body
			// unread: a reset.
			up := rawUpstream(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					h, err := br.ReadString('\n')
					if err != nil || h == "\r\n" {
						break
					}
				}
				io.WriteString(c, tt.interim)
				io.CopyN(io.Discard, br, 64<<10)
				time.Sleep(50 * time.Millisecond) // works on it a while, then crashes
			})
			pool := newTestPool(t, PoolOptions{Addresses: []string{up}, Health: HealthOptions{Interval: -1}, MaxFails: 2, EjectFor: time.Hour})
			url := proxyServer(t, NewHTTPProxy(pool, HTTPOptions{Logger: quietLogger}))
			for i := range 2 {
				req, _ := http.NewRequest(http.MethodPost, url+"/upload", bytes.NewReader(make([]byte, 8<<20)))
				resp, err := testClient().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("upload %d: %d, want 502", i+1, resp.StatusCode)
				}
				if st := pool.Upstreams()[0]; st.ConsecutiveFailures != i+1 && !st.Ejected {
					t.Errorf("after %d crashes mid-body: upstream %+v, want the failure counted", i+1, st)
				}
			}
			if st := pool.Upstreams()[0]; !st.Ejected {
				t.Errorf("after two crashes mid-body: upstream %+v, want ejected", st)
			}
		})
	}
}
