package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// transportEnd is where net/http's client ends the response that begins
// wire (to a request of method), as its transport reads it: the bytes its
// reader consumed once the body read to EOF; ok is false when it refuses
// the response or reads the body to the connection's close.
func transportEnd(wire []byte, method string) (end int, ok bool) {
	src := bytes.NewReader(wire)
	br := bufio.NewReader(src)
	req, _ := http.NewRequest(method, "http://x/", nil)
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return 0, false
		}
		if resp.StatusCode == 101 {
			return 0, false
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			continue
		}
		if resp.Close && resp.ContentLength < 0 && !resp.Uncompressed && len(resp.TransferEncoding) == 0 {
			return 0, false // read to the close
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return 0, false
		}
		return len(wire) - src.Len() - br.Buffered(), true
	}
}

// framerEnd feeds wire to a responseFramer in pieces of step bytes and
// returns where it found the response's end; ok is false when it stopped
// following (frPassthrough) or saw no end.
func framerEnd(wire []byte, method string, step int) (end int, ok bool) {
	var f responseFramer
	f.begin(method)
	for i := 0; i < len(wire); i += step {
		piece := wire[i:min(i+step, len(wire))]
		if k := f.consume(piece); k < len(piece) {
			return i + k, true
		}
		if f.state == frPassthrough {
			return 0, false
		}
	}
	if f.state == frIdle {
		return len(wire), true
	}
	return 0, false
}

func TestResponseFramer(t *testing.T) {
	tests := []struct {
		name, wire, method string
		end                int // -1: not followed
	}{
		{name: "length", wire: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcNEXT", end: 41},
		{name: "length 0", wire: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nNEXT", end: 38},
		{name: "same length twice", wire: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabcNEXT", end: 60},
		{name: "two lengths", wire: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcdNEXT", end: -1},
		{name: "chunked", wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT", end: 60},
		{name: "chunked over a length", wire: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: Chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nT: 1\r\n\r\nNEXT", end: 89},
		{name: "gzip, chunked", wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", end: -1},
		{name: "bare LF lines", wire: "HTTP/1.1 200 OK\nContent-Length: 2\n\nabNEXT", end: 37},
		{name: "204", wire: "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\nNEXT", end: 46},
		{name: "304", wire: "HTTP/1.1 304 Not Modified\r\n\r\nNEXT", end: 29},
		{name: "HEAD", method: "HEAD", wire: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nNEXT", end: 38},
		{name: "interim", wire: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: <a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxNEXT", end: 97},
		{name: "101", wire: "HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\nNEXT", end: -1},
		{name: "no length", wire: "HTTP/1.1 200 OK\r\n\r\nabc", end: -1},
		{name: "folded length", wire: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n 4\r\n\r\nabcNEXT", end: -1},
		{name: "bad chunk size", wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", end: -1},
		{name: "chunk without CRLF", wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", end: -1},
		// net/http ignores Transfer-Encoding in an HTTP/1.0 response
		// (RFC 9112 Section 6.1 makes its framing faulty): the length
		// frames it. The framer followed the chunks, and cut the body
		// short (the first), or stopped judging (the second).
		{name: "HTTP/1.0 chunked beside a length", wire: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 8\r\nConnection: keep-alive\r\n\r\n0\r\n\r\nabcNEXT", end: 98},
		{name: "HTTP/1.0 gzip beside a length", wire: "HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabcNEXT", end: 66},
		{name: "HTTP/1.0 chunked alone", wire: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", end: -1},
		{name: "long header line", wire: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 10000) + "\r\nContent-Length: 1\r\n\r\nxNEXT", end: 10044},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "GET"
			}
			for _, step := range []int{1, 3, 7, len(tt.wire)} {
				end, ok := framerEnd([]byte(tt.wire), method, step)
				if !ok {
					end = -1
				}
				if end != tt.end {
					t.Fatalf("in pieces of %d: end %d, want %d", step, end, tt.end)
				}
			}
			if tt.end < 0 {
				return
			}
			if end, ok := transportEnd([]byte(tt.wire), method); !ok || end != tt.end {
				t.Errorf("net/http ends it at %d (%v), the test says %d", end, ok, tt.end)
			}
		})
	}
}

// FuzzResponseFramer: wherever the framer finds a response's end, net/http
// reads the response to the same byte, whatever pieces it arrives in, so
// withholding what follows never cuts a response the transport accepts.
func FuzzResponseFramer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nA: b\r\n\r\nX",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nX",
		"HTTP/1.0 200 OK\nContent-Length: 1\n\nxy",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\na\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 8\r\n\r\n0\r\n\r\nabcX",
	} {
		f.Add([]byte(s), false, uint8(5))
	}
	f.Fuzz(func(t *testing.T, wire []byte, head bool, step uint8) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		end, ok := framerEnd(wire, method, int(step%64)+1)
		if !ok {
			return
		}
		want, tok := transportEnd(wire, method)
		if !tok {
			// The transport refuses what the framer followed: it drops
			// the connection anyway; what matters is no accepted response
			// is cut.
			return
		}
		if end != want {
			t.Fatalf("framer ends the response at %d, net/http at %d", end, want)
		}
	})
}
