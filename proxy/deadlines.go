package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// clientBody is the client's request body as the transport reads it while
// sending it upstream. Before every read it sets the read deadline of the
// client's connection (HTTP/1.1) or stream (HTTP/2) through
// http.ResponseController, so a body that stalls, or trickles below the
// minimum rate, fails the read instead of pinning an upstream connection;
// and it remembers why a read failed, so the error handler answers the
// client (400, 408, 413, 499) without counting it against the upstream.
type clientBody struct {
	body    io.ReadCloser
	ctl     *http.ResponseController
	stall   time.Duration // no byte for this long fails the read
	minRate int64         // bytes per second after the first stall period; 0: none
	start   time.Time

	mu     sync.Mutex // guards the fields below
	n      int64      // bytes read
	err    error      // first read error other than io.EOF, before Close
	eof    bool
	closed bool
	armed  bool // a read deadline is set on the client's connection
}

func (b *clientBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	b.armDeadlineLocked()
	b.mu.Unlock()

	n, err := b.body.Read(p)

	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += int64(n)
	switch {
	case err == io.EOF:
		b.eof = true
		// net/http starts its background read of the connection once
		// the body is done: a deadline left set would end it, and with it
		// the request, while the response is still streaming.
		b.clearDeadlineLocked()
	case err != nil && b.err == nil && !b.closed:
		// An error after Close is the transport giving up on the upstream,
		// not the client's doing.
		b.err = err
	}
	return n, err
}

// armDeadlineLocked sets the read deadline for the next read: the stall
// timeout from now, or sooner if the body is behind the minimum rate
// (Apache's mod_reqtimeout MinRate, counted from the request's start).
func (b *clientBody) armDeadlineLocked() {
	if b.ctl == nil || b.stall <= 0 {
		return
	}
	dl := time.Now().Add(b.stall)
	if b.minRate > 0 {
		credit := time.Duration(float64(b.n) / float64(b.minRate) * float64(time.Second))
		if byRate := b.start.Add(b.stall + credit); byRate.Before(dl) {
			dl = byRate
		}
	}
	if b.ctl.SetReadDeadline(dl) == nil {
		b.armed = true
	}
}

func (b *clientBody) clearDeadlineLocked() {
	if b.armed {
		b.ctl.SetReadDeadline(time.Time{})
		b.armed = false
	}
}

func (b *clientBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.body.Close()
}

// finish runs when the handler returns. A body the upstream did not read
// to the end is discarded by net/http after the handler (HTTP/1.1); a
// deadline keeps that discard as bounded as the reads were.
func (b *clientBody) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctl == nil || b.eof || b.stall <= 0 || !b.armed {
		return
	}
	b.ctl.SetReadDeadline(time.Now().Add(b.stall))
}

// readErr returns the error reading the body failed with, or nil.
func (b *clientBody) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// clientStatus is the answer to a request whose body could not be read.
func clientStatus(bodyErr error, clientGone bool) (int, string) {
	var ne net.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(bodyErr, &ne) && ne.Timeout():
		return http.StatusRequestTimeout, "request body too slow"
	case errors.As(bodyErr, &mbe):
		return http.StatusRequestEntityTooLarge, "request body too large"
	case clientGone, errors.Is(bodyErr, io.ErrUnexpectedEOF), errors.Is(bodyErr, net.ErrClosed):
		return StatusClientClosedRequest, "client closed the request"
	}
	return http.StatusBadRequest, "malformed request body"
}

// StatusClientClosedRequest is logged for requests whose client went away
// before the answer (nginx's 499); nobody receives it.
const StatusClientClosedRequest = 499

// writeDeadline wraps the client's ResponseWriter so that every write and
// flush of the response must complete within timeout: a client that stops
// reading (slow read) fails the write instead of holding the upstream
// connection and the copy buffers. A hijacked connection (WebSocket) keeps
// the same bound on each write.
type writeDeadline struct {
	http.ResponseWriter
	ctl     *http.ResponseController
	timeout time.Duration
	wrote   bool // a status or body was written (set on the handler's goroutine)
}

var _ http.Flusher = (*writeDeadline)(nil)

func (w *writeDeadline) arm() { w.ctl.SetWriteDeadline(time.Now().Add(w.timeout)) }

func (w *writeDeadline) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *writeDeadline) Write(p []byte) (int, error) {
	w.wrote = true
	w.arm()
	return w.ResponseWriter.Write(p)
}

func (w *writeDeadline) FlushError() error {
	w.arm()
	return w.ctl.Flush()
}

func (w *writeDeadline) Flush() { w.FlushError() }

func (w *writeDeadline) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := w.ctl.Hijack()
	if err != nil {
		return nil, nil, err
	}
	// ReverseProxy hijacks only to answer 101: from here the connection
	// carries another protocol, so a guard watching it for HTTP/1.x
	// framing (internal/h1guard) must stop, before the client hears 101.
	if t, ok := c.(interface{ Tunnel() }); ok {
		t.Tunnel()
	}
	w.wrote = false
	return &writeIdleConn{Conn: c, timeout: w.timeout}, brw, nil
}

// Unwrap lets http.ResponseController reach the rest of the writer.
func (w *writeDeadline) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish flushes what the handler left buffered under the deadline, then
// clears it: net/http sets no write deadline of its own, so one left on an
// HTTP/1.1 connection would fail the next request's response.
func (w *writeDeadline) finish() {
	if !w.wrote {
		return // hijacked, or answered elsewhere: nothing of ours is buffered
	}
	w.FlushError()
	w.ctl.SetWriteDeadline(time.Time{})
}

// writeIdleConn bounds each write on a hijacked client connection.
type writeIdleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *writeIdleConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
