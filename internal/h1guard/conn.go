// Package h1guard sits between a client's HTTP/1.x connection and
// net/http's server and refuses requests whose framing is ambiguous before
// net/http has read them whole (issue 12, kind 1; RFC 9112 Sections 2.2,
// 5.1, 5.2, 6.1 and 6.3).
//
// net/http reads a request with both Content-Length and
// Transfer-Encoding: chunked by the latter and deletes Content-Length,
// ignores Transfer-Encoding in HTTP/1.0, and joins obs-fold lines, so no
// handler can tell that a proxy or client before pqedge may have framed the
// same bytes otherwise (request smuggling). Wrap reads the same bytes as
// they pass, request after request, and the first head it does not find
// framed beyond doubt ends the connection: the read that would deliver its
// last byte fails, and net/http answers "400 Bad Request" and closes. The
// bytes after it are never parsed as a request, and nothing of it reaches
// a handler, let alone an upstream.
//
// It refuses: Transfer-Encoding with Content-Length, Transfer-Encoding in
// HTTP/1.0, any transfer coding but a single "chunked", malformed or
// conflicting Content-Length, obs-fold, bare LF or CR, whitespace before a
// field name's colon, control bytes in field values and chunk extensions,
// request lines other than "METHOD SP target SP HTTP/1.x", chunk lines
// net/http would read otherwise, and heads longer than
// Options.MaxHeaderBytes.
//
// A request target longer than Options.MaxHeaderBytes is answered by the
// guard itself, "414 URI Too Long" (RFC 9112 Section 3; net/http has no
// such answer and would send 431 for the whole head), before the
// connection is closed: the read that meets it writes the answer, waits
// a moment for the client to close (lingerTimeout), closes, and fails, so
// net/http's own 400 goes nowhere. So is a head with more field lines
// than Options.MaxHeaderFields: "431 Request Header Fields Too Large"
// (RFC 6585 Section 5), before net/http has parsed the fields into its
// map (a trailer section over it fails the body's read instead).
//
// It keeps no copy of the client's bytes (a few dozen bytes of framing
// state per connection) and adds no reads of its own: it only looks at
// what net/http reads. It is not an HTTP/2 guard (see internal/h2guard).
package h1guard

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxHeaderBytes is the request head limit pqedge configures
// (limits.request_header).
const DefaultMaxHeaderBytes = 64 << 10

// DefaultMaxHeaderFields is the cap on a request head's field lines
// pqedge configures (limits.request_header_fields): under the byte limit
// alone a head holds 16,000 fields of four bytes, each a map entry and
// allocations in net/http and again in the upstream request. 100 is
// Apache's LimitRequestFields and Envoy's max_headers_count; HAProxy's
// tune.http.maxhdr is 101; nginx and Go count bytes only.
const DefaultMaxHeaderFields = 100

// answerTimeout bounds the write of the guard's own answer to a refused
// request (414): a client that does not read it holds the connection no
// longer.
const answerTimeout = 5 * time.Second

// lingerTimeout and lingerBytes bound what the guard reads of a refused
// request after its answer, so that closing does not reset the
// connection under the answer (linger): a well-behaved client closes as
// soon as it has read "Connection: close"; one that goes on sending is
// cut off after a second or 256 KiB.
const (
	lingerTimeout = time.Second
	lingerBytes   = 256 << 10
)

// headSlack lets net/http hit its own header limit first: it reads up to
// MaxHeaderBytes plus 4096 bytes, and a bufio buffer ahead.
const headSlack = 8 << 10

// Options configure Wrap.
type Options struct {
	// MaxHeaderBytes is the http.Server's MaxHeaderBytes; heads longer
	// than it (with slack) are refused, and a request target longer than
	// it is answered "414 URI Too Long" by the guard itself (RFC 9112
	// Section 3) where net/http would answer 431 for the whole head.
	// Default DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxHeaderFields caps the field lines of a request head, which is
	// answered "431 Request Header Fields Too Large" by the guard itself
	// (RFC 6585 Section 5) beyond it, and of a chunked body's trailer
	// section (400, through the body's read). Default
	// DefaultMaxHeaderFields; negative: no cap.
	MaxHeaderFields int
	// OnRefuse, if set, is called once per refused request with the kind
	// of mistake, on the goroutine reading the connection, for metrics.
	// The kind is one of a fixed set of phrases ("unsupported version",
	// "invalid byte in the method"...) and never carries the client's
	// bytes, so it is safe as a metric label; Error.Reason has the detail.
	OnRefuse func(kind string)
}

// Error is what a read of a refused request returns. net/http answers any
// such error with 400 and closes the connection (unless the guard answered
// and closed it first: 414).
type Error struct{ Reason string }

func (e *Error) Error() string { return "h1guard: refused request: " + e.Reason }

// RefusedReason is Reason. Through it the proxy tells a refusal that
// fails a request body mid-read (answered 400) from a client that left,
// without importing this package.
func (e *Error) RefusedReason() string { return e.Reason }

// Conn is an HTTP/1.x connection under watch.
type Conn struct {
	net.Conn
	onRefuse func(string)
	tunnel   atomic.Bool

	mu     sync.Mutex // guards p, err and answer (net/http reads from one goroutine at a time; Tunnel comes from another)
	p      parser
	err    error
	answer []byte // the guard's own response to the refused request, until written
}

// tlsConn is a Conn whose connection is a TLS one: it also offers
// ConnectionState, which net/http looks for to serve the connection as
// HTTPS (r.TLS).
type tlsConn struct{ *Conn }

type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

func (c tlsConn) ConnectionState() tls.ConnectionState {
	return c.Conn.Conn.(connectionStater).ConnectionState()
}

// HandshakeContext runs (or, as pqedge hands over connections already
// handshaken, returns at once) the TLS handshake, for net/http.
func (c tlsConn) HandshakeContext(ctx context.Context) error {
	if h, ok := c.Conn.Conn.(interface{ HandshakeContext(context.Context) error }); ok {
		return h.HandshakeContext(ctx)
	}
	return nil
}

// Wrap returns c under watch. If c is a TLS connection (it has
// ConnectionState, as *tls.Conn does), so is the result, and net/http
// serves it as HTTPS; NetConn returns c either way.
func Wrap(c net.Conn, opts Options) net.Conn {
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	switch {
	case opts.MaxHeaderFields == 0:
		opts.MaxHeaderFields = DefaultMaxHeaderFields
	case opts.MaxHeaderFields < 0:
		opts.MaxHeaderFields = 0
	}
	g := &Conn{Conn: c, onRefuse: opts.OnRefuse, p: parser{maxHead: opts.MaxHeaderBytes + headSlack, maxTarget: opts.MaxHeaderBytes, maxFields: opts.MaxHeaderFields}}
	if _, ok := c.(connectionStater); ok {
		return tlsConn{g}
	}
	return g
}

// Read reads from the connection and watches what it returns. Once a
// request is refused, it returns the bytes before the refused one, and
// then only the *Error.
func (c *Conn) Read(b []byte) (int, error) {
	if c.tunnel.Load() {
		return c.Conn.Read(b)
	}
	c.mu.Lock()
	if c.err != nil {
		err, answer := c.err, c.answer
		c.answer = nil
		c.mu.Unlock()
		return 0, c.refused(len(b), err, answer)
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(b)
	if c.tunnel.Load() {
		return n, err
	}
	c.mu.Lock()
	read, r := c.p.feed(b[:n])
	if r == nil {
		c.mu.Unlock()
		return n, err
	}
	c.err = &Error{Reason: r.reason}
	var own []byte
	if r.status != 0 {
		own = answer(r.status, r.reason)
	}
	if read > 0 {
		// The bytes before the refused one go to net/http; the
		// refusal, and the answer, to its next read.
		c.answer = own
	}
	refusal := c.err
	c.mu.Unlock()
	if c.onRefuse != nil {
		c.onRefuse(r.kind)
	}
	if read > 0 {
		return read, nil
	}
	return 0, c.refused(len(b), refusal, own)
}

// refused is the error of a read of n bytes after a refusal. answer, if
// any, is the guard's own response to the refused request, not yet written.
func (c *Conn) refused(n int, err error, answer []byte) error {
	if n == 1 && backgroundRead() {
		// net/http's background read, which watches for the client
		// leaving while a handler runs, reads one byte: the refusal
		// would cancel the request being served, which came before
		// the refused one and is innocent. It waits instead, until
		// net/http aborts it (a timeout it ignores) or the client
		// leaves; the refusal (and its answer, which must not cut into
		// the response being written) goes to the read of the next
		// request. A one-byte read is not always that one: bufio asks
		// for the last free byte of its 4 KiB buffer, as when a chunk
		// line fills it, and that read, for the request being refused,
		// must fail at once (it drained until request_body's 408,
		// found by trialK).
		if answer != nil {
			c.mu.Lock()
			c.answer = answer
			c.mu.Unlock()
		}
		return c.drain()
	}
	if answer != nil {
		c.answerAndClose(answer)
	}
	return err
}

// answer is the response the guard writes for a refusal of its own status,
// in proxy.WriteRefusal's wording: "414 URI Too Long: request target
// longer than 65536 bytes".
func answer(status int, reason string) []byte {
	phrase := http.StatusText(status)
	if status == http.StatusRequestURITooLong {
		phrase = "URI Too Long" // RFC 9110 Section 15.5.15; Go keeps RFC 2616's "Request URI Too Long"
	}
	body := fmt.Sprintf("%d %s: %s\n", status, phrase, reason)
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"X-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, phrase, len(body), body)
}

// answerAndClose writes the guard's answer to a refused request, reads
// what the client still sends for a moment, then closes the connection.
// Only net/http's read of a request head gets here (see refused), so no
// response is being written; net/http answers the failed read with its own
// 400, whose write then fails on the closed connection.
func (c *Conn) answerAndClose(answer []byte) {
	c.Conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	if _, err := c.Conn.Write(answer); err == nil {
		c.linger()
	}
	c.Conn.Close()
}

// linger reads and drops the rest of the refused request (a long target's
// tail, its fields) until the client closes, lingerTimeout passes or
// lingerBytes were read. Closed with those bytes unread, the connection
// would end in a TCP reset, which can make the client's stack discard the
// answer before its reader sees it (nginx's lingering_close, net/http's
// closeWriteAndWait for its 431).
func (c *Conn) linger() {
	c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	var scratch [4096]byte
	for read := 0; read < lingerBytes; {
		n, err := c.Conn.Read(scratch[:])
		if err != nil {
			return
		}
		read += n
	}
}

// backgroundRead reports whether the Read under way was called by
// net/http's connReader.backgroundRead: it reads from the connection
// itself, a frame or two up (tlsConn's promoted Read). Only reads after a
// refusal ask, so the stack walk costs nothing on the common path.
func backgroundRead() bool {
	var pcs [6]uintptr
	n := runtime.Callers(3, pcs[:]) // skip Callers, backgroundRead, Read
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if f.Function == "net/http.(*connReader).backgroundRead" {
			return true
		}
		if !more {
			return false
		}
	}
}

// drain reads and drops what the client sends after a refused request
// until a read fails: its deadline passes or the client leaves.
func (c *Conn) drain() error {
	var scratch [512]byte
	for {
		if _, err := c.Conn.Read(scratch[:]); err != nil {
			return err
		}
	}
}

// Tunnel stops the watch: from the next byte on the connection carries
// something other than HTTP/1.x (a 101 Switching Protocols, a 2xx to
// CONNECT). The hijacker calls it before it sends that answer; a client
// may send its first tunnelled byte only after receiving it.
func (c *Conn) Tunnel() { c.tunnel.Store(true) }

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Requests returns how many requests were read to their end.
func (c *Conn) Requests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.p.requests
}

// Unwrap returns the *Conn behind a connection Wrap returned, and whether
// there is one.
func Unwrap(c net.Conn) (*Conn, bool) {
	switch g := c.(type) {
	case *Conn:
		return g, true
	case tlsConn:
		return g.Conn, true
	}
	return nil, false
}
