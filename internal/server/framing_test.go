package server

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestHTTP1FramingNeverSmuggles: HTTP/1.1 requests whose framing is
// malformed or ambiguous (RFC 9112 sections 2.2, 5, 6.1, 6.3 and 7.1),
// each followed on the same connection by a second request, are answered
// (400 for the headers; a body found malformed while streaming may have
// been answered first) and the connection is closed: the second request
// never reaches the upstream (issue #12, kind 1). Found accepted and not
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
