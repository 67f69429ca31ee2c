// Package h2guard gives an HTTP/2 connection a bounded cost: it watches
// the frames a client sends and the server answers, below net/http's
// HTTP/2 server, and closes the connection when the client abuses the
// protocol (issue 12, kinds 4 and 7).
//
// Go 1.27's HTTP/2 server already limits a connection's concurrent streams
// and closes one whose reset streams pile up in its queue of handlers not
// yet started (4x MaxConcurrentStreams, "too_many_early_resets"), and it
// bounds the size of a header block. What it does not bound, and h2guard
// does:
//
//   - the rate of cheap frames that cost the server work: RST_STREAM after
//     HEADERS (rapid reset, CVE-2023-44487: each reset stream still starts
//     a handler, and with it a request to an upstream), empty CONTINUATION
//     frames (CVE-2024-27316) and empty (or padding-only) DATA frames that
//     end nothing (CVE-2019-9518). More than Options.MaxGlitches of them
//     within Options.GlitchWindow close the connection;
//   - in the same budget, the streams the server resets because of what
//     the client sent (MadeYouReset, CVE-2025-8671): a WINDOW_UPDATE of 0,
//     DATA after END_STREAM or beyond content-length, invalid or
//     connection-specific header fields, a stream depending on itself.
//     The client sends no RST_STREAM, the server does; each such
//     RST_STREAM net/http writes with an error code that blames the
//     client (not NO_ERROR, INTERNAL_ERROR or CANCEL) counts, but for
//     REFUSED_STREAM on streams the client opened before it acknowledged
//     the server's SETTINGS (up to EarlyRefusals). A stream rejected for its headers never reaches a handler; one reset later
//     has its handler's context cancelled, and with it the upstream
//     request;
//   - the rate of frames that carry no request: SETTINGS (each
//     acknowledged, CVE-2019-9515), PING (each answered, CVE-2019-9512),
//     PRIORITY (CVE-2019-9513), PRIORITY_UPDATE (RFC 9218), WINDOW_UPDATE,
//     GOAWAY, PUSH_PROMISE and frames of unknown type (ignored, RFC 9113
//     Section 5.5, but each still read). Within Options.GlitchWindow a
//     client may send Options.MaxControlFrames of them, plus
//     ControlPerStream for each header block it began and
//     ControlPerDataFrame for each DATA frame of at least MinDataFrame the
//     server sent it and for each ControlDataBytes of their payload (a
//     client's WINDOW_UPDATEs follow the data it reads, possibly windows
//     later: what it earned and did not spend carries over, up to
//     CreditCeiling); one more closes the connection;
//   - in a count of its own with the same limit, the requests the server
//     answered itself with an error, without an upstream (Conn.Refused):
//     an unknown path, a refused method or path, a misdirected request.
//     Each is a valid request that costs the server a handler, a
//     response and a log line, and the client one HEADERS frame;
//   - the size of a header block's fragments: a HEADERS or CONTINUATION
//     frame that does not end its block and carries less than
//     MinHeaderFragment counts like an empty CONTINUATION, so a valid
//     request sent a byte a frame is a glitch per byte;
//   - the answers a client asks for and does not read: a new stream's
//     HEADERS or RST_STREAM, a PING's or SETTINGS frame's ACK. More than
//     MaxBacklog of them not yet written close the connection, before
//     net/http's own queue limit closes it uncounted;
//   - the time a header block may take: from the first byte of its HEADERS
//     frame to the end of the frame with END_HEADERS, at most
//     Options.HeaderTimeout (the server's read_header), where net/http
//     would wait for its idle timeout. A frame header begun and not
//     finished is bounded the same way.
//
// It reads only frame headers (RFC 9113 Section 4.1) as net/http reads
// and writes them, and a RST_STREAM's error code, and buffers nothing
// beyond those 9 and 4 bytes.
//
// # Closing
//
// An abusive connection is read no further at once. It is then sent a
// GOAWAY with ENHANCE_YOUR_CALM (RFC 9113 Sections 5.4.1 and 7) naming the
// highest stream the client opened, and closed: the TCP connection under
// the TLS one, without close_notify. The GOAWAY goes out only where the
// mechanism allows it: after net/http's SETTINGS (the server's preface,
// RFC 9113 Section 3.4), between two of its frames (not mid-frame) and
// within GoAwayTimeout, so a client that stopped reading, or a write
// under way that does not finish, has its connection closed without one.
// The connection costs at most GoAwayTimeout more and reads nothing more.
package h2guard

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// Defaults applied to zero fields of Options.
const (
	// DefaultHeaderTimeout is pqedge's timeouts.read_header default.
	DefaultHeaderTimeout = 10 * time.Second
	// DefaultMaxGlitches and DefaultGlitchWindow leave a browser room to
	// cancel every image of a page it navigates away from, several times
	// over, and close a rapid-reset client within its first few
	// milliseconds.
	DefaultMaxGlitches  = 200
	DefaultGlitchWindow = 10 * time.Second

	// DefaultMaxControlFrames is the control frames a connection may send
	// per window with no request to show for them. Browsers and curl send
	// a handful at connection start (SETTINGS, its ACK, a connection
	// WINDOW_UPDATE; Firefox some PRIORITY frames) and keep-alive PINGs
	// seconds apart; a flood sends thousands a second.
	DefaultMaxControlFrames = 1000
	// ControlPerStream is the control frames each header block the client
	// begins adds to its allowance: PRIORITY or PRIORITY_UPDATE frames
	// as a browser reprioritises a request, a WINDOW_UPDATE for its body.
	ControlPerStream = 10
	// ControlPerDataFrame is the control frames each DATA frame the
	// server sends adds, and each ControlDataBytes of their payload: a
	// client returns flow-control credit as it reads, two WINDOW_UPDATEs
	// at a time (stream and connection, RFC 9113 Section 6.9), and a BDP
	// probe may add a PING.
	ControlPerDataFrame = 4
	// ControlDataBytes is the DATA payload that counts as one more DATA
	// frame for the allowance. A client that takes large frames (Go's
	// transport advertises SETTINGS_MAX_FRAME_SIZE 1 MiB, so one Write
	// of a big body goes out in 1 MiB frames) returns credit per read,
	// not per frame: Go's transport sends a stream and a connection
	// WINDOW_UPDATE whenever 4 KiB or more were read (inflowMinRefresh,
	// net/http/internal/http2/flow.go), ~512 per MiB read in 4 KiB
	// pieces, where one frame's allowance is 4.
	ControlDataBytes = 4 << 10
	// MinDataFrame is the payload a DATA frame the server sends needs to
	// earn ControlPerDataFrame; a smaller one earns only its bytes' share.
	// A client that keeps its window tiny and returns each byte as it
	// arrives makes the server write a frame (a TLS record, a syscall) per
	// byte, the data dribble of CVE-2019-9511; with a per-frame share its
	// WINDOW_UPDATEs paid for themselves. Browsers, curl, nghttp2 and Go
	// return credit per bytes read (half a window, or 4 KiB), so the small
	// frames of a streamed response (server-sent events) earn them
	// nothing they need.
	MinDataFrame = 1 << 10
	// CreditCeiling is the most control frames that earned allowance
	// carries into a later window. A client owes late credit only for
	// data it holds unread, at most its flow-control windows: Go's
	// transport returns 2 WINDOW_UPDATEs per 4 KiB read, so this covers
	// 32 MiB held unread (eight of its 4 MiB stream windows); browsers
	// return credit per half window, far fewer. Without it, a client that
	// had downloaded 1 GiB could send half a million PINGs at once.
	CreditCeiling = 16384
	// MinHeaderFragment is the payload a HEADERS or CONTINUATION frame
	// that does not end its header block must carry not to count like an
	// empty CONTINUATION. Clients split a header block only at their
	// frame size, at least 16,384 bytes (RFC 9113 Section 4.2); a block
	// sent a byte a frame (a valid request all the same) costs the server
	// a frame read per byte.
	MinHeaderFragment = 1 << 10
	// EarlyRefusals is how many streams the server may refuse with
	// REFUSED_STREAM, over its SETTINGS_MAX_CONCURRENT_STREAMS, before the
	// client acknowledged the SETTINGS frame that announced the limit,
	// without blaming it: until then the client may take the limit as
	// unlimited (RFC 9113 Sections 5.1.2 and 6.5.2), and net/http refuses
	// such streams for the client to retry. Beyond it, a client that never
	// acknowledges is refused at the cost of a reset each, and counts.
	EarlyRefusals = 1000
	// GoAwayTimeout bounds each of the two waits of an abusive
	// connection's close: for a write of net/http's under way to finish
	// and the GOAWAY to be written (a client that does not read fills
	// the socket's send buffer), then, with the GOAWAY sent, for the
	// client to read it while what it still sends is thrown away
	// unread. Nothing is handed to net/http meanwhile.
	GoAwayTimeout = 250 * time.Millisecond
)

// errCodeEnhanceYourCalm is the GOAWAY code of a connection closed for
// abuse (RFC 9113 Section 7: "the endpoint detected that its peer is
// exhibiting a behavior that might be generating excessive load").
const errCodeEnhanceYourCalm = 0xb

// Reasons given to Options.OnAbuse.
const (
	ReasonRapidReset    = "rapid_reset"    // too many RST_STREAM frames
	ReasonEmptyFrames   = "empty_frames"   // too many empty CONTINUATION or DATA frames
	ReasonHeaderTimeout = "header_timeout" // a header block or frame header took too long
	ReasonProvokedReset = "provoked_reset" // too many streams the server reset for the client's errors
	ReasonControlFrames = "control_frames" // too many frames that carry no request
	// ReasonRefusedRequests: too many requests the server answered
	// itself with an error (Conn.Refused).
	ReasonRefusedRequests = "refused_requests"
	// ReasonBacklog: more than MaxBacklog answers the client asked for
	// (a new stream's, a PING's or a SETTINGS frame's) were not yet
	// written (Conn.backlog).
	ReasonBacklog = "backlog"
)

// MaxBacklog is the most frames the server may owe the client unwritten
// (its streams' answers, ACKs of its PINGs and SETTINGS; every HEADERS,
// RST_STREAM or ACK the server writes pays one, and so does each
// RST_STREAM the client sends: a cancelled stream is owed nothing). A client that does not
// read what it asks for, or asks faster than the server can write, grows
// net/http's queue of frames to send: net/http closes the connection
// once 10,000 control frames wait (maxQueuedControlFrames), itself, and
// nothing counts the close. Those queued frames are the resets it owes
// for streams it refused or the client broke, and ACKs, which the guard
// counts only once written (provoked resets), or not at all; so a flood
// whose answers net/http could not write as fast as it read it was
// closed uncounted. An ordinary client has at most its concurrent
// streams (250) and a few PINGs waiting. A negative
// Options.MaxGlitches turns this check off too.
const MaxBacklog = 2000

// Options configure Wrap. Zero fields take the defaults.
type Options struct {
	HeaderTimeout time.Duration
	// MaxGlitches is how many RST_STREAM, empty CONTINUATION and empty
	// non-final DATA frames a client may send within GlitchWindow; one
	// more closes the connection. Negative: no limit.
	// Streams the server resets for the client's errors count as
	// glitches too. The requests the server answers itself with an
	// error (Conn.Refused) have a count of their own with the same
	// limit.
	MaxGlitches  int
	GlitchWindow time.Duration
	// MaxControlFrames is how many SETTINGS, PING, PRIORITY,
	// PRIORITY_UPDATE, WINDOW_UPDATE, GOAWAY, PUSH_PROMISE and unknown
	// frames a client may send within GlitchWindow, beyond
	// ControlPerStream per header block it began and ControlPerDataFrame
	// per DATA frame of at least MinDataFrame the server sent in the
	// window and per ControlDataBytes of their payload, and beyond what
	// earlier windows earned and left (at most CreditCeiling). Negative:
	// no limit.
	MaxControlFrames int
	// OnAbuse, if set, is called once when the guard closes a connection,
	// with one of the Reason* values, for metrics. It is called from the
	// goroutine reading the connection or from a timer's.
	OnAbuse func(reason string)
}

// Conn is an HTTP/2 server connection under watch.
type Conn struct {
	net.Conn
	opts Options

	// writing holds one token while a write to Conn is under way, so
	// that the GOAWAY goes out between two of net/http's writes, never
	// inside one; a channel, so that its wait has a deadline.
	writing chan struct{}
	// shut is closed once the abusive connection's GOAWAY was sent (or
	// given up) and its TCP connection closed; goAwaySent once
	// finishFrame sent the GOAWAY after the frame it finished.
	shut, goAwaySent chan struct{}

	mu        sync.Mutex // guards the fields below
	r         frameReader
	w         frameWriter
	window    time.Time // start of the current glitch window
	counts    tally     // in the current window
	credit    int       // control frames earned in past windows and not spent (countLocked)
	backlog   int       // answers owed the client and not written (MaxBacklog), never below 0
	timer     *time.Timer
	armedFor  time.Time // what the timer was armed for: r.waitingSince()
	closedFor string    // the abuse the connection was closed for
}

// tlsConn is a Conn over TLS: net/http finds ConnectionState on it and
// serves the connection as HTTPS, with HTTP/2 when ALPN chose h2.
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

// Wrap returns c, the server side of an HTTP/2 connection, under watch. If
// c is a TLS connection (it has ConnectionState, as *tls.Conn does), so is
// the result.
func Wrap(c net.Conn, opts Options) net.Conn {
	if opts.HeaderTimeout <= 0 {
		opts.HeaderTimeout = DefaultHeaderTimeout
	}
	if opts.MaxGlitches == 0 {
		opts.MaxGlitches = DefaultMaxGlitches
	}
	if opts.GlitchWindow <= 0 {
		opts.GlitchWindow = DefaultGlitchWindow
	}
	if opts.MaxControlFrames == 0 {
		opts.MaxControlFrames = DefaultMaxControlFrames
	}
	g := &Conn{Conn: c, opts: opts, r: newFrameReader(), w: newFrameWriter(),
		writing: make(chan struct{}, 1), shut: make(chan struct{}), goAwaySent: make(chan struct{})}
	if _, ok := c.(connectionStater); ok {
		return tlsConn{g}
	}
	return g
}

// Read reads from the connection and follows the frames it returns. Once
// the connection was closed for abuse it returns net.ErrClosed.
func (c *Conn) Read(b []byte) (int, error) {
	if c.ClosedFor() != "" {
		// Not at once: net/http, reading on, would stop flushing the
		// frame it may be in the middle of, which the GOAWAY must
		// follow (goAway).
		<-c.shut
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(b)
	if n == 0 {
		return n, err
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closedFor != "" {
		return 0, net.ErrClosed
	}
	c.r.feed(b[:n], now)
	if t := c.r.take(); t != (tally{}) {
		c.countLocked(now, t)
	}
	c.armLocked(now)
	return n, err
}

// Write writes to the connection and follows the frames net/http's
// server writes: the streams it resets and the DATA it sends. Once the
// connection was closed for abuse it writes nothing and returns
// net.ErrClosed.
func (c *Conn) Write(b []byte) (int, error) {
	c.writing <- struct{}{}
	defer func() { <-c.writing }()
	if c.ClosedFor() != "" {
		return c.finishFrame(b)
	}
	n, err := c.Conn.Write(b)
	if n == 0 {
		return n, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w.earlyUpTo = c.r.earlyUpTo()
	c.w.feed(b[:n])
	if c.closedFor != "" {
		// Found abusive while these bytes went out: nothing more
		// counts, but the GOAWAY must follow the frame they end in
		// (goAwayFrameLocked, finishFrame), which only feed knows.
		return n, err
	}
	if t := c.w.take(); t != (tally{}) {
		c.countLocked(time.Now(), t)
	}
	return n, err
}

// countLocked adds t to the window and closes the connection if the
// window is over a budget.
//
// The control frames a client earns with its requests and the DATA the
// server sends it (earned) outlive the window they were earned in: a
// client returns flow-control credit as it reads, which may be a window
// or more after the server wrote (a 4 MiB stream window read at 1 MiB/s
// is 2,048 WINDOW_UPDATEs over 4 s). Each window's free
// MaxControlFrames are spent first; what earned credit is left over
// carries on. It is never more than the requests and data the client was
// served, so a flood still has only MaxControlFrames a window.
func (c *Conn) countLocked(now time.Time, t tally) {
	c.backlog = max(0, c.backlog+t.owed-t.answered)
	if c.opts.MaxGlitches >= 0 && c.backlog > MaxBacklog {
		c.abuseLocked(ReasonBacklog)
		return
	}
	if now.Sub(c.window) > c.opts.GlitchWindow {
		if c.opts.MaxControlFrames >= 0 {
			c.credit += earned(c.counts) - max(0, c.counts.control-c.opts.MaxControlFrames)
			c.credit = min(c.credit, CreditCeiling)
		}
		c.window, c.counts = now, tally{}
	}
	c.counts.add(t)
	k := c.counts
	if c.opts.MaxGlitches >= 0 && k.refused > c.opts.MaxGlitches {
		c.abuseLocked(ReasonRefusedRequests)
		return
	}
	if c.opts.MaxGlitches >= 0 && k.glitches() > c.opts.MaxGlitches {
		reason := ReasonRapidReset
		switch {
		case k.empties > k.resets && k.empties >= k.provoked:
			reason = ReasonEmptyFrames
		case k.provoked > k.resets:
			reason = ReasonProvokedReset
		}
		c.abuseLocked(reason)
		return
	}
	if c.opts.MaxControlFrames >= 0 && k.control > c.opts.MaxControlFrames+c.credit+earned(k) {
		c.abuseLocked(ReasonControlFrames)
	}
}

// earned is the control frames k's header blocks and the DATA sent in it
// allow beyond Options.MaxControlFrames.
func earned(k tally) int {
	return ControlPerStream*k.streams + ControlPerDataFrame*(k.dataSent+k.dataBytes/ControlDataBytes)
}

// Refused counts a request the server answered itself with an error
// status, without an upstream: one HEADERS frame from the client bought a
// handler, a response and a log line, and nothing bounded how many a
// connection could ask for but its stream limit. More than
// Options.MaxGlitches of them within Options.GlitchWindow close the
// connection, for ReasonRefusedRequests; Refused then reports true. It
// may be called from any goroutine, a handler's included; after the
// close it does nothing.
func (c *Conn) Refused() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closedFor == "" {
		c.countLocked(time.Now(), tally{refused: 1})
	}
	return c.closedFor != ""
}

// armLocked sets the header timer for what the client owes now.
func (c *Conn) armLocked(now time.Time) {
	since, waiting := c.r.waitingSince()
	switch {
	case !waiting:
		if c.timer != nil && !c.armedFor.IsZero() {
			c.timer.Stop()
		}
		c.armedFor = time.Time{}
	case since.Equal(c.armedFor):
		// Already armed for it.
	default:
		c.armedFor = since
		d := since.Add(c.opts.HeaderTimeout).Sub(now)
		if c.timer == nil {
			c.timer = time.AfterFunc(d, c.expired)
		} else {
			c.timer.Reset(d)
		}
	}
}

// expired runs on the timer's goroutine.
func (c *Conn) expired() {
	c.mu.Lock()
	defer c.mu.Unlock()
	since, waiting := c.r.waitingSince()
	if !waiting || c.armedFor.IsZero() || !since.Equal(c.armedFor) {
		return // the block ended while the timer fired
	}
	c.abuseLocked(ReasonHeaderTimeout)
}

// abuseLocked closes the connection for reason, once: from now on Read
// reads nothing, Write only finishes the frame under way, and goAway
// sends the GOAWAY and closes.
func (c *Conn) abuseLocked(reason string) {
	if c.closedFor != "" {
		return
	}
	c.closedFor = reason
	if c.timer != nil {
		c.timer.Stop()
	}
	go c.goAway() // the write it waits for may be this goroutine's
	if c.opts.OnAbuse != nil {
		go c.opts.OnAbuse(reason) // never under c.mu, never blocking a read
	}
}

// goAway sends an abusive client a GOAWAY with ENHANCE_YOUR_CALM (RFC 9113
// Section 5.4.1: an endpoint that ends a connection for an error SHOULD
// send GOAWAY first) where net/http's writes allow one, then closes the
// TCP connection, all within GoAwayTimeout. Between two of net/http's
// frames it sends the GOAWAY itself; in the middle of one, net/http's
// next writes finish the frame and finishFrame sends it.
func (c *Conn) goAway() {
	defer close(c.shut)
	deadline := time.Now().Add(GoAwayTimeout)
	t := time.NewTimer(GoAwayTimeout)
	defer t.Stop()
	defer c.closeRaw()
	select {
	case c.writing <- struct{}{}:
	case <-t.C:
		return // net/http's write under way is stuck (a client that does not read)
	}
	c.mu.Lock()
	frame, ok := c.goAwayFrameLocked()
	c.mu.Unlock()
	if ok {
		c.Conn.SetWriteDeadline(deadline)
		c.Conn.Write(frame)
	}
	<-c.writing
	if !ok {
		select {
		case <-c.goAwaySent:
		case <-t.C:
		}
	}
}

// finishFrame is Write once the connection was closed for abuse: it
// writes of b only what finishes the frame under way, then the GOAWAY,
// and returns net.ErrClosed. Called with c.writing held.
func (c *Conn) finishFrame(b []byte) (int, error) {
	c.mu.Lock()
	k := c.w.toFrameEnd(b)
	sent := c.w.goAway
	c.mu.Unlock()
	if sent {
		return 0, net.ErrClosed
	}
	var n int
	var err error
	if k > 0 {
		n, err = c.Conn.Write(b[:k])
	}
	c.mu.Lock()
	c.w.feed(b[:n])
	frame, ok := c.goAwayFrameLocked()
	c.mu.Unlock()
	if err == nil && ok {
		c.Conn.Write(frame) // if it blocks, goAway closes the connection under it at GoAwayTimeout
		close(c.goAwaySent)
	}
	return n, net.ErrClosed
}

// closeRaw closes the TCP connection under TLS: tls.Conn.Close would send
// close_notify, for up to 5 s more to a client that does not read. After a
// GOAWAY it first ends the sending side (a FIN after the GOAWAY) and
// drains what the client still sends, for GoAwayTimeout at most: closing
// with unread bytes resets the connection at once, and the reset throws
// away what the socket had not yet sent, the GOAWAY with it (RFC 9113
// Section 6.8 has the sender give the GOAWAY time to arrive).
func (c *Conn) closeRaw() {
	raw := c.Conn
	if u, ok := raw.(interface{ NetConn() net.Conn }); ok {
		raw = u.NetConn()
	}
	c.mu.Lock()
	sent := c.w.goAway
	c.mu.Unlock()
	if sent && closeWrite(raw) {
		raw.SetReadDeadline(time.Now().Add(GoAwayTimeout))
		var buf [512]byte // read to throw away: the TLS records are not decrypted
		for {
			if _, err := raw.Read(buf[:]); err != nil {
				break
			}
		}
	}
	raw.Close()
}

// closeWrite shuts down the sending side of the TCP connection under c
// (following NetConn a few wrappers deep) and reports whether it did.
func closeWrite(c net.Conn) bool {
	for range 4 {
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite() == nil
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return false
		}
		c = u.NetConn()
	}
	return false
}

// goAwayFrameLocked returns the GOAWAY frame to send now and marks it
// sent, or returns false if it may not go now: before net/http's first
// frame (its SETTINGS must come first, RFC 9113 Section 3.4), in the
// middle of one of its frames, or a second time. Its last stream is the
// highest the client opened (RFC 9113 Section 6.8): the guard let
// net/http read them all, and streams above it were never opened.
func (c *Conn) goAwayFrameLocked() ([]byte, bool) {
	if c.w.goAway || !c.w.atFrameBoundary() {
		return nil, false
	}
	c.w.goAway = true
	last := c.r.lastStream
	return []byte{
		0, 0, 8, frameGoAway, 0, 0, 0, 0, 0,
		byte(last >> 24), byte(last >> 16), byte(last >> 8), byte(last),
		0, 0, 0, errCodeEnhanceYourCalm,
	}, true
}

// Close closes the connection and stops the header timer. A connection
// closed for abuse is first given its GOAWAY (at most GoAwayTimeout).
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	abused := c.closedFor != ""
	c.mu.Unlock()
	if abused {
		<-c.shut
	}
	return c.Conn.Close()
}

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// ClosedFor returns the abuse the guard closed the connection for, or "".
func (c *Conn) ClosedFor() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closedFor
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
