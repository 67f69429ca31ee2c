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
// It keeps no copy of the client's bytes (a few dozen bytes of framing
// state per connection) and adds no reads of its own: it only looks at
// what net/http reads. It is not an HTTP/2 guard (see internal/h2guard).
package h1guard

import (
	"context"
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
)

// DefaultMaxHeaderBytes is the request head limit pqedge configures
// (limits.request_header).
const DefaultMaxHeaderBytes = 64 << 10

// headSlack lets net/http hit its own header limit first: it reads up to
// MaxHeaderBytes plus 4096 bytes, and a bufio buffer ahead.
const headSlack = 8 << 10

// Options configure Wrap.
type Options struct {
	// MaxHeaderBytes is the http.Server's MaxHeaderBytes; heads longer
	// than it (with slack) are refused. Default DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// OnRefuse, if set, is called once per refused request with the kind
	// of mistake, on the goroutine reading the connection, for metrics.
	// The kind is one of a fixed set of phrases ("unsupported version",
	// "invalid byte in the method"...) and never carries the client's
	// bytes, so it is safe as a metric label; Error.Reason has the detail.
	OnRefuse func(kind string)
}

// Error is what a read of a refused request returns. net/http answers any
// such error with 400 and closes the connection.
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

	mu  sync.Mutex // guards p and err (net/http reads from one goroutine at a time; Tunnel comes from another)
	p   parser
	err error
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
	g := &Conn{Conn: c, onRefuse: opts.OnRefuse, p: parser{maxHead: opts.MaxHeaderBytes + headSlack}}
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
		err := c.err
		c.mu.Unlock()
		if len(b) == 1 && backgroundRead() {
			// net/http's background read, which watches for the client
			// leaving while a handler runs, reads one byte: the refusal
			// would cancel the request being served, which came before
			// the refused one and is innocent. It waits instead, until
			// net/http aborts it (a timeout it ignores) or the client
			// leaves; the refusal goes to the read of the next request.
			// A one-byte read is not always that one: bufio asks for
			// the last free byte of its 4 KiB buffer, as when a chunk
			// line fills it, and that read, for the request being
			// refused, must fail at once (it drained until
			// request_body's 408, found by trialK).
			return 0, c.drain()
		}
		return 0, err
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(b)
	if c.tunnel.Load() {
		return n, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	read, r := c.p.feed(b[:n])
	if r == nil {
		return n, err
	}
	c.err = &Error{Reason: r.reason}
	if c.onRefuse != nil {
		c.onRefuse(r.kind)
	}
	if read > 0 {
		return read, nil
	}
	return 0, c.err
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
