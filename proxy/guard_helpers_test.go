package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// seenRequest is what a recording upstream received.
type seenRequest struct {
	Method, URI string
	Header      http.Header
	Body        string
	BodyErr     error
}

// recorder is an HTTP upstream that answers 200 "ok" and records every
// request it receives, body included.
type recorder struct {
	mu   sync.Mutex
	seen []seenRequest
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.seen = append(rec.seen, seenRequest{Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone(), Body: string(body), BodyErr: err})
	rec.mu.Unlock()
	if err != nil {
		return
	}
	io.WriteString(w, "ok")
}

func (rec *recorder) requests() []seenRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seenRequest(nil), rec.seen...)
}

// uris lists the request targets the upstream saw.
func (rec *recorder) uris() []string {
	var out []string
	for _, s := range rec.requests() {
		out = append(out, s.URI)
	}
	return out
}

// proxyTo builds a pool of one recording upstream and its proxy; the
// proxy's options get the quiet logger.
func proxyTo(t *testing.T, opts HTTPOptions) (*HTTPProxy, *recorder, *Pool) {
	t.Helper()
	rec := &recorder{}
	pool := newTestPool(t, PoolOptions{Addresses: []string{httpUpstream(t, rec)}, Health: HealthOptions{Interval: -1}, MaxFails: 2, EjectFor: time.Hour})
	opts.Logger = quietLogger
	return NewHTTPProxy(pool, opts), rec, pool
}

// h2Front serves h over TLS with HTTP/2 and returns its URL and a client
// that speaks HTTP/2 to it.
func h2Front(t testing.TB, h http.Handler) (string, *http.Client) {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.EnableHTTP2 = true
	s.StartTLS()
	t.Cleanup(s.Close)
	c := s.Client()
	c.Timeout = 15 * time.Second
	return s.URL, c
}

// rawExchange writes raw to a new connection to addr ("host:port") and
// reads responses until the server closes the connection or a read stalls
// for stallAfter. closed reports whether the server closed it.
func rawExchange(t *testing.T, addr, raw string, stallAfter time.Duration) (resps []*http.Response, bodies []string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(stallAfter))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
				return resps, bodies, false
			}
			return resps, bodies, true // EOF or reset: the server closed
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		resps = append(resps, resp)
		bodies = append(bodies, string(b))
		if err != nil {
			return resps, bodies, true
		}
	}
}

// hostOf returns the host:port of an http:// URL.
func hostOf(url string) string { return strings.TrimPrefix(url, "http://") }

// statuses lists the status codes of resps.
func statuses(resps []*http.Response) []int {
	var out []int
	for _, r := range resps {
		out = append(out, r.StatusCode)
	}
	return out
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
