package h1guard

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseCase is one client byte stream and what the guard must make of it.
type parseCase struct {
	name     string
	in       string
	requests int    // messages read to their end
	refused  string // "" when nothing is refused; else part of the reason
}

var parseCases = []parseCase{
	// Framed beyond doubt.
	{name: "GET", in: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", requests: 1},
	{name: "three pipelined", in: strings.Repeat("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 3), requests: 3},
	{name: "Content-Length body then GET", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: x\r\n\r\n", requests: 2},
	{name: "Content-Length with OWS and zeros", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:  005 \r\n\r\nhello", requests: 1},
	{name: "equal Content-Length fields", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nhi", requests: 1},
	{name: "Content-Length 0", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", requests: 1},
	{name: "chunked with extension and trailer", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n5;ext=\"1\"\r\nhello\r\n6  \r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", requests: 1},
	{name: "chunked then pipelined", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", requests: 2},
	{name: "HTTP/1.0 with Content-Length", in: "POST /a HTTP/1.0\r\nContent-Length: 1\r\n\r\nx", requests: 1},
	{name: "obs-text and tabs in values", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3\xa9\tok\r\n\r\n", requests: 1},
	{name: "absolute form", in: "GET http://x/a?b HTTP/1.1\r\nHost: x\r\n\r\n", requests: 1},
	{name: "incomplete head waits", in: "GET / HTTP/1.1\r\nHost: x\r\n", requests: 0},
	{name: "incomplete body waits", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", requests: 0},
	// Ambiguous: Go reads these, quietly.
	{name: "Content-Length and chunked", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", refused: "both Content-Length and Transfer-Encoding"},
	{name: "chunked and Content-Length", in: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\nHost: x\r\n\r\n", refused: "both"},
	{name: "Transfer-Encoding in HTTP/1.0", in: "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", refused: "HTTP/1.0"},
	{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", refused: "obsolete line folding"},
	{name: "folded Transfer-Encoding", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", refused: "obsolete line folding"},
	{name: "bare LF line ends", in: "GET / HTTP/1.1\nHost: x\n\n", refused: "bare LF"},
	{name: "bare LF in a field", in: "GET / HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n", refused: "bare LF"},
	{name: "bare CR in a value", in: "GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", refused: "CR not followed by LF"},
	// Refused by Go too; refused here before it reads them.
	{name: "two transfer codings", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", refused: "transfer coding"},
	{name: "two Transfer-Encoding fields", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", refused: "transfer coding"},
	{name: "empty Transfer-Encoding", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", refused: "transfer coding"},
	{name: "conflicting Content-Length", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", refused: "conflicting"},
	{name: "Content-Length list", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", refused: "malformed Content-Length"},
	{name: "signed Content-Length", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", refused: "malformed Content-Length"},
	{name: "empty Content-Length", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", refused: "malformed Content-Length"},
	{name: "huge Content-Length", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", refused: "malformed Content-Length"},
	{name: "space before colon", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", refused: "field name"},
	{name: "NUL in a value", in: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", refused: "control byte"},
	{name: "empty request line", in: "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", refused: "empty request line"},
	{name: "double space in request line", in: "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", refused: "empty request target"},
	{name: "HTTP/2.0 request line", in: "GET / HTTP/2.0\r\nHost: x\r\n\r\n", refused: "unsupported version"},
	{name: "lower-case version", in: "GET / http/1.1\r\nHost: x\r\n\r\n", refused: "unsupported version"},
	{name: "tab in the target", in: "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", refused: "request target"},
	{name: "hex prefix in a chunk size", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", refused: "chunk size"},
	{name: "space before a chunk extension", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 ;x\r\nhello\r\n0\r\n\r\n", refused: "after a chunk size"},
	{name: "bare LF after a chunk size", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", refused: "chunk size"},
	{name: "chunk data too long", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n", refused: "chunk data"},
	{name: "chunk size overflow", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", refused: "too large"},
	{name: "folded trailer", in: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n", refused: "obsolete line folding"},
	{name: "smuggled request after CL+TE", in: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n", refused: "both"},
}

// runParser feeds in through a parser in pieces of step bytes (0: all at
// once) and returns the requests read and the refusal, if any.
func runParser(in string, step int) (int, string, int) {
	p := parser{maxHead: DefaultMaxHeaderBytes + headSlack, maxTarget: DefaultMaxHeaderBytes, maxFields: DefaultMaxHeaderFields}
	b := []byte(in)
	if step <= 0 {
		step = len(b) + 1
	}
	fed := 0
	for len(b) > 0 {
		n := min(step, len(b))
		read, r := p.feed(b[:n])
		fed += read
		if r != nil {
			return p.requests, r.reason, fed
		}
		b = b[n:]
	}
	return p.requests, "", fed
}

func TestParser(t *testing.T) {
	for _, tt := range parseCases {
		t.Run(tt.name, func(t *testing.T) {
			for _, step := range []int{0, 1, 2, 7} {
				requests, refused, fed := runParser(tt.in, step)
				if requests != tt.requests || !strings.Contains(refused, tt.refused) || (tt.refused == "") != (refused == "") {
					t.Fatalf("in pieces of %d: %d requests, refused %q; want %d and %q", step, requests, refused, tt.requests, tt.refused)
				}
				if refused != "" && fed >= len(tt.in) && tt.refused != "" {
					t.Fatalf("refused %q only after reading all %d bytes", refused, fed)
				}
			}
		})
	}
}

// TestParserHeadLimit: a head longer than the limit is refused, one just
// under it is not.
func TestParserHeadLimit(t *testing.T) {
	max := 1 << 10
	head := func(n int) string {
		base := "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
		return strings.Replace(base, "X-Pad: ", "X-Pad: "+strings.Repeat("a", n-len(base)), 1)
	}
	for _, tt := range []struct {
		size    int
		refused bool
	}{{max, false}, {max + 1, true}} {
		p := parser{maxHead: max}
		_, r := p.feed([]byte(head(tt.size)))
		if (r != nil) != tt.refused {
			t.Errorf("head of %d bytes (limit %d): refusal %v", tt.size, max, r)
		}
	}
}

// TestParserTargetLimit: a request target of exactly the limit passes, one
// byte more is refused with the guard's own 414 at that byte (RFC 9112
// Section 3), however the bytes are split into reads; a long field or a
// long second request is judged as before.
func TestParserTargetLimit(t *testing.T) {
	const max = 1 << 10
	target := func(n int) string { return "/" + strings.Repeat("a", n-1) }
	get := func(n int) string { return "GET " + target(n) + " HTTP/1.1\r\nHost: x\r\n\r\n" }
	for _, tt := range []struct {
		name     string
		in       string
		requests int
		status   int    // 0: no answer of the guard's own
		kind     string // "": not refused
		at       int    // bytes delivered before the refusal
	}{
		{name: "target of the limit", in: get(max), requests: 1},
		{name: "target one byte over", in: get(max + 1), status: 414, kind: "request target too long", at: len("GET ") + max},
		{name: "absolute form one byte over", in: "GET http://x" + target(max+1-len("http://x")) + " HTTP/1.1\r\n\r\n", status: 414, kind: "request target too long", at: len("GET ") + max},
		{name: "over after a good request", in: get(max) + get(max+1), requests: 1, status: 414, kind: "request target too long", at: len(get(max)) + len("GET ") + max},
		{name: "target of the limit, long field", in: "GET " + target(max) + " HTTP/1.1\r\nX: " + strings.Repeat("b", 2*max) + "\r\n\r\n", kind: "header block too long"},
		{name: "short target, long head", in: "GET / HTTP/1.1\r\nX: " + strings.Repeat("b", 3*max) + "\r\n\r\n", kind: "header block too long"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Reads of every size up to a few bytes, and reads that
			// end just before, at and after the limit's byte.
			for _, step := range []int{0, 1, 2, 7, len("GET ") + max - 1, len("GET ") + max, len("GET ") + max + 1, 4096} {
				p := parser{maxHead: 2 * max, maxTarget: max}
				fed, r := feedInReads(&p, tt.in, step)
				checkFed(t, step, &p, fed, r, tt.kind, tt.status, tt.requests, tt.at)
			}
		})
	}
}

// TestParserFieldLimit: a head of maxFields field lines passes and one
// more is answered 431 by the guard, at the first byte of the field over
// the cap, in reads of any size; a trailer section has its own count,
// refused for the body's read (no answer of the guard's own). Before,
// only bytes were capped: 16,000 four-byte fields fit 64 KiB.
func TestParserFieldLimit(t *testing.T) {
	const max = 100
	head := func(n int) string {
		var b strings.Builder
		b.WriteString("GET / HTTP/1.1\r\n")
		for i := range n {
			fmt.Fprintf(&b, "X%d: v\r\n", i)
		}
		return b.String() + "\r\n"
	}
	fieldsOf := func(n int) string {
		return strings.TrimSuffix(strings.TrimPrefix(head(n), "GET / HTTP/1.1\r\n"), "\r\n")
	}
	chunked := func(trailers int) string {
		return "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n" + fieldsOf(trailers) + "\r\n"
	}
	for _, tt := range []struct {
		name     string
		in       string
		requests int
		status   int
		kind     string
		at       int // bytes delivered before the refusal
	}{
		{name: "fields of the cap", in: head(max), requests: 1},
		{name: "one field over", in: head(max + 1), status: 431, kind: "too many header fields", at: len(head(max)) - 2},
		{name: "ten thousand fields", in: head(10000), status: 431, kind: "too many header fields", at: len(head(max)) - 2},
		{name: "over after a good request", in: head(max) + head(max+1), requests: 1, status: 431, kind: "too many header fields", at: 2*len(head(max)) - 2},
		{name: "trailers of the cap beside a full head", in: strings.Replace(chunked(max), "\r\n\r\n", "\r\n"+fieldsOf(max-1)+"\r\n", 1), requests: 1},
		{name: "trailers one over", in: chunked(max + 1), kind: "too many trailer fields"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, step := range []int{0, 1, 3, 1000} {
				p := parser{maxHead: 1 << 20, maxFields: max}
				fed, r := feedInReads(&p, tt.in, step)
				checkFed(t, step, &p, fed, r, tt.kind, tt.status, tt.requests, tt.at)
			}
		})
	}
}

// TestRefusalKindsAreFixed: requests refused for the same mistake with
// different bytes get one kind, which carries none of those bytes. The kind
// is pqedge_http1_refused_total's reason label: before, "unsupported
// version %q" let each client request mint a new time series.
func TestRefusalKindsAreFixed(t *testing.T) {
	for _, tt := range []struct {
		name   string
		inputs []string // the same mistake, different client bytes
		kind   string
	}{
		{name: "version", kind: "unsupported version", inputs: []string{
			"GET / HTTP/7.7\r\nHost: x\r\n\r\n",
			"GET / ABCDEFGH\r\nHost: x\r\n\r\n",
			"GET / \xff\xfeHTTP\r\nHost: x\r\n\r\n",
		}},
		{name: "method", kind: "invalid byte in the method", inputs: []string{
			"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
			"G\x80T / HTTP/1.1\r\nHost: x\r\n\r\n",
		}},
		{name: "target", kind: "invalid byte in the request target", inputs: []string{
			"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
			"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n",
		}},
		{name: "field name", kind: "invalid byte in a field name", inputs: []string{
			"GET / HTTP/1.1\r\nHo(t: x\r\n\r\n",
			"GET / HTTP/1.1\r\nHo\xc3t: x\r\n\r\n",
		}},
		{name: "field value", kind: "control byte in a field value", inputs: []string{
			"GET / HTTP/1.1\r\nHost: x\x01\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: x\x1b\r\n\r\n",
		}},
		{name: "chunk extension", kind: "control byte in a chunk extension", inputs: []string{
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00b\r\n",
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"\x0b\"\r\n",
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0;\x7f\r\n\r\n",
		}},
		{name: "chunk size", kind: "invalid byte in a chunk size", inputs: []string{
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5z\r\n",
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\x00\r\n",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, in := range tt.inputs {
				p := parser{maxHead: DefaultMaxHeaderBytes + headSlack}
				_, r := p.feed([]byte(in))
				if r == nil {
					t.Fatalf("%q: not refused", in)
				}
				if r.kind != tt.kind {
					t.Errorf("%q: kind %q (reason %q), want %q", in, r.kind, r.reason, tt.kind)
				}
			}
		})
	}
}

// FuzzParser checks the guard against net/http on arbitrary client bytes:
// wherever the guard lets requests through, net/http must read them with
// the same boundaries, so a request the guard has not judged can never
// start where net/http thinks one does. The guard's verdict must not
// depend on how the bytes are split into reads either.
func FuzzParser(f *testing.F) {
	for _, c := range parseCases {
		f.Add([]byte(c.in), uint8(3))
	}
	files, _ := filepath.Glob("testdata/*.http")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole, refusedWhole, _ := runParser(string(in), 0)
		split, refusedSplit, _ := runParser(string(in), int(step))
		if whole != split || refusedWhole != refusedSplit {
			t.Fatalf("split into pieces of %d: %d requests, %q; whole: %d, %q", step, split, refusedSplit, whole, refusedWhole)
		}
		p := parser{maxHead: DefaultMaxHeaderBytes + headSlack, maxTarget: DefaultMaxHeaderBytes, maxFields: DefaultMaxHeaderFields}
		read, _ := p.feed(in)
		// Every message the guard read to its end, net/http must read to
		// the same end.
		src := bytes.NewReader(in[:read])
		br := bufio.NewReader(src)
		for i := range p.requests {
			req, err := http.ReadRequest(br)
			if err != nil {
				return // net/http refuses a request the guard let through: stricter, not ambiguous
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			if i == p.requests-1 {
				consumed := int64(read) - int64(src.Len()) - int64(br.Buffered())
				if consumed != p.endAt {
					t.Fatalf("request %d ends at byte %d for net/http, %d for the guard", i+1, consumed, p.endAt)
				}
			}
		}
	})
}

// TestParserCaptures: requests captured from real clients (curl, Chromium;
// testdata/README) pass whole and in single bytes.
func TestParserCaptures(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.http")
	if len(files) == 0 {
		t.Fatal("no testdata/*.http")
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range []int{0, 1} {
			if requests, refused, _ := runParser(string(b), step); requests != 1 || refused != "" {
				t.Errorf("%s in pieces of %d: %d requests, refused %q", file, step, requests, refused)
			}
		}
	}
}

// feedInReads feeds in to p in reads of step bytes (0: all at once) until
// it is all fed or p refuses, and returns the bytes p delivered and its
// refusal, if any.
func feedInReads(p *parser, in string, step int) (fed int, r *refusal) {
	b := []byte(in)
	for len(b) > 0 && r == nil {
		n := min(step, len(b))
		if step == 0 {
			n = len(b)
		}
		var read int
		read, r = p.feed(b[:n])
		fed += read
		b = b[n:]
	}
	return fed, r
}

// checkFed fails t unless feedInReads's result (in reads of step bytes)
// is a refusal of wantKind with wantStatus (none: "" and 0) after
// wantRequests requests, wantAt bytes delivered before an answered one.
func checkFed(t *testing.T, step int, p *parser, fed int, r *refusal, wantKind string, wantStatus, wantRequests, wantAt int) {
	t.Helper()
	kind, status := "", 0
	if r != nil {
		kind, status = r.kind, r.status
	}
	if kind != wantKind || status != wantStatus || p.requests != wantRequests {
		t.Fatalf("in reads of %d: refused %q (status %d) after %d requests; want %q (%d) after %d", step, kind, status, p.requests, wantKind, wantStatus, wantRequests)
	}
	if wantStatus != 0 && fed != wantAt {
		t.Errorf("in reads of %d: %d bytes delivered before the refusal, want %d", step, fed, wantAt)
	}
}
