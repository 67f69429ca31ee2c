package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqedge/pqedge/proxy"
	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestHTTP1FramingNeverSmuggles: HTTP/1.1 requests whose framing is
// malformed or ambiguous (RFC 9112 sections 2.2, 5, 6.1, 6.3 and 7.1),
// each followed on the same connection by a second request, are answered
// (400 for the headers; a body found malformed while streaming may have
// been answered first) and the connection is closed: the second request
// never reaches the upstream (issue #12, kind 1); so is a well-framed
// request pqedge refuses itself (400, 405). Found accepted and not
// listed, because their framing is not ambiguous: identical repeated
// Content-Length values (RFC 9110 section 8.6), leading zeros in one,
// "Chunked" in any case, whitespace after a chunk size.
func TestHTTP1FramingNeverSmuggles(t *testing.T) {
	up := newRecordingUpstream(t)
	ts := startServer(t, hardenedConfig(up.addr))
	addr := ts.addr("https")
	const post = "POST /a HTTP/1.1\r\nHost: localhost\r\n"
	const chunked = post + "Transfer-Encoding: chunked\r\n\r\n"
	tests := []struct {
		name  string
		req   string
		want  int  // the first answer's status; 0: any
		whole bool // the upstream may see the request's headers (its body is found malformed on the way)
	}{
		{"obs-fold in a field", "GET /a HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n c\r\n\r\n", 400, false},
		{"obs-fold in Transfer-Encoding", post + "Transfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, false},
		{"Transfer-Encoding: chunked, chunked", post + "Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, false},
		{"Transfer-Encoding twice", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, false},
		{"Transfer-Encoding: gzip, chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, false},
		{"Transfer-Encoding: identity", post + "Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", 400, false},
		{"Transfer-Encoding: xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, false},
		{"space before the colon", post + "Transfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, false},
		{"Transfer-Encoding in HTTP/1.0", "POST /a HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, false},
		{"Content-Length: +5", post + "Content-Length: +5\r\n\r\nhello", 400, false},
		{"Content-Length: 5, 5", post + "Content-Length: 5, 5\r\n\r\nhello", 400, false},
		{"Content-Length: 5 and 6", post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, false},
		{"Content-Length: 0x5", post + "Content-Length: 0x5\r\n\r\nhello", 400, false},
		{"Content-Length: -1", post + "Content-Length: -1\r\n\r\nhello", 400, false},
		{"Content-Length: 5 5", post + "Content-Length: 5 5\r\n\r\nhello", 400, false},
		{"Content-Length beyond int64", post + "Content-Length: 99999999999999999999999\r\n\r\nhello", 400, false},
		{"bare LF line endings", "GET /a HTTP/1.1\nHost: localhost\n\n", 400, false},
		{"a bare LF among CRLFs", "GET /a HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n", 400, false},
		{"a bare CR", "GET /a HTTP/1.1\r\nHost: localhost\rX-A: b\r\n\r\n", 400, false},
		{"NUL in a field value", "GET /a HTTP/1.1\r\nHost: localhost\r\nX-A: b\x00c\r\n\r\n", 400, false},
		{"CR in a field value", "GET /a HTTP/1.1\r\nHost: localhost\r\nX-A: b\rc\r\n\r\n", 400, false},
		{"a field line without a colon", "GET /a HTTP/1.1\r\nHost: localhost\r\nX-A b\r\n\r\n", 400, false},
		{"chunk extension with a quoted CRLF", chunked + "5;a=\"x\r\n0\r\n\r\nGET /inner HTTP/1.1\r\nHost: localhost\r\n\r\n\"\r\nhello\r\n0\r\n\r\n", 0, true},
		{"NUL in a chunk extension", chunked + "5;a\x00\r\nhello\r\n0\r\n\r\n", 400, true},
		{"vertical tab in the last chunk's extension", chunked + "5\r\nhello\r\n0;\x0b\r\n\r\n", 400, true},
		{"chunk size with 0x", chunked + "0x5\r\nhello\r\n0\r\n\r\n", 0, true},
		{"chunk size of 23 digits", chunked + "00000000000000000000005\r\nhello\r\n0\r\n\r\n", 0, true},
		{"chunk size beyond 64 bits", chunked + "fffffffffffffffff5\r\nhello\r\n0\r\n\r\n", 0, true},
		{"chunk lines ending in bare LF", chunked + "5\nhello\n0\n\n", 0, true},
		{"chunk data longer than its size", chunked + "5\r\nhelloXX0\r\n\r\n", 0, true},
		{"Content-Length in the trailer", chunked + "5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n", 0, true},
		// Refused by pqedge's own checks, well framed: the connection
		// still ends with the answer, as the client sent something
		// malformed (nginx closes after its 400s too).
		{"a path above the root", "GET /../a HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, false},
		{"an encoded slash the route refuses", "GET /a%2Fb HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, false},
		{"authority-form on GET", "GET localhost:443 HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, false},
		{"asterisk-form on GET", "GET * HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, false},
		{"TRACE", "TRACE /a HTTP/1.1\r\nHost: localhost\r\n\r\n", 405, false},
		{"TRACE with a body", "TRACE /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello", 405, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(up.requests())
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The deadline only keeps a broken server from hanging the
			// test: the server closes on its own.
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tt.req+"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			if tt.want != 0 && resp.StatusCode != tt.want {
				t.Errorf("answered %d, want %d", resp.StatusCode, tt.want)
			}
			if resp, err := http.ReadResponse(br, nil); err == nil {
				t.Errorf("a second answer, %d: the trailing bytes were read as a request", resp.StatusCode)
			}
			for _, r := range up.requests()[before:] {
				if !tt.whole || r.path != "/a" {
					t.Errorf("the upstream received %s", r.path)
				}
			}
		})
	}
}

// TestHTTP1TargetTooLong: an HTTP/1.1 request target longer than
// limits.request_header is answered 414 URI Too Long (RFC 9112 section 3),
// as nginx does, not net/http's 431 (or 400), and the connection closed;
// nothing reaches the upstream, and pqedge_http1_refused_total counts it as
// "request target too long". A target of exactly the limit is proxied; a
// head over the limit by its fields keeps its 431.
func TestHTTP1TargetTooLong(t *testing.T) {
	up := newRecordingUpstream(t)
	ts := startServer(t, hardenedConfig(up.addr))
	addr := ts.addr("https")
	const limit = 64 << 10 // limits.request_header's default
	target := func(n int) string { return "/" + strings.Repeat("a", n-1) }
	const body414 = "414 URI Too Long: request target longer than 65536 bytes\n"
	tests := []struct {
		name     string
		req      string
		want     int
		body     string // "": not checked
		upstream string // the path the upstream receives; "": nothing
		counted  float64
	}{
		{name: "target of the limit", req: "GET " + target(limit) + " HTTP/1.1\r\nHost: localhost\r\n\r\n", want: 200, upstream: target(limit)},
		{name: "target one byte over", req: "GET " + target(limit+1) + " HTTP/1.1\r\nHost: localhost\r\n\r\n", want: 414, body: body414, counted: 1},
		{name: "target over net/http's own head limit", req: "GET " + target(limit+8<<10) + " HTTP/1.1\r\nHost: localhost\r\n\r\n", want: 414, body: body414, counted: 1},
		{name: "target of 256 KiB, most of it unread", req: "GET " + target(256<<10) + " HTTP/1.1\r\nHost: localhost\r\n\r\n", want: 414, body: body414, counted: 1},
		{name: "fields over the limit", req: "GET /a HTTP/1.1\r\nHost: localhost\r\nX-Long: " + strings.Repeat("b", limit+4<<10) + "\r\n\r\n", want: 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, counted := len(up.requests()), ts.metricSum("pqedge_http1_refused_total", `reason="request target too long"`)
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			// Written while the answer is read: the client may still be
			// sending when pqedge answers.
			go io.WriteString(c, tt.req+"GET /canary HTTP/1.1\r\nHost: localhost\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("answer's body: %v", err)
			}
			if resp.StatusCode != tt.want {
				t.Errorf("answered %d %q, want %d", resp.StatusCode, b, tt.want)
			}
			if tt.body != "" && (string(b) != tt.body || !resp.Close) {
				t.Errorf("body %q, Connection: close %v; want %q and close", b, resp.Close, tt.body)
			}
			if tt.want == 200 {
				// The canary, served before the upstream is looked at.
				if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
					t.Fatalf("the request after it: %v, %v", resp, err)
				}
			} else {
				if rest, err := io.ReadAll(br); len(rest) > 0 || err != nil && !strings.Contains(err.Error(), "reset") {
					t.Errorf("after the %d: %q, %v; want the connection closed", tt.want, rest, err)
				}
			}
			var paths []string
			for _, r := range up.requests()[before:] {
				paths = append(paths, r.path)
			}
			if want := tt.upstream; want == "" && len(paths) > 0 || want != "" && (len(paths) == 0 || paths[0] != want) {
				t.Errorf("the upstream received %d requests (first %.20q), want %q", len(paths), paths, want)
			}
			if n := ts.metricSum("pqedge_http1_refused_total", `reason="request target too long"`) - counted; n != tt.counted {
				t.Errorf("pqedge_http1_refused_total{reason=\"request target too long\"} rose by %v, want %v", n, tt.counted)
			}
		})
	}
}

// bodyUpstream answers 200 and keeps the bodies of the requests it read
// to their end; entered and left count the requests its handler began and
// finished.
type bodyUpstream struct {
	mu            sync.Mutex
	whole         []string // "PATH BODY" of every body read without error
	entered, left int
	addr          string
}

func newBodyUpstream(t *testing.T) *bodyUpstream {
	u := &bodyUpstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.entered++
		u.mu.Unlock()
		b, err := io.ReadAll(r.Body)
		u.mu.Lock()
		if err == nil {
			u.whole = append(u.whole, r.URL.Path+" "+string(b))
		}
		u.left++
		u.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	u.addr = strings.TrimPrefix(srv.URL, "http://")
	return u
}

func (u *bodyUpstream) counts() (entered, left int, whole []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.entered, u.left, append([]string(nil), u.whole...)
}

// TestStreamBodyLongerThanContentLength: an HTTP/2 or HTTP/3 request
// whose DATA goes on past its content-length is malformed (RFC 9113
// section 8.1.1, RFC 9114 section 4.1.2). The upstream never receives it
// as a whole request (it received the first content-length bytes, so
// answered it, and the client got that 200 over HTTP/2), the client gets
// no 200, and the upstream's health is untouched (issue #12, kinds 1
// and 3). A body of up to proxy.PreReadBody never reaches the upstream
// at all: "later" sends the excess once the upstream has the request, or
// after half a second. A longer body is streamed: its excess goes once
// the upstream has the request's headers, so the bytes that complete the
// length are on their way first.
func TestStreamBodyLongerThanContentLength(t *testing.T) {
	streamedBody := strings.Repeat("x", proxy.PreReadBody+1)
	streamedLen := strconv.Itoa(len(streamedBody))
	up := newBodyUpstream(t)
	ts, _ := startH3(t, strings.Replace(hardenedConfig(up.addr), baseConfig, h3Config, 1))
	tests := []struct {
		name   string
		length string
		first  string // the first DATA frame
		later  string // DATA sent once the upstream has the request; "" none
		h3     bool
	}{
		{"HTTP/2, one DATA frame past the length", "3", "hello", "", false},
		{"HTTP/2, the length then another DATA frame", "3", "hel", "lo", false},
		{"HTTP/2, the whole length then one byte more", "5", "hello", "x", false},
		{"HTTP/3, one DATA frame past the length", "3", "hello", "", true},
		{"HTTP/3, the length then another DATA frame", "3", "hel", "lo", true},
		{"HTTP/3, the length twice in two frames", "5", "hello", "world", true},
		{"HTTP/2, content-length 0, then DATA", "0", "", "x", false},
		{"HTTP/3, content-length 0, then DATA", "0", "", "x", true},
		{"HTTP/2, a streamed length then one byte more", streamedLen, streamedBody, "x", false},
		{"HTTP/3, a streamed length then one byte more", streamedLen, streamedBody, "x", true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fmt.Sprintf("/long%d", i)
			entered, _, _ := up.counts()
			fields := [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}, {"content-length", tt.length}}
			var send func(data string, end bool)
			var answer func() string
			if tt.h3 {
				send, answer = h3Request(t, ts, fields)
			} else {
				send, answer = h2Request(t, ts, fields)
			}
			if tt.first != "" {
				send(tt.first, tt.later == "")
			}
			switch {
			case tt.later != "" && tt.first != streamedBody:
				for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
					if n, _, _ := up.counts(); n > entered {
						break
					}
				}
				send(tt.later, true)
			case tt.later != "":
				waitFor(t, "the upstream to receive the request", func() bool { n, _, _ := up.counts(); return n > entered })
				send(tt.later, true)
			}
			if got := answer(); got == "200" {
				t.Errorf("answered 200: the upstream's answer to a body the client did not send")
			}
			waitFor(t, "the upstream's handler to return", func() bool { n, left, _ := up.counts(); return left == n })
			_, _, whole := up.counts()
			for _, w := range whole {
				if strings.HasPrefix(w, path+" ") {
					t.Errorf("the upstream received the whole request %q", w)
				}
			}
		})
	}
	if g := ts.metric(`pqedge_upstream_healthy{pool="app",upstream="` + up.addr + `"}`); g != "1" {
		t.Errorf("upstream gauge %q after the malformed bodies, want 1", g)
	}
	if n := ts.metricSum("pqedge_client_errors_total"); n != float64(len(tests)) {
		t.Errorf("client errors counted %v, want %d: each malformed body is the client's", n, len(tests))
	}
}

// h2Request opens an HTTP/2 stream with fields; send writes a DATA frame
// (ending the stream if end) and answer returns the response's status or
// "reset".
func h2Request(t *testing.T, ts *testServer, fields [][2]string) (send func(string, bool), answer func() string) {
	c, fr := dialH2(t, ts, 10*time.Second)
	fr.WriteSettings()
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	send = func(data string, end bool) {
		// In frames of at most 16,384 bytes, the initial
		// SETTINGS_MAX_FRAME_SIZE (RFC 9113 section 6.5.2).
		for len(data) > 16384 {
			fr.WriteData(1, false, []byte(data[:16384]))
			data = data[16384:]
		}
		fr.WriteData(1, end, []byte(data))
	}
	answer = func() string {
		defer c.Close()
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return err.Error()
			}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				return f.PseudoValue("status")
			case *http2.RSTStreamFrame:
				return "reset"
			case *http2.GoAwayFrame:
				return "goaway"
			}
		}
	}
	return send, answer
}

// h3Request opens an HTTP/3 request stream with fields, like h2Request.
func h3Request(t *testing.T, ts *testServer, fields [][2]string) (send func(string, bool), answer func() string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	conn, err := quic.DialAddr(ctx, ts.srv.QUICAddr("https").String(), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"h3"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	// RFC 9114 section 6.2.1: the control stream, starting with SETTINGS.
	ctl, err := conn.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	ctl.Write(append([]byte{0x00}, h3Frame(0x04, nil)...))
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := qpack.NewEncoder(&block)
	for _, f := range fields {
		enc.WriteField(qpack.HeaderField{Name: f[0], Value: f[1]})
	}
	str.Write(h3Frame(0x01, block.Bytes()))
	send = func(data string, end bool) {
		str.Write(h3Frame(0x00, []byte(data)))
		if end {
			str.Close()
		}
	}
	answer = func() string {
		str.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(str)
		if len(b) == 0 {
			return fmt.Sprintf("reset (%v)", err)
		}
		// The first frame is the response's HEADERS.
		typ, n, err := quicvarint.Parse(b)
		if err != nil || typ != 0x01 {
			return fmt.Sprintf("frame %d (%v)", typ, err)
		}
		l, m, err := quicvarint.Parse(b[n:])
		if err != nil || int(l) > len(b)-n-m {
			return "truncated"
		}
		decode := qpack.NewDecoder().Decode(b[n+m : n+m+int(l)])
		for {
			f, err := decode()
			if err != nil {
				return "no :status"
			}
			if f.Name == ":status" {
				return f.Value
			}
		}
	}
	return send, answer
}

// h3Frame is an HTTP/3 frame (RFC 9114 section 7.1).
func h3Frame(typ uint64, payload []byte) []byte {
	b := quicvarint.Append(nil, typ)
	b = quicvarint.Append(b, uint64(len(payload)))
	return append(b, payload...)
}

// requestLineUpstream answers every request head it reads with 200 "ok"
// and keeps their request lines, as sent: a Go upstream refuses a
// malformed one before any handler sees it.
type requestLineUpstream struct {
	mu    sync.Mutex
	lines []string
	addr  string
}

func newRequestLineUpstream(t *testing.T) *requestLineUpstream {
	u := &requestLineUpstream{}
	u.addr = rawUpstream(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			u.mu.Lock()
			u.lines = append(u.lines, strings.TrimRight(line, "\r\n"))
			u.mu.Unlock()
			chunked := false
			for { // the rest of the head
				h, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if h == "\r\n" {
					break
				}
				chunked = chunked || strings.EqualFold(strings.TrimSpace(h), "Transfer-Encoding: chunked")
			}
			// These requests carry no body, but an HTTP/3 one
			// whose FIN came after its HEADERS is forwarded
			// before its end is known, chunked: read the empty
			// body, or its "0" is taken for the next request.
			if chunked && skipChunked(br) != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return u
}

// skipChunked reads a chunked body (RFC 9112 Section 7.1) and its
// trailer section from br.
func skipChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		size, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		n, err := strconv.ParseInt(size, 16, 64)
		if err != nil {
			return err
		}
		if n == 0 {
			for {
				h, err := br.ReadString('\n')
				if err != nil || h == "\r\n" {
					return err
				}
			}
		}
		if _, err := io.CopyN(io.Discard, br, n+2); err != nil {
			return err
		}
	}
}

func (u *requestLineUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.lines...)
}

// TestStreamQueryRequestLine: an HTTP/2 or HTTP/3 :path is one field
// value, so its query may hold a space, a tab or "#", which the HTTP/1.1
// request line pqedge writes upstream cannot carry ("GET /q?x y
// HTTP/1.1" reads as another target and version; an upstream that closes
// on it had pqedge answer 502 against it). Such a request is the client's
// 400, never reaches the upstream and never counts against it (issue
// #12, kinds 1, 3 and 6). A well-formed query passes as it came; '"',
// '<', '>' and bytes from 0x80 are percent-encoded, as browsers send them
// (a strict upstream closed on them raw, blamed as above). (A
// tab, a DEL or another control byte is refused by net/http and quic-go.)
func TestStreamQueryRequestLine(t *testing.T) {
	up := newRequestLineUpstream(t)
	ts, _ := startH3(t, strings.Replace(hardenedConfig(up.addr), baseConfig, h3Config, 1))
	tests := []struct {
		path string
		want string // status
		line string // the upstream's request target; "": path as sent
	}{
		{"/q?x y", "400", ""},
		{"/q?a=b HTTP/1.0", "400", ""},
		{"/q?x#y", "400", ""},
		{"/q?x=%20y&z=[1]|{2}", "200", ""},
		// What browsers would have percent-encoded is: a strict upstream
		// closed the connection on the raw bytes, and the request was
		// answered 502 and counted against it.
		{"/q?a=\"<b>\"", "200", "/q?a=%22%3Cb%3E%22"},
		{"/q?\xc3\xa4=\xff", "200", "/q?%C3%A4=%FF"},
		// Go's ReverseProxy drops what url.ParseQuery cannot read and
		// re-encodes the rest; pqedge routes on no query, so the client's
		// reaches the upstream byte for byte, as nginx passes it.
		{"/q?b=%zz&c=/../", "200", ""},
		{"/q?a=1;b=2", "200", ""},
		{"/q?a=%2F&b=+&c", "200", ""},
	}
	for _, proto := range []string{"HTTP/2", "HTTP/3"} {
		for _, tt := range tests {
			t.Run(proto+" "+tt.path, func(t *testing.T) {
				before := len(up.seen())
				fields := [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", tt.path}}
				var send func(string, bool)
				var answer func() string
				if proto == "HTTP/3" {
					send, answer = h3Request(t, ts, fields)
				} else {
					send, answer = h2Request(t, ts, fields)
				}
				send("", true)
				if got := answer(); got != tt.want {
					t.Errorf("answered %s, want %s", got, tt.want)
				}
				got := up.seen()[before:]
				switch {
				case tt.want != "200" && len(got) != 0:
					t.Errorf("the upstream received %q", got)
				case tt.want == "200" && tt.line == "" && (len(got) != 1 || got[0] != "GET "+tt.path+" HTTP/1.1"):
					t.Errorf("the upstream received %q, want the query as sent", got)
				case tt.want == "200" && tt.line != "" && (len(got) != 1 || got[0] != "GET "+tt.line+" HTTP/1.1"):
					t.Errorf("the upstream received %q, want %q", got, tt.line)
				}
			})
		}
	}
	if g := ts.metric(`pqedge_upstream_healthy{pool="app",upstream="` + up.addr + `"}`); g != "1" {
		t.Errorf("upstream gauge %q, want 1", g)
	}
}

// TestStreamMethodAndAuthority: an HTTP/2 or HTTP/3 request whose method
// is not a token or whose :authority is not a valid Host is the client's
// 400 (or quic-go's stream reset), never reaches the upstream and never
// counts against it, sent three times to a pool that ejects after two
// failures. Before, Go's HTTP/2 server passed both on: its transport
// refused the method before any upstream connection and pqedge answered
// 502 against the upstream (ejected by the second), and it wrote the
// authority as an empty Host, so the upstream served its default virtual
// host (issue #12, kinds 1 and 3).
func TestStreamMethodAndAuthority(t *testing.T) {
	up := newRequestLineUpstream(t)
	ts, _ := startH3(t, strings.Replace(hardenedConfig(up.addr), baseConfig, h3Config, 1))
	tests := []struct {
		name, method, authority string
		h3                      string // quic-go's answer, when it refuses first
	}{
		{"method with @", "G@T", "localhost", "reset"},
		{"method with a slash", "GET/1", "localhost", "reset"},
		{"authority with a path", "GET", "localhost/x", ""},
		{"authority with a space", "GET", "local host", ""},
		{"authority with a quote", "GET", "localhost\"x", ""},
		{"authority with angle brackets", "GET", "<localhost>", ""},
		// Allowed bytes in no authority's shape: an upstream serving
		// several names may tidy them into another site's.
		{"authority with an empty label", "GET", "localhost..", ""},
		{"authority with a leading dot", "GET", ".localhost", ""},
		{"authority with two ports", "GET", "localhost:443:1", ""},
	}
	for _, proto := range []string{"HTTP/2", "HTTP/3"} {
		for _, tt := range tests {
			t.Run(proto+" "+tt.name, func(t *testing.T) {
				before := len(up.seen())
				want := "400"
				if proto == "HTTP/3" && tt.h3 != "" {
					want = tt.h3
				}
				for range 3 {
					fields := [][2]string{{":method", tt.method}, {":scheme", "https"}, {":authority", tt.authority}, {":path", "/a"}}
					var send func(string, bool)
					var answer func() string
					if proto == "HTTP/3" {
						send, answer = h3Request(t, ts, fields)
					} else {
						send, answer = h2Request(t, ts, fields)
					}
					send("", true)
					if got := answer(); !strings.HasPrefix(got, want) {
						t.Fatalf("answered %s, want %s", got, want)
					}
				}
				if got := up.seen()[before:]; len(got) != 0 {
					t.Errorf("the upstream received %q", got)
				}
			})
		}
	}
	if g := ts.metric(`pqedge_upstream_healthy{pool="app",upstream="` + up.addr + `"}`); g != "1" {
		t.Errorf("upstream gauge %q, want 1", g)
	}
}

// TestOptionsAsteriskEveryProtocol: "OPTIONS *" (RFC 9110 Section 9.3.7)
// gets the same answer over HTTP/1.1, HTTP/2 and HTTP/3: net/http's 200
// with no body, nothing upstream. Over HTTP/3 it got 400 ("malformed path").
func TestOptionsAsteriskEveryProtocol(t *testing.T) {
	up := newRequestLineUpstream(t)
	ts, _ := startH3(t, strings.Replace(hardenedConfig(up.addr), baseConfig, h3Config, 1))
	for _, proto := range []string{"HTTP/1.1", "HTTP/2", "HTTP/3"} {
		t.Run(proto, func(t *testing.T) {
			var got string
			switch proto {
			case "HTTP/1.1":
				c, err := tls.Dial("tcp", ts.addr("https"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, "OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				got = strconv.Itoa(resp.StatusCode)
			default:
				fields := [][2]string{{":method", "OPTIONS"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "*"}}
				send, answer := h2Request(t, ts, fields)
				if proto == "HTTP/3" {
					send, answer = h3Request(t, ts, fields)
				}
				send("", true)
				got = answer()
			}
			if got != "200" {
				t.Errorf("OPTIONS * answered %q, want 200", got)
			}
		})
	}
	if got := up.seen(); len(got) != 0 {
		t.Errorf("the upstream received %q", got)
	}
}

// TestExpectContinue: a client that sends Expect: 100-continue gets
// exactly one 100 Continue, at once, whatever the protocol and whether
// pqedge reads the body whole before it picks an upstream
// (proxy.PreReadBody) or streams it, and the upstream gets the body
// without the expectation. Go's HTTP/1.1 and HTTP/2 servers send the 100
// at the body's first read; quic-go's HTTP/3 server sends none, so pqedge
// does. The upstream here, like many, never sends a 100 of its own: with
// the expectation forwarded, Go's transport waited a second for it
// before it read the body, and the client for its 100 (over HTTP/3
// until its own timeout).
func TestExpectContinue(t *testing.T) {
	up := newNoContinueUpstream(t)
	ts, _ := startH3(t, strings.Replace(hardenedConfig(up.addr), baseConfig, h3Config, 1))
	h3, _ := ts.h3Client()
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"},
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		ExpectContinueTimeout: 5 * time.Second,                                        // as a client that waits for the 100
	}}
	clients := []struct {
		proto  string
		client *http.Client
		url    string
	}{
		{"HTTP/1.1", h1, "https://" + ts.addr("https")},
		{"HTTP/2", ts.client(), "https://" + ts.addr("https")},
		{"HTTP/3", h3, ts.h3URL("https")},
	}
	for _, c := range clients {
		for _, size := range []int{10, proxy.PreReadBody, proxy.PreReadBody + 1, 256 << 10} {
			t.Run(fmt.Sprintf("%s %d bytes", c.proto, size), func(t *testing.T) {
				before := len(up.requests())
				var continues atomic.Int32
				body := &bodyAfter100{got: make(chan struct{}), rest: strings.NewReader(strings.Repeat("x", size))}
				trace := &httptrace.ClientTrace{Got100Continue: func() {
					if continues.Add(1) == 1 {
						close(body.got)
					}
				}}
				ctx := httptrace.WithClientTrace(context.Background(), trace)
				req, err := http.NewRequestWithContext(ctx, "POST", c.url+"/q", body)
				if err != nil {
					t.Fatal(err)
				}
				req.ContentLength = int64(size)
				req.Header.Set("Expect", "100-continue")
				body.start = time.Now()
				resp, err := c.client.Do(req)
				if err != nil {
					t.Fatalf("POST with Expect: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Proto != c.proto+".0" && resp.Proto != c.proto {
					t.Fatalf("answered %s over %s, want 200 over %s", resp.Status, resp.Proto, c.proto)
				}
				if n := continues.Load(); n != 1 {
					t.Errorf("the client saw %d 100 Continue, want 1", n)
				}
				if body.gaveUp {
					t.Errorf("no 100 Continue came within %v of the request: the client sent its body on its own timeout", bodyWait)
				} else if body.waitedFor > continueWait {
					t.Errorf("the 100 Continue came %v after the request, want it at once (under %v)", body.waitedFor.Round(time.Millisecond), continueWait)
				}
				got := up.requests()[before:]
				if len(got) != 1 {
					t.Fatalf("the upstream got %d requests, want 1", len(got))
				}
				if e := got[0].expect; e != "" {
					t.Errorf("the upstream got Expect: %s; pqedge answers the expectation itself", e)
				}
				if got[0].bodyLen != size {
					t.Errorf("the upstream got a body of %d bytes, want %d", got[0].bodyLen, size)
				}
			})
		}
	}
}

// continueWait is how late a 100 Continue may come and still count as at
// once: well under the second a forwarded expectation cost.
const continueWait = 500 * time.Millisecond

// noContinueUpstream is an HTTP/1.1 upstream that never sends 100
// Continue (Go's http.Server sends one at the body's first read; this
// one reads requests with http.ReadRequest, which does not), reads each
// body whole and answers 200 "ok", keeping the connection.
type noContinueUpstream struct {
	addr string
	mu   sync.Mutex
	seen []noContinueRequest
}

type noContinueRequest struct {
	expect  string
	bodyLen int
}

func newNoContinueUpstream(t *testing.T) *noContinueUpstream {
	t.Helper()
	u := &noContinueUpstream{}
	u.addr = rawUpstream(t, u.serve)
	return u
}

func (u *noContinueUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		n, err := io.Copy(io.Discard, req.Body)
		if err != nil {
			return
		}
		u.mu.Lock()
		u.seen = append(u.seen, noContinueRequest{expect: req.Header.Get("Expect"), bodyLen: int(n)})
		u.mu.Unlock()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

func (u *noContinueUpstream) requests() []noContinueRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]noContinueRequest(nil), u.seen...)
}

// bodyWait is how long bodyAfter100 waits for the 100 Continue, as curl
// waits 1 s.
const bodyWait = time.Second

// bodyAfter100 is the body of a client that waits for 100 Continue
// before sending it, or bodyWait, what comes first; gaveUp says the
// wait ran out.
type bodyAfter100 struct {
	got    chan struct{}
	rest   io.Reader
	waited bool
	gaveUp bool
	// start is when the request began (set by the caller); waitedFor is
	// how long after it the 100 came.
	start     time.Time
	waitedFor time.Duration
}

func (b *bodyAfter100) Read(p []byte) (int, error) {
	if !b.waited {
		b.waited = true
		select {
		case <-b.got:
			b.waitedFor = time.Since(b.start)
		case <-time.After(bodyWait):
			b.gaveUp = true
		}
	}
	return b.rest.Read(p)
}
