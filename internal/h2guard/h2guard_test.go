package h2guard

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// h2Server is a real net/http server speaking HTTP/2 over TLS, with each
// connection under a guard, the way pqedge's accept path hands them over.
type h2Server struct {
	addr     string
	handled  atomic.Int64
	mu       sync.Mutex
	reasons  []string
	sawTLS   atomic.Bool
	sawProto atomic.Value
}

func (s *h2Server) abuses() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reasons...)
}

func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type guardedListener struct {
	net.Listener
	cfg  *tls.Config
	opts Options
}

func (l guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(c, l.cfg)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			continue
		}
		tc.SetDeadline(time.Time{})
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			return Wrap(tc, l.opts), nil
		}
		return tc, nil
	}
}

func startH2Server(t testing.TB, opts Options, handler http.HandlerFunc) *h2Server {
	t.Helper()
	s := &h2Server{}
	opts.OnAbuse = func(reason string) {
		s.mu.Lock()
		s.reasons = append(s.reasons, reason)
		s.mu.Unlock()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2", "http/1.1"}}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.handled.Add(1)
			s.sawTLS.Store(r.TLS != nil)
			s.sawProto.Store(r.Proto)
			if handler != nil {
				handler(w, r)
				return
			}
			io.WriteString(w, "ok")
		}),
		TLSConfig: &tls.Config{NextProtos: []string{"h2", "http/1.1"}},
		ErrorLog:  nil,
	}
	go srv.Serve(guardedListener{Listener: ln, cfg: cfg, opts: opts})
	t.Cleanup(func() { srv.Close() })
	s.addr = ln.Addr().String()
	return s
}

// rawH2 is an HTTP/2 client that writes frames by hand and reads what
// the server sends only for a GOAWAY, reporting when the server closes.
type rawH2 struct {
	c      *tls.Conn
	closed chan struct{}
	goAway atomic.Int64 // the error code of the server's GOAWAY; -1: none
}

// readAll reads the server's frames until the connection ends, keeping
// the GOAWAY's error code.
func (r *rawH2) readAll() {
	defer close(r.closed)
	fr := http2.NewFramer(nil, r.c)
	fr.SetMaxReadFrameSize(1 << 24)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if _, ok := err.(http2.StreamError); ok {
				continue
			}
			io.Copy(io.Discard, r.c)
			return
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			r.goAway.Store(int64(g.ErrCode))
		}
	}
}

func dialRaw(t testing.TB, addr string) *rawH2 {
	t.Helper()
	// The client's preface and SETTINGS, and an ACK of the server's.
	return dialRawWith(t, addr, concat(prefaceAndSettings, frame(0x4, 0x1, 0, nil)))
}

// dialRawWith is dialRaw sending first instead of the preface, SETTINGS
// and ACK.
func dialRawWith(t testing.TB, addr string, first []byte) *rawH2 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q", p)
	}
	r := &rawH2{c: c, closed: make(chan struct{})}
	r.goAway.Store(-1)
	go r.readAll()
	t.Cleanup(func() { c.Close() })
	r.write(first)
	return r
}

func (r *rawH2) write(b []byte) error {
	r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := r.c.Write(b)
	return err
}

// waitClosed waits for the server to close the connection.
func (r *rawH2) waitClosed(t testing.TB, within time.Duration) {
	t.Helper()
	select {
	case <-r.closed:
	case <-time.After(within):
		t.Fatal("the server kept the abusive connection open")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAbusiveClientsAreClosed(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		attack func(r *rawH2)
		reason string
	}{
		{
			name: "rapid reset", opts: Options{MaxGlitches: 100}, reason: ReasonRapidReset,
			attack: func(r *rawH2) {
				for id := uint32(1); id < 20000; id += 2 {
					if r.write(concat(headers(id, flagEndHeaders|flagEndStream), rst(id))) != nil {
						return
					}
				}
			},
		},
		{
			name: "empty CONTINUATION flood", opts: Options{MaxGlitches: 100}, reason: ReasonEmptyFrames,
			attack: func(r *rawH2) {
				if r.write(headers(1, 0)) != nil {
					return
				}
				empty := frame(frameContinuation, 0, 1, nil)
				for range 20000 {
					if r.write(empty) != nil {
						return
					}
				}
			},
		},
		{
			name: "empty DATA flood", opts: Options{MaxGlitches: 100}, reason: ReasonEmptyFrames,
			attack: func(r *rawH2) {
				if r.write(headers(1, flagEndHeaders)) != nil { // a request with a body to come
					return
				}
				empty := frame(frameData, 0, 1, nil)
				for range 20000 {
					if r.write(empty) != nil {
						return
					}
				}
			},
		},
		{
			name: "padding-only DATA flood", opts: Options{MaxGlitches: 100}, reason: ReasonEmptyFrames,
			attack: func(r *rawH2) {
				if r.write(headers(1, flagEndHeaders)) != nil {
					return
				}
				padded := frame(frameData, flagPadded, 1, []byte{0})
				for range 20000 {
					if r.write(padded) != nil {
						return
					}
				}
			},
		},
		{name: "PING flood", reason: ReasonControlFrames, attack: flood(func(uint32) []byte { return ping() })},
		{name: "SETTINGS flood", reason: ReasonControlFrames, attack: flood(func(uint32) []byte { return settings() })},
		{name: "PRIORITY flood", reason: ReasonControlFrames, attack: flood(func(id uint32) []byte { return priority(id, 0) })},
		{name: "PRIORITY_UPDATE flood", reason: ReasonControlFrames, attack: flood(func(id uint32) []byte { return priorityUpdate(id) })},
		{name: "WINDOW_UPDATE flood", reason: ReasonControlFrames, attack: flood(func(uint32) []byte { return windowUpdate(0, 1) })},
		{name: "unknown frame flood", reason: ReasonControlFrames, attack: flood(func(uint32) []byte { return frame(0xde, 0, 0, []byte("grease")) })},
		// MadeYouReset (CVE-2025-8671): each input below makes net/http
		// reset the stream with an error code, and the client sends no
		// RST_STREAM at all.
		{name: "MadeYouReset: WINDOW_UPDATE of 0", opts: Options{MaxGlitches: 100}, reason: ReasonProvokedReset,
			attack: flood(func(id uint32) []byte { return concat(headers(id, flagEndHeaders), windowUpdate(id, 0)) })},
		{name: "MadeYouReset: DATA after END_STREAM", opts: Options{MaxGlitches: 100}, reason: ReasonProvokedReset,
			attack: flood(func(id uint32) []byte {
				return concat(headers(id, 5), frame(frameData, flagEndStream, id, []byte("x")))
			})},
		{name: "MadeYouReset: DATA beyond content-length", opts: Options{MaxGlitches: 100}, reason: ReasonProvokedReset,
			attack: flood(func(id uint32) []byte {
				return concat(headerBlock(id, flagEndHeaders, contentLength1), frame(frameData, flagEndStream, id, []byte("xyz")))
			})},
		{name: "MadeYouReset: invalid pseudo-header", opts: Options{MaxGlitches: 100}, reason: ReasonProvokedReset,
			attack: flood(func(id uint32) []byte { return headerBlock(id, 5, literal(":bogus", "x")) })},
		{name: "MadeYouReset: connection-specific field", opts: Options{MaxGlitches: 100}, reason: ReasonProvokedReset,
			attack: flood(func(id uint32) []byte { return headerBlock(id, 5, literal("connection", "keep-alive")) })},
		{name: "MadeYouReset: stream depending on itself", opts: Options{MaxGlitches: 100}, reason: ReasonProvokedReset,
			attack: flood(func(id uint32) []byte { return concat(headers(id, flagEndHeaders), priority(id, id)) })},
		{
			name: "header block trickled a byte at a time", opts: Options{HeaderTimeout: 300 * time.Millisecond}, reason: ReasonHeaderTimeout,
			attack: func(r *rawH2) {
				h := headers(1, flagEndHeaders|flagEndStream)
				r.write(h[:9]) // the frame header, announcing the block
				for _, b := range h[9:] {
					time.Sleep(100 * time.Millisecond)
					if r.write([]byte{b}) != nil {
						return
					}
				}
			},
		},
		{
			name: "CONTINUATION never ending the block", opts: Options{HeaderTimeout: 300 * time.Millisecond}, reason: ReasonHeaderTimeout,
			attack: func(r *rawH2) {
				r.write(headers(1, 0))
				for range 50 {
					time.Sleep(50 * time.Millisecond)
					if r.write(frame(frameContinuation, 0, 1, []byte{0x40, 0x01, 'a', 0x01, 'b'})) != nil {
						return
					}
				}
			},
		},
		{
			name: "frame header stalled midway", opts: Options{HeaderTimeout: 300 * time.Millisecond}, reason: ReasonHeaderTimeout,
			attack: func(r *rawH2) { r.write(headers(1, flagEndHeaders)[:5]) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The handler reads the whole body, as a proxy does, so that a
			// body flood meets an open stream rather than a reset one.
			s := startH2Server(t, tt.opts, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				io.WriteString(w, "ok")
			})
			r := dialRaw(t, s.addr)
			go tt.attack(r)
			r.waitClosed(t, 15*time.Second)
			waitFor(t, "the abuse to be reported", func() bool { return len(s.abuses()) == 1 })
			if got := s.abuses(); got[0] != tt.reason {
				t.Errorf("closed for %q, want %q", got[0], tt.reason)
			}
			// RFC 9113 Section 5.4.1: a GOAWAY before the close.
			if got := r.goAway.Load(); got != int64(http2.ErrCodeEnhanceYourCalm) {
				t.Errorf("GOAWAY code %d before the close, want ENHANCE_YOUR_CALM (%d; -1: none)", got, http2.ErrCodeEnhanceYourCalm)
			}
		})
	}
}

// flood sends f's frames, each with a new client stream ID, until the
// server closes the connection.
func flood(f func(id uint32) []byte) func(r *rawH2) {
	return func(r *rawH2) {
		for id := uint32(1); id < 40000; id += 2 {
			if r.write(f(id)) != nil {
				return
			}
		}
	}
}

// literal is a header field in HPACK, a literal without indexing with a
// new name (RFC 7541 Section 6.2.2).
func literal(name, value string) []byte {
	return concat([]byte{0x00, byte(len(name))}, []byte(name), []byte{byte(len(value))}, []byte(value))
}

// contentLength1 is "content-length: 1", its name from the static table
// (index 28, RFC 7541 Appendix A).
var contentLength1 = []byte{0x0f, 28 - 15, 0x01, '1'}

// headerBlock is a GET request's HEADERS frame with extra fields.
func headerBlock(stream uint32, flags byte, extra []byte) []byte {
	return frame(frameHeaders, flags, stream, concat(getBlock, extra))
}

// TestWellBehavedClient: net/http's own client over HTTP/2, with requests
// it cancels mid-flight (each a RST_STREAM), stays well within the budget
// and is served as HTTPS over HTTP/2.
func TestWellBehavedClient(t *testing.T) {
	release := make(chan struct{})
	s := startH2Server(t, Options{MaxGlitches: 50, HeaderTimeout: time.Second}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	})
	defer close(release)
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true,
	}}
	for i := range 40 {
		path := "/"
		ctx, cancel := context.WithCancel(context.Background())
		if i%2 == 1 {
			path = "/slow"
			time.AfterFunc(20*time.Millisecond, cancel) // RST_STREAM mid-request
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+s.addr+path, nil)
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("spoke %s", resp.Proto)
			}
		} else if i%2 == 0 {
			t.Fatalf("request %d: %v", i, err)
		}
		cancel()
	}
	if a := s.abuses(); len(a) != 0 {
		t.Errorf("a well-behaved client was closed for %q", a)
	}
	if !s.sawTLS.Load() || s.sawProto.Load() != "HTTP/2.0" {
		t.Errorf("handler saw TLS %v proto %v; want TLS and HTTP/2.0", s.sawTLS.Load(), s.sawProto.Load())
	}
}

// TestLargeFramesClient: Go's own HTTP/2 client downloads large bodies,
// each written in one Write, at the default budgets. It takes DATA frames
// of up to 1 MiB and returns credit for every 4 KiB its reader takes, so
// it sends hundreds of WINDOW_UPDATEs per DATA frame; it is not closed.
func TestLargeFramesClient(t *testing.T) {
	body := make([]byte, 8<<20)
	s := startH2Server(t, Options{}, func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	})
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true,
	}}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get("https://" + s.addr + "/")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			// 4 KiB at a time, as a bufio.Reader or a JSON decoder reads.
			n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{resp.Body}, make([]byte, 4<<10))
			if err == nil && n != int64(len(body)) {
				err = fmt.Errorf("read %d bytes of %d", n, len(body))
			}
			if err == nil && resp.ProtoMajor != 2 {
				err = fmt.Errorf("spoke %s", resp.Proto)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if a := s.abuses(); len(a) != 0 {
		t.Errorf("Go's HTTP/2 client downloading in 1 MiB frames was closed for %q", a)
	}
}

// TestCreditOutlivesWindow: the allowance a response earned is not lost
// when the window ends before the client has returned the credit for it.
// Go's client takes a 4 MiB body (its stream window) at once, its reader
// pauses past the window, then reads it 4 KiB at a time: 2,048
// WINDOW_UPDATEs in a window in which the server sends nothing. The
// window is short here for the test's sake; at the default 10 s the same
// happens to a reader that pauses 10 s, or reads the last 4 MiB of a
// download at 1 MiB/s across a window's end.
func TestCreditOutlivesWindow(t *testing.T) {
	body := make([]byte, 4<<20)
	const window = 100 * time.Millisecond
	s := startH2Server(t, Options{GlitchWindow: window}, func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	})
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 60 * time.Second, Transport: tr}
	for i := range 2 {
		resp, err := c.Get("https://" + s.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * window) // the body arrives meanwhile; its window ends
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{resp.Body}, make([]byte, 4<<10))
		resp.Body.Close()
		if err != nil || n != int64(len(body)) || resp.ProtoMajor != 2 {
			t.Fatalf("download %d: read %d of %d bytes over %s: %v (closed for %q)", i, n, len(body), resp.Proto, err, s.abuses())
		}
	}
	if a := s.abuses(); len(a) != 0 {
		t.Errorf("a client returning credit after the window was closed for %q", a)
	}
}
