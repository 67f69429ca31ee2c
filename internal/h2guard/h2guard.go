// Package h2guard gives an HTTP/2 connection a bounded cost: it watches
// the frames a client sends, below net/http's HTTP/2 server, and closes the
// connection when the client abuses the protocol (issue 12, kinds 4 and 7).
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
//     frames (CVE-2024-27316) and empty DATA frames that end nothing
//     (CVE-2019-9518). More than Options.MaxGlitches of them within
//     Options.GlitchWindow close the connection;
//   - the time a header block may take: from the first byte of its HEADERS
//     frame to the end of the frame with END_HEADERS, at most
//     Options.HeaderTimeout (the server's read_header), where net/http
//     would wait for its idle timeout. A frame header begun and not
//     finished is bounded the same way.
//
// It reads only frame headers (RFC 9113 Section 4.1) as net/http reads
// them and buffers nothing beyond those 9 bytes. It closes the TCP
// connection under the TLS one at once, without a GOAWAY: net/http's frame
// writer may be mid-frame, and an abusive client deserves no more bytes.
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
)

// Reasons given to Options.OnAbuse.
const (
	ReasonRapidReset    = "rapid_reset"    // too many RST_STREAM frames
	ReasonEmptyFrames   = "empty_frames"   // too many empty CONTINUATION or DATA frames
	ReasonHeaderTimeout = "header_timeout" // a header block or frame header took too long
)

// Options configure Wrap. Zero fields take the defaults.
type Options struct {
	HeaderTimeout time.Duration
	// MaxGlitches is how many RST_STREAM, empty CONTINUATION and empty
	// non-final DATA frames a client may send within GlitchWindow; one
	// more closes the connection. Negative: no limit.
	MaxGlitches  int
	GlitchWindow time.Duration
	// OnAbuse, if set, is called once when the guard closes a connection,
	// with one of the Reason* values, for metrics. It is called from the
	// goroutine reading the connection or from a timer's.
	OnAbuse func(reason string)
}

// Conn is an HTTP/2 server connection under watch.
type Conn struct {
	net.Conn
	opts Options

	mu        sync.Mutex // guards the fields below
	r         frameReader
	window    time.Time // start of the current glitch window
	resets    int       // in the current window
	empties   int       // in the current window
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
	g := &Conn{Conn: c, opts: opts, r: newFrameReader()}
	if _, ok := c.(connectionStater); ok {
		return tlsConn{g}
	}
	return g
}

// Read reads from the connection and follows the frames it returns.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n == 0 {
		return n, err
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closedFor != "" {
		return n, err
	}
	c.r.feed(b[:n], now)
	if resets, empties := c.r.takeGlitches(); resets+empties > 0 {
		c.countLocked(now, resets, empties)
	}
	c.armLocked(now)
	return n, err
}

// countLocked adds the glitches of the last read to the window.
func (c *Conn) countLocked(now time.Time, resets, empties int) {
	if now.Sub(c.window) > c.opts.GlitchWindow {
		c.window, c.resets, c.empties = now, 0, 0
	}
	c.resets += resets
	c.empties += empties
	if c.opts.MaxGlitches < 0 || c.resets+c.empties <= c.opts.MaxGlitches {
		return
	}
	reason := ReasonRapidReset
	if c.empties > c.resets {
		reason = ReasonEmptyFrames
	}
	c.abuseLocked(reason)
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

// abuseLocked closes the connection for reason, once.
func (c *Conn) abuseLocked(reason string) {
	if c.closedFor != "" {
		return
	}
	c.closedFor = reason
	if c.timer != nil {
		c.timer.Stop()
	}
	// The TCP connection under TLS: tls.Conn.Close would first try to
	// send close_notify, behind a write that may be blocked.
	raw := c.Conn
	if u, ok := raw.(interface{ NetConn() net.Conn }); ok {
		raw = u.NetConn()
	}
	raw.Close()
	if c.opts.OnAbuse != nil {
		go c.opts.OnAbuse(reason) // never under c.mu, never blocking a read
	}
}

// Close closes the connection and stops the header timer.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
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
