package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
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

	// watch bounds the reads of an HTTP/2 stream's body (the transport
	// blocked writing upstream, the client held back by flow control, is
	// not a stalled read: see stallWatch); nil over HTTP/1.x and HTTP/3,
	// whose read deadline is the connection's or the QUIC stream's.
	watch *stallWatch
	// declared is the content-length of an HTTP/2 or HTTP/3 request, whose
	// end the read that completes it confirms (confirmEnd), when confirm
	// is set; not over HTTP/1.x, whose framing is the length itself.
	declared int64
	confirm  bool
	// trailers copies the client's trailers to the upstream request
	// when the body ends (to is nil: none to copy).
	trailers trailerCopy
	// req is the request whose Trailer the body's end fills (or, over
	// HTTP/1.1 without announced trailers, replaces: net/http assigns a
	// new map, on the goroutine reading the end); more than maxTrailers
	// fields in it fail the read of the end (errTooManyTrailers). 0: no
	// cap.
	req         *http.Request
	maxTrailers int

	mu sync.Mutex // guards the fields below
	n  int64      // bytes read
	// waited is the time reads have spent waiting on the client: the
	// minimum rate's clock. Time the upstream took before asking for
	// more (its own pauses, a late first read) is not the client's.
	waited time.Duration
	err    error // first read error other than io.EOF, before Close
	eof    bool
	closed bool
	armed  bool // a read deadline is set on the client's connection
	// due is that deadline, for the read under way (over HTTP/1.x and
	// HTTP/3; a stream's is its watch's).
	due time.Time
}

func (b *clientBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	began := time.Now()
	b.armDeadlineLocked(began)
	before, due := b.n, b.due
	b.mu.Unlock()

	n, err := b.body.Read(p)
	if err != nil && err != io.EOF && !due.IsZero() && !time.Now().Before(due) {
		err = stalledRead{err}
	}
	if b.confirm && before+int64(n) >= b.declared && (err != io.EOF || before+int64(n) > b.declared) {
		switch {
		case before+int64(n) > b.declared:
			// net/http and quic-go never return bytes past the
			// length; a body that does is just as malformed.
			err = errBodyTooLong
		case err == nil:
			err = b.confirmEnd()
		}
		if err != io.EOF {
			// Hold back the bytes that would complete the body: the
			// upstream must not receive a whole request the client's
			// stream then contradicts (quic-go returns them with its
			// error).
			n = 0
		}
	}
	if err == io.EOF && b.maxTrailers > 0 && fieldCount(b.req.Trailer) > b.maxTrailers {
		// Held back like a body that contradicts its length: the
		// upstream must not receive the request whole.
		err, n = errTooManyTrailers, 0
	}
	var took time.Duration
	if b.minRate > 0 {
		took = time.Since(began) // the one clock read the rate adds
	}

	if b.watch != nil {
		b.watch.end()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += int64(n)
	b.waited += took
	switch {
	case err == io.EOF:
		b.eof = true
		if b.trailers.to != nil {
			b.trailers.copy()
		}
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

// stalledRead is the error of a read of the body that failed once its
// deadline had passed: the client stalled, whatever net/http made of the
// connection's timeout. A chunked body whose trailer section (or the empty
// line that ends it) stops arriving fails with net/http's "suspiciously
// long trailer after chunked body": net/http peeks ahead for the
// section's end and takes a failed peek for a trailer too long to see
// it, and the client, who stalled, was answered 400 as malformed instead
// of 408. It is a net.Error whose Timeout is true; errors.As still finds
// what it wraps (an h1guard refusal is still answered as one).
type stalledRead struct{ err error }

func (e stalledRead) Error() string   { return "request body stalled: " + e.err.Error() }
func (e stalledRead) Unwrap() error   { return e.err }
func (e stalledRead) Timeout() bool   { return true }
func (e stalledRead) Temporary() bool { return false }

// errBodyTooLong fails a request body that goes on past its
// Content-Length.
var errBodyTooLong = errors.New("request body longer than its Content-Length")

// errTooManyTrailers fails a request body whose trailer section has more
// fields than HTTPOptions.MaxRequestHeaderFields.
var errTooManyTrailers = errors.New("request trailer section has too many fields")

// maxEmptyReads bounds the reads confirmEnd accepts that return neither a
// byte nor an error (io.Reader allows them, discouraged).
const maxEmptyReads = 16

// confirmEnd reads past the last byte of a stream's body that its
// Content-Length announced, and returns io.EOF if the stream ends there
// (END_STREAM, FIN, or trailers). A request whose DATA does not add up to
// its content-length is malformed (RFC 9113 Section 8.1.1, RFC 9114
// Section 4.1.2) and an intermediary must not forward it; but the stream's
// next frame arrives after the bytes that complete the length, which the
// transport would already have written upstream as a whole request, and
// an upstream that answered it was answered to the client too. So the
// read that completes the length waits for the stream's end, under the
// same deadline, and fails with errBodyTooLong (or the stream's error:
// net/http and quic-go reset a stream whose DATA exceeds its
// content-length) instead of completing the body.
func (b *clientBody) confirmEnd() error {
	var one [1]byte
	for range maxEmptyReads {
		k, err := b.body.Read(one[:])
		switch {
		case k > 0:
			return errBodyTooLong
		case err != nil:
			return err
		}
	}
	return io.ErrNoProgress
}

// confirmEmpty reads the body of a stream that declared content-length 0
// but did not end with its headers, and returns nil once the stream ends
// without DATA, or the read's error (kept for readErr). Such a request is
// forwarded without a body, so that end must be seen before the request
// goes upstream: otherwise a DATA frame after it makes a malformed
// request (RFC 9113 Section 8.1.1) whose upstream's answer already went
// to the client.
func (b *clientBody) confirmEmpty() error {
	var one [1]byte
	if _, err := b.Read(one[:]); err != io.EOF {
		return err
	}
	return nil
}

// readWhole reads a body of the declared length, at most PreReadBody, to
// its stream's end (confirmEnd, under the same deadlines as any read),
// and returns it; or the read's error: a body cut short (END_STREAM, FIN
// or trailers before the length), one longer than its length, a stall.
func (b *clientBody) readWhole() ([]byte, error) {
	buf := make([]byte, b.declared)
	if _, err := io.ReadFull(b, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// armDeadlineLocked sets the read deadline for the next read: the stall
// timeout from now, or sooner if the body is behind the minimum rate
// (Apache's mod_reqtimeout MinRate). The rate is counted over the time
// reads waited on the client (waited), not from the request's start: an
// upstream that began to read the body late, or paused, made pqedge
// wait, not the client, and counting that time answered a client that
// sent at full speed 408.
func (b *clientBody) armDeadlineLocked(now time.Time) {
	if b.ctl == nil || b.stall <= 0 {
		return
	}
	dl := now.Add(b.stall)
	if b.minRate > 0 {
		credit := time.Duration(float64(b.n) / float64(b.minRate) * float64(time.Second))
		if byRate := now.Add(b.stall + credit - b.waited); byRate.Before(dl) {
			dl = byRate
		}
	}
	if b.watch != nil {
		b.watch.begin(dl)
		return
	}
	if b.ctl.SetReadDeadline(dl) == nil {
		b.armed, b.due = true, dl
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
	if b.watch != nil {
		b.watch.release() // no read of a closed body is ended
	}
	return b.body.Close()
}

// finish runs when the handler returns. A body the upstream did not read
// to the end is discarded by net/http after the handler (HTTP/1.1); a
// deadline keeps that discard as bounded as the reads were. A stream's
// watch lets go of the request (the body may never have been closed: one
// read whole is sent upstream from a copy).
func (b *clientBody) finish() {
	if b.watch != nil {
		b.watch.release()
	}
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

// refusedRequest is the error a guard below net/http fails a read with
// when the client's framing is malformed (internal/h1guard's *Error, which
// proxy cannot import: h1guard's tests use proxy).
type refusedRequest interface {
	error
	RefusedReason() string
}

// clientStatus is the answer to a request whose body could not be read.
// http1 is whether the request came over HTTP/1.x.
func clientStatus(bodyErr error, clientGone, http1 bool) (int, string) {
	var ne net.Error
	var mbe *http.MaxBytesError
	var refused refusedRequest
	var reset *quic.StreamError
	switch {
	case errors.As(bodyErr, &reset) && reset.Remote:
		// An HTTP/3 client reset its request stream (RESET_STREAM,
		// RFC 9114 Section 4.1.1: H3_REQUEST_CANCELLED, or any code):
		// it abandoned the request as an HTTP/2 client does with
		// RST_STREAM, but quic-go cancels the request's context only
		// when the client stops reading too (STOP_SENDING), so the
		// read's error is all that says so. It was logged 400 as a
		// malformed body.
		return StatusClientClosedRequest, "client closed the request"
	case errors.As(bodyErr, &refused):
		// h1guard refused a chunk line mid-body. net/http then marks the
		// connection broken and cancels the request's context, which
		// looks like a client that left; but the client is still there,
		// waiting for an answer, and this one is its to read (a 499 on
		// the wire helps nobody).
		return http.StatusBadRequest, "malformed request body: " + refused.RefusedReason()
	case errors.Is(bodyErr, errBodyTooLong):
		return http.StatusBadRequest, errBodyTooLong.Error()
	case errors.Is(bodyErr, errTooManyTrailers):
		return http.StatusBadRequest, errTooManyTrailers.Error()
	case errors.As(bodyErr, &ne) && ne.Timeout():
		return http.StatusRequestTimeout, "request body too slow"
	case errors.As(bodyErr, &mbe):
		return http.StatusRequestEntityTooLarge, "request body too large"
	case errors.Is(bodyErr, io.ErrUnexpectedEOF) && (http1 || clientGone), errors.Is(bodyErr, net.ErrClosed):
		// Over HTTP/1.x the connection ended mid-body. Over HTTP/3 an
		// unexpected EOF with the request still alive is a client that
		// ended its request stream (FIN) short of its Content-Length
		// and waits for the answer: a malformed body, below.
		return StatusClientClosedRequest, "client closed the request"
	case clientGone && (!http1 || bodyErr == nil || errors.As(bodyErr, &ne)):
		return StatusClientClosedRequest, "client closed the request"
	}
	// Over HTTP/1.x a cancelled request does not mean the client left:
	// net/http cancels it whenever a read of the connection fails,
	// h1guard's refusal of bytes it only peeked at included (the end of
	// a trailer section), and then reports its own parse error for the
	// body ("suspiciously long trailer after chunked body", "malformed
	// MIME header line"). A client that left shows in the body's error
	// as an unexpected EOF or a failed read of the connection (a
	// net.Error); anything else is its malformed body.
	return http.StatusBadRequest, "malformed request body"
}

// StatusClientClosedRequest is logged for requests whose client went away
// before the answer (nginx's 499); nobody receives it.
const StatusClientClosedRequest = 499

// slackDivisor sets how lazily idle deadlines move: a deadline of timeout
// from the last read or write is moved forward only once timeout/16 of it
// has passed, so a busy connection updates its deadline a few times per
// timeout instead of before every read and write (each update is a timer
// change in the runtime, and on an HTTP/2 stream a message to the
// connection's goroutine and a timer allocation), while a stall still
// fails after between 15/16 of the timeout and all of it.
const slackDivisor = 16

// idleDeadline is one direction's deadline that follows the I/O: "no
// progress for timeout" rather than a fixed end.
type idleDeadline struct {
	until time.Time // the deadline set last; zero: none
}

// next returns the deadline to set before an I/O at now, and false when
// the one set is recent enough to keep.
func (d *idleDeadline) next(now time.Time, timeout time.Duration) (time.Time, bool) {
	if !d.until.IsZero() && d.until.Sub(now) >= timeout-timeout/slackDivisor {
		return time.Time{}, false
	}
	d.until = now.Add(timeout)
	return d.until, true
}

// writeDeadline wraps the client's ResponseWriter so that every write and
// flush of the response must complete within timeout (see slackDivisor):
// a client that stops reading (slow read) fails the write instead of
// holding the upstream connection and the copy buffers. A hijacked
// connection (WebSocket) keeps the same bound on each write.
type writeDeadline struct {
	http.ResponseWriter
	ctl     *http.ResponseController
	timeout time.Duration
	// watch bounds each write of an HTTP/2 stream's response (see
	// stallWatch); nil over HTTP/1.x and HTTP/3, where the deadline is
	// the connection's (or the QUIC stream's), which fails only a write
	// under way, and must be cleared.
	watch    *stallWatch
	deadline idleDeadline
	wrote    bool // a status or body was written (set on the handler's goroutine)
	// own, if set, keeps an upstream's copies of pqedge's own fields out
	// of the interim (1xx) responses ReverseProxy relays: it adds the
	// upstream's fields to the client's header map, pqedge's among them,
	// and writes the map. A write that fails cuts its response short
	// there (reqState.cutShort).
	own *reqState
}

var _ http.Flusher = (*writeDeadline)(nil)

// stallWatch ends an HTTP/2 stream's read or write that has waited a
// whole timeout. net/http's read or write deadline on an HTTP/2 stream is
// a timer that ends the stream when it fires, whether or not a read or
// write is waiting: set during a write and left in place, it reset a
// response whose upstream merely paused longer than the timeout between
// two writes (a slow origin, server-sent events with sparse heartbeats)
// while the client read everything; set during a read of the body, it
// failed a body whose upstream paused reading it, and blamed the client
// with 408. So the stream gets a deadline, one already past (which ends
// it at once and fails the blocked I/O with os.ErrDeadlineExceeded), only
// when one I/O has been blocked until its own deadline; the pauses between
// them are the upstream's, bounded by UpstreamIdleTimeout.
//
// The watch lets go of the request when it is released (the handler
// returned, or the body was closed). Stopping its timer is not enough: Go
// keeps a stopped time.AfterFunc timer, and what its function reaches, in
// the timer heap of the P that started it until the timer reaches the
// heap's head or tail, at the latest its deadline (golang/go#75935,
// unfixed in Go 1.27.4; see internal/server's quicIdle). Through ctl that
// was the whole request, its ResponseWriter and its body, and through the
// body the HTTP/2 connection, for up to timeouts.response_write or
// request_body after the request ended. What a stopped timer holds now is
// the stallWatch alone (64 bytes).
//
// A stallWatch is allocated apart from the request it watches (newStallWatch),
// since the timer's function reaching any field of the request would keep
// the whole request. Its methods are safe for concurrent use.
type stallWatch struct {
	read bool       // the I/O watched is the body's (read deadline), else the response's
	mu   sync.Mutex // guards the fields below
	// ctl is the stream's controller until the watch is released, nil
	// after: the timer's function reaches the request only through here.
	ctl   *http.ResponseController
	timer *time.Timer // runs fire; nil until the first I/O
	busy  bool        // an I/O is under way
	// due: when the I/O under way has waited the whole timeout. The
	// timer of the I/O before may run fire after this one began (Stop
	// cannot recall a callback already started); it finds due ahead and
	// leaves this I/O alone.
	due time.Time
}

// newStallWatch returns a watch over the reads (read) or writes of ctl's
// stream.
func newStallWatch(ctl *http.ResponseController, read bool) *stallWatch {
	return &stallWatch{ctl: ctl, read: read}
}

// begin starts watching one I/O, due at due. It does nothing once the
// watch is released.
func (s *stallWatch) begin(due time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctl == nil {
		return
	}
	s.busy, s.due = true, due
	if s.timer == nil {
		s.timer = time.AfterFunc(time.Until(due), s.fire)
		return
	}
	s.timer.Reset(time.Until(due))
}

// end stops the watch once the I/O returned; a fire that runs late finds
// busy false, or the next I/O's due ahead, and leaves the stream alone.
func (s *stallWatch) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.busy = false
}

// release stops the watch for good and lets go of the stream (see
// stallWatch).
func (s *stallWatch) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.ctl, s.busy = nil, false
}

// fire runs on the timer's goroutine when an I/O has waited until its
// deadline: the client stopped reading, or stopped sending its body.
func (s *stallWatch) fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.busy || s.ctl == nil || time.Now().Before(s.due) {
		return
	}
	if s.read {
		s.ctl.SetReadDeadline(time.Unix(1, 0))
	} else {
		s.ctl.SetWriteDeadline(time.Unix(1, 0))
	}
}

func (w *writeDeadline) arm() {
	if dl, ok := w.deadline.next(time.Now(), w.timeout); ok {
		w.ctl.SetWriteDeadline(dl)
	}
}

func (w *writeDeadline) WriteHeader(code int) {
	if code >= 100 && code < 200 && w.own != nil {
		w.own.keepOwnHeaders(w.ResponseWriter.Header())
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *writeDeadline) Write(p []byte) (int, error) {
	w.wrote = true
	if w.watch != nil {
		w.watch.begin(time.Now().Add(w.timeout))
		defer w.watch.end()
	} else {
		w.arm()
	}
	n, err := w.ResponseWriter.Write(p)
	if err != nil && w.own != nil {
		w.own.cutShort(err, true)
	}
	return n, err
}

func (w *writeDeadline) FlushError() error {
	if w.watch != nil {
		w.watch.begin(time.Now().Add(w.timeout))
		defer w.watch.end()
	} else {
		w.arm()
	}
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
// clears an HTTP/1.x connection's: net/http sets no write deadline of its
// own, so one left on the connection would fail the next request's
// response. An HTTP/2 stream has none left (stallWatch).
func (w *writeDeadline) finish() {
	if w.watch != nil {
		defer w.watch.release()
	}
	if !w.wrote {
		return // hijacked, or answered elsewhere: nothing of ours is buffered
	}
	w.FlushError()
	if w.watch == nil && !w.deadline.until.IsZero() {
		w.ctl.SetWriteDeadline(time.Time{})
	}
}

// writeIdleConn bounds each write on a hijacked client connection.
type writeIdleConn struct {
	net.Conn
	timeout  time.Duration
	deadline idleDeadline
}

func (c *writeIdleConn) Write(b []byte) (int, error) {
	if dl, ok := c.deadline.next(time.Now(), c.timeout); ok {
		if err := c.Conn.SetWriteDeadline(dl); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(b)
}

// deadlineConn is an upstream connection whose reads and writes each must
// make progress within timeout (see slackDivisor): an idle timeout per
// direction, where a write's progress counts for reads too (the upstream
// answers once it has the request). Reads come from the transport's read
// loop and writes from its write loop, so each direction's deadline has
// one goroutine.
type deadlineConn struct {
	net.Conn
	timeout       time.Duration
	origin        *HandshakeFacts // the TLS handshake of an https:// upstream; read-only
	read, written idleDeadline
	// received counts the bytes read from the upstream (after TLS), so
	// that a request's error handler can tell an upstream that answered,
	// or began to, before it closed from one that closed without a word
	// (reqState.upstreamSpoke); answered is set when a write failed with
	// bytes from the upstream still unread in the socket (bytesWaiting),
	// which the transport's close then throws away.
	received atomic.Int64
	answered atomic.Bool
	// framer follows the responses, so that what the upstream sends past
	// the end of one is withheld from the transport (errUnsolicited):
	// once that happened, reads and writes fail with failed, and
	// unsolicited is called once (on the transport's read loop).
	framer      responseFramer
	failed      atomic.Pointer[error]
	unsolicited func(err error)
}

func (c *deadlineConn) Read(b []byte) (int, error) {
	if err := c.failed.Load(); err != nil {
		return 0, *err
	}
	if dl, ok := c.read.next(time.Now(), c.timeout); ok {
		if err := c.Conn.SetReadDeadline(dl); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.received.Add(int64(n))
		if k := c.framer.consume(b[:n]); k < n {
			// The bytes past the response's end never reach the
			// transport: it would read them as the next request's
			// response (errUnsolicited says why). A head or trailer
			// section over the field cap fails the read that gets to
			// the field over it, so the transport parses no more of it
			// and fails the round trip (or the body) with the fault,
			// which the request's error handler counts.
			fail := c.framer.failure()
			if fail == nil {
				fail = fmt.Errorf("%w: %d bytes, beginning %q", errUnsolicited, n-k, b[k:min(n, k+24)])
				if c.unsolicited != nil {
					c.unsolicited(fail)
				}
			}
			c.failed.Store(&fail)
			if k == 0 {
				return 0, fail
			}
			return k, nil
		}
	}
	return n, err
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	if err := c.failed.Load(); err != nil {
		// Nothing of the request is written, so the transport retries a
		// replayable one on another connection.
		return 0, *err
	}
	if dl, ok := c.written.next(time.Now(), c.timeout); ok {
		if err := c.Conn.SetWriteDeadline(dl); err != nil {
			return 0, err
		}
		// The read loop waits for the response from the moment the
		// request starts, but while its body is still being written the
		// upstream has nothing to answer: a write that progresses moves
		// the read deadline too. Without it a client uploading within
		// request_body and its minimum rate for longer than the timeout
		// failed the read and had the upstream blamed (502, counted
		// toward ejection). The read loop's own record (c.read) is left
		// alone: it only makes Read move the deadline a little sooner.
		if err := c.Conn.SetReadDeadline(dl); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Write(b)
	if err != nil && bytesWaiting(c.Conn) {
		c.answered.Store(true)
	}
	return n, err
}

// CloseWrite half-closes the upstream connection when the underlying
// connection can (TCP and unix both can).
func (c *deadlineConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
