package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// errUnsolicited fails an upstream connection on which bytes arrived
// after the end of a response and before the next request: the upstream
// sent more than it framed (a body longer than its Content-Length, a
// body after a 204, 304 or an answer to HEAD, a second response after a
// chunked one that also declared a length). net/http's transport drops
// such a connection only if its read loop looks before another request
// takes it; otherwise the bytes are read as that request's response, and
// a client gets an answer meant for nobody (measured: about 1 response in
// 140 under 64 concurrent clients).
var errUnsolicited = errors.New("upstream sent bytes after the end of its response (RFC 9112 section 6.3)")

// Limits of what a responseFramer keeps of one line: the start of a
// header line, enough to know Content-Length and Transfer-Encoding, and a
// chunk-size line (net/http refuses one longer than its 4 KiB buffer).
const (
	framerLineCap = 4 << 10
)

// framerState is where a responseFramer is in the responses of its
// connection.
type framerState uint8

const (
	frIdle        framerState = iota // no request outstanding: any byte is unsolicited
	frHead                           // in a response's status line and header fields
	frBody                           // in a Content-Length body: left bytes remain
	frChunkSize                      // in a chunk-size line
	frChunkData                      // in a chunk's data: left bytes remain
	frChunkCRLF                      // in the CRLF after a chunk's data: left bytes remain
	frTrailer                        // in the trailer section after the last chunk
	frPassthrough                    // not followed: a tunnel, a body read to the close, or framing net/http refuses
)

// responseFramer follows the HTTP/1.1 responses read on one upstream
// connection to find where each ends (RFC 9112 Section 6.3), the way
// net/http's transport reads them, so that deadlineConn can withhold what
// comes after: the transport never pipelines, so a byte after a final
// response and before the next request is the upstream's error. It only
// needs to agree with the transport on the end of responses the transport
// accepts; anything else (a framing the transport refuses, a body read
// until the close, a 101 tunnel) turns it off for the connection, as does
// a request that begins before it saw the last response end, so a
// disagreement can cost protection but never a good response.
type responseFramer struct {
	mu    sync.Mutex // guards the fields below: begin runs on the request's goroutine, consume on the read loop's
	state framerState
	head  bool // the outstanding request is HEAD: its response has no body
	left  int64
	line  []byte // the current line, up to framerLineCap bytes
	long  bool   // the current line outgrew framerLineCap
	// Of the response head being read: its status code, Content-Length
	// (-1: none) and Transfer-Encoding lines, and whether the last header
	// line was one of those (an obs-fold continuation of it is not
	// followed).
	status, teLines int
	length          int64
	chunked, framed bool
	bad             bool // a framing line the framer does not follow
	http10          bool // the response is HTTP/1.0 (or older): Transfer-Encoding is ignored
	// connection holds the values of the head's Connection fields (up to
	// framerLineCap bytes in all), for fieldsNamedByConnection.
	connection []byte
	// maxFields caps the field lines of a head and of a trailer section
	// (0: no cap); fields counts those of the one being read. Over the
	// cap, fault is set and the connection fails (deadlineConn).
	maxFields, fields int
	fault             error
}

// tooManyFields fails the connection: a response head or trailer
// section has more field lines than the cap (where: "header" or
// "trailer"). Called with mu held.
func (f *responseFramer) tooManyFields(where string) {
	f.fault = badResponseError{fmt.Sprintf("more than %d %s fields", f.maxFields, where)}
	f.state = frPassthrough
}

// failure returns the fault that failed the connection, or nil.
func (f *responseFramer) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fault
}

// fieldsNamedByConnection returns the field names the Connection header of
// the last response head named (RFC 9110 Section 7.6.1), "close" and
// "keep-alive" left out. net/http's transport deletes a response's
// Connection header when it holds "close", before ReverseProxy removes
// the fields it names, which then reached the client.
func (f *responseFramer) fieldsNamedByConnection() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for tok := range bytes.SplitSeq(f.connection, []byte(",")) {
		tok = bytes.Trim(tok, " \t")
		if len(tok) == 0 || bytes.EqualFold(tok, []byte("close")) || bytes.EqualFold(tok, []byte("keep-alive")) {
			continue
		}
		names = append(names, string(tok))
	}
	return names
}

// begin notes that a request is about to be written on the connection.
func (f *responseFramer) begin(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state != frIdle {
		// The transport reuses a connection only once it read the last
		// response whole: the framer lost count, and stops judging.
		f.state, f.connection = frPassthrough, nil
		return
	}
	f.head = method == "HEAD"
	f.startHead()
}

func (f *responseFramer) startHead() {
	f.state, f.line, f.long = frHead, f.line[:0], false
	f.status, f.teLines, f.length, f.chunked, f.framed, f.bad, f.http10 = 0, 0, -1, false, false, false, false
	f.fields = 0
	f.connection = f.connection[:0]
}

// consume follows b, the next bytes read from the upstream, and returns
// how many of them belong to responses; fewer than len(b) when the rest
// came after a response's end with no request outstanding, or when a
// head or trailer section has more fields than maxFields (failure then
// says so, and the count is where the field over the cap begins, 0 when
// it began in an earlier read).
func (f *responseFramer) consume(b []byte) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := 0
	for i < len(b) {
		switch f.state {
		case frPassthrough:
			return len(b)
		case frIdle:
			return i
		case frBody, frChunkData, frChunkCRLF:
			n := int(min(f.left, int64(len(b)-i)))
			if f.state == frChunkCRLF && !bytes.HasPrefix([]byte("\r\n")[2-f.left:], b[i:i+n]) {
				// net/http refuses the chunk; the connection dies.
				f.state = frPassthrough
				return len(b)
			}
			i += n
			if f.left -= int64(n); f.left > 0 {
				continue
			}
			switch f.state {
			case frBody:
				f.state = frIdle
			case frChunkData:
				f.state, f.left = frChunkCRLF, 2
			default:
				f.state, f.line, f.long = frChunkSize, f.line[:0], false
			}
		default: // a line: frHead, frChunkSize, frTrailer
			lineStart := i
			if len(f.line) > 0 || f.long {
				lineStart = 0 // it began in an earlier read
			}
			j := bytes.IndexByte(b[i:], '\n')
			end := len(b)
			if j >= 0 {
				end = i + j
			}
			if room := framerLineCap - len(f.line); end-i > room {
				f.line, f.long = append(f.line, b[i:i+room]...), true
			} else {
				f.line = append(f.line, b[i:end]...)
			}
			if j < 0 {
				return len(b)
			}
			i = end + 1
			f.endLine()
			f.line, f.long = f.line[:0], false
			if f.fault != nil {
				return lineStart
			}
		}
	}
	return i
}

// endLine acts on the line just read (without its LF).
func (f *responseFramer) endLine() {
	line := bytes.TrimSuffix(f.line, []byte("\r"))
	switch f.state {
	case frHead:
		if f.status == 0 {
			f.statusLine(line)
			return
		}
		if len(line) > 0 {
			if f.fields++; f.maxFields > 0 && f.fields > f.maxFields {
				f.tooManyFields("header")
				return
			}
			f.headerLine(line)
			return
		}
		f.endHead()
	case frChunkSize:
		// net/http: whitespace trimmed, an extension after ';' ignored,
		// hexadecimal digits (RFC 9112 Section 7.1).
		line = bytes.TrimRight(line, " \t")
		if k := bytes.IndexByte(line, ';'); k >= 0 {
			line = line[:k]
		}
		n, err := strconv.ParseUint(string(bytes.TrimRight(line, " \t")), 16, 63)
		switch {
		case f.long || err != nil:
			f.state = frPassthrough
		case n == 0:
			f.state, f.fields = frTrailer, 0
		default:
			f.state, f.left = frChunkData, int64(n)
		}
	case frTrailer:
		if len(line) == 0 {
			f.state = frIdle
			return
		}
		if f.fields++; f.maxFields > 0 && f.fields > f.maxFields {
			f.tooManyFields("trailer")
		}
	}
}

func (f *responseFramer) statusLine(line []byte) {
	// "HTTP/1.1 200 OK": the code is the three digits after the first
	// space (RFC 9112 Section 4).
	proto, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(rest) < 3 || f.long {
		f.state = frPassthrough
		return
	}
	// net/http ignores Transfer-Encoding in a response older than
	// HTTP/1.1 (RFC 9112 Section 6.1 has a recipient treat its framing as
	// faulty): Content-Length frames it, or the connection's close.
	if !bytes.Equal(proto, []byte("HTTP/1.1")) {
		major, minor, ok := http.ParseHTTPVersion(string(proto))
		f.http10 = ok && (major < 1 || major == 1 && minor < 1)
	}
	code, err := strconv.Atoi(string(rest[:3]))
	if err != nil || code <= 0 {
		f.state = frPassthrough
		return
	}
	f.status = code
}

func (f *responseFramer) headerLine(line []byte) {
	if line[0] == ' ' || line[0] == '\t' {
		// An obs-fold continuation, which net/http joins to the line
		// before: of a framing field, not followed.
		if f.framed {
			f.bad = true
		}
		return
	}
	name, value, _ := bytes.Cut(line, []byte(":"))
	value = bytes.Trim(value, " \t")
	f.framed = false
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		f.framed = true
		n, err := strconv.ParseInt(string(value), 10, 64)
		if f.long || err != nil || n < 0 || value[0] == '+' || f.length >= 0 && f.length != n {
			f.bad = true
		}
		f.length = n
	case bytes.EqualFold(name, []byte("Connection")):
		if len(f.connection)+len(value)+1 <= framerLineCap {
			f.connection = append(append(f.connection, ','), value...)
		}
	case bytes.EqualFold(name, []byte("Transfer-Encoding")) && !f.http10:
		f.framed = true
		f.teLines++
		f.chunked = bytes.EqualFold(value, []byte("chunked"))
		if f.long || !f.chunked || f.teLines > 1 {
			f.bad = true
		}
	}
}

// endHead decides how the response whose head just ended is framed
// (RFC 9112 Section 6.3, in net/http's reading).
func (f *responseFramer) endHead() {
	switch {
	case f.status == 101 || f.bad:
		// A tunnel follows, or a framing net/http refuses.
		f.state = frPassthrough
	case f.status >= 100 && f.status < 200:
		// An interim response: the final one follows.
		f.startHead()
	case f.head || f.status == 204 || f.status == 304:
		f.state = frIdle
	case f.chunked:
		f.state, f.line, f.long = frChunkSize, f.line[:0], false
	case f.length > 0:
		f.state, f.left = frBody, f.length
	case f.length == 0:
		f.state = frIdle
	default:
		// No length: the body ends with the connection.
		f.state = frPassthrough
	}
}

// upstreamBody is an upstream response's body as ReverseProxy copies it:
// the upstream served the request when the body ends whole, and failed
// it when reading the body fails while the client is still there (a
// connection closed or reset mid-body, a broken chunk, a stall past
// UpstreamIdleTimeout); until then it has neither. A body that the
// client abandoned (it left, or stopped reading) says nothing of the
// upstream. Without it every response whose head arrived counted as a
// success, so an upstream that broke every body after its head was never
// ejected: each success cleared the failures before it.
type upstreamBody struct {
	io.ReadCloser
	p    *HTTPProxy
	st   *reqState
	ctx  context.Context
	resp *http.Response // whose Trailer the transport fills at the end
	done bool
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// The transport set the trailers, the unannounced ones too, before
		// it returned the end; ReverseProxy relays them after.
		b.st.filterResponseTrailers(b.resp.Trailer)
	}
	if err != nil && !b.done {
		b.done = true
		switch {
		case err == io.EOF && !b.st.unsolicited():
			b.p.pool.reportSuccess(b.st.up)
		case err == io.EOF:
			// Counted by the connection (deadlineConn.unsolicited).
		case b.ctx.Err() == nil:
			b.p.pool.reportFailure(b.st.up, err)
			b.p.log.Warn("upstream response body failed", "upstream", b.st.up.addr, "err", err)
		}
		if err != io.EOF {
			b.st.cutShort(err, b.ctx.Err() != nil)
		}
	}
	return n, err
}
