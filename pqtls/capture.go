package pqtls

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// DefaultCaptureLimit bounds the bytes a CaptureConn keeps when its limit is
// 0. Real ClientHellos are 0.2–2.5 KB (a post-quantum key share adds 1.2 KB);
// 64 KiB leaves room for large certificate_authorities lists while bounding
// what a hostile client can make the server hold.
const DefaultCaptureLimit = 64 << 10

// ErrClientHelloIncomplete is returned by CaptureConn.ClientHello before the
// whole ClientHello has been read.
var ErrClientHelloIncomplete = errors.New("ClientHello not yet complete")

// CaptureConn wraps the net.Conn handed to crypto/tls and records the raw
// ClientHello that crypto/tls does not expose. Reads pass through untouched;
// until the first ClientHello is complete, what they return is also copied
// into a buffer of at most limit bytes. After that a Read costs one atomic
// load more than the wrapped conn's.
//
// crypto/tls puts the conn it was given in ClientHelloInfo.Conn, so
// GetConfigForClient and GetCertificate reach the capture with
// hello.Conn.(*pqtls.CaptureConn).ClientHello().
//
// Capturing never fails the connection: bytes that are not a ClientHello,
// or a ClientHello larger than the limit, only make ClientHello return an
// error.
type CaptureConn struct {
	net.Conn
	limit int

	// capturing is true until the ClientHello is complete, the limit is
	// passed or the bytes are found not to be a ClientHello; Read checks it
	// without taking mu.
	capturing atomic.Bool

	mu      sync.Mutex // guards the fields below
	buf     []byte
	framer  helloFramer
	reads   int   // Reads that returned capture bytes
	stopErr error // why capturing stopped early, if it did
	parsed  bool  // ch and err hold the cached parse
	ch      *ClientHello
	err     error
}

// NewCaptureConn wraps c. limit bounds the capture buffer in bytes; 0 (or
// less) means DefaultCaptureLimit.
func NewCaptureConn(c net.Conn, limit int) *CaptureConn {
	if limit <= 0 {
		limit = DefaultCaptureLimit
	}
	cc := &CaptureConn{Conn: c, limit: limit}
	cc.capturing.Store(true)
	return cc
}

// NetConn returns the wrapped connection.
func (c *CaptureConn) NetConn() net.Conn { return c.Conn }

// Read reads from the wrapped conn and, while the ClientHello is not yet
// complete, records what it read.
func (c *CaptureConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.capturing.Load() {
		c.mu.Lock()
		c.record(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// record appends b to the capture and checks whether the ClientHello is
// complete. Called with mu held.
func (c *CaptureConn) record(b []byte) {
	if !c.capturing.Load() {
		return // another Read finished the capture meanwhile
	}
	c.reads++
	if len(c.buf)+len(b) > c.limit {
		// Keep what fits: scan may still find the end of the ClientHello in
		// it when the extra bytes are records that follow it.
		b = b[:c.limit-len(c.buf)]
	}
	if c.buf == nil {
		c.buf = make([]byte, 0, min(c.limit, max(len(b), firstBufferSize(b))))
	}
	c.buf = append(c.buf, b...)
	done, err := c.framer.scan(c.buf)
	need := c.framer.need
	if need == 0 && c.framer.records == 0 {
		// The first record is still arriving, but its first bytes may
		// already give the message length: refuse a too-large one early.
		need, _ = firstMessageLen(c.buf)
	}
	switch {
	case err != nil:
		c.stop(fmt.Errorf("failed to capture ClientHello: %w", err))
	case done:
		c.buf = c.buf[:c.framer.end] // drop bytes of the records after it
		c.capturing.Store(false)
	case need > c.limit:
		c.stop(fmt.Errorf("failed to capture ClientHello: its %d bytes exceed the capture limit of %d", need, c.limit))
	case len(c.buf) >= c.limit:
		c.stop(fmt.Errorf("failed to capture ClientHello: not complete within the capture limit of %d bytes", c.limit))
	}
}

// firstBufferSize is the capacity of the capture buffer made for the first
// bytes read, b. When the first record's header is there, that record is
// what crypto/tls reads next, so the buffer holds it exactly (the common
// case of a ClientHello in one record needs no other allocation). It is
// not sized by the handshake message length: a client could announce 16 MB
// in 9 bytes and hold the connection for the handshake timeout, and the
// record length is at most 2^14 + 256 before crypto/tls refuses it (RFC
// 8446 section 5.2). Without a header yet, a typical browser hello.
func firstBufferSize(b []byte) int {
	if len(b) < recordHeaderLen || b[0] != recordTypeHandshake {
		return typicalHelloRecords
	}
	size := recordHeaderLen + (int(b[3])<<8 | int(b[4]))
	if n, ok := firstMessageLen(b); ok {
		// A message shorter than its record: the rest is another message,
		// which the capture drops.
		size = min(size, recordHeaderLen+n)
	}
	return size
}

// typicalHelloRecords sizes the capture buffer before a record header has
// arrived: a browser's ClientHello with a post-quantum key share is 1.5–2.1
// KB.
const typicalHelloRecords = 2048

// firstMessageLen returns the handshake message length (its 4-byte header
// included) announced at the start of the first record of b, when b holds
// that record's header and the first record's payload is long enough to
// carry the handshake header: with smaller records (a split ClientHello)
// bytes 6..8 belong to the next record header, not to the length.
func firstMessageLen(b []byte) (int, bool) {
	if len(b) < recordHeaderLen+handshakeHeaderLen || b[0] != recordTypeHandshake ||
		int(b[3])<<8|int(b[4]) < handshakeHeaderLen {
		return 0, false
	}
	return handshakeHeaderLen + (int(b[6])<<16 | int(b[7])<<8 | int(b[8])), true
}

// stop ends capturing early with err and frees the buffer. Called with mu
// held.
func (c *CaptureConn) stop(err error) {
	c.stopErr = err
	c.buf = nil
	c.capturing.Store(false)
}

// ClientHello returns the first ClientHello read on the connection, parsed,
// with Wire filled in. It returns ErrClientHelloIncomplete while the message
// is still arriving, and an error if the bytes were not a valid ClientHello
// or it did not fit the limit. The result is parsed once and shared: callers
// must not modify it. Safe for concurrent use.
func (c *CaptureConn) ClientHello() (*ClientHello, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parsed {
		return c.ch, c.err
	}
	if c.capturing.Load() {
		return nil, ErrClientHelloIncomplete
	}
	c.parseLocked()
	return c.ch, c.err
}

// parseLocked parses the completed capture once, into ch and err. Called
// with mu held, after capturing ended.
func (c *CaptureConn) parseLocked() {
	c.parsed = true
	if c.stopErr != nil {
		c.err = c.stopErr
		return
	}
	ch, err := ParseClientHello(c.framer.message(c.buf))
	if err != nil {
		c.err = err
		return
	}
	ch.Wire = WireShape{Size: len(ch.Raw), Records: c.framer.records, Reads: c.reads}
	c.ch = ch
}

// RawRecords returns the captured TLS records that carry the ClientHello, as
// read from the wire, or nil if the capture is incomplete or failed. The
// slice is shared: do not modify it.
func (c *CaptureConn) RawRecords() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.capturing.Load() || c.stopErr != nil {
		return nil
	}
	return c.buf
}

// Release ends the capture's hold on the ClientHello's bytes, for a server
// that has recorded its handshake and keeps the connection open: the
// buffer of captured records (1.5–2.1 KB for a browser's post-quantum
// hello, up to the limit for a hostile one) is dropped, and the parsed
// ClientHello is replaced by its Detached copy, which keeps every field
// the inspect page, JA4 and the client family read. It returns that copy
// and the error ClientHello would have returned; after it, ClientHello
// returns the same and RawRecords nil. A capture still under way when
// Release is called stops with an error. Safe for concurrent use, and to
// call more than once.
func (c *CaptureConn) Release() (*ClientHello, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.capturing.Load() {
		c.stop(errReleased)
	}
	if !c.parsed {
		c.parseLocked()
	}
	if c.ch != nil && c.buf != nil {
		c.ch = c.ch.Detached()
	}
	c.buf = nil
	c.framer = helloFramer{}
	return c.ch, c.err
}

var errReleased = errors.New("failed to capture ClientHello: the capture was released before it was complete")

// Detached returns a copy of ch that shares no bytes with the buffer it was
// parsed from, so that buffer can be collected while the copy lives on:
// Raw and PSKIdentity (a session ticket, needed only while the handshake
// is recorded) are nil, the distinguished names of CertificateAuthorities
// are copied, and every other field, Wire included, is as in ch (the
// parser already copies names and lists out of the message). Wire.Size
// still gives the message's length.
func (ch *ClientHello) Detached() *ClientHello {
	d := *ch
	d.Raw, d.PSKIdentity = nil, nil
	if ch.CertificateAuthorities != nil {
		d.CertificateAuthorities = make([][]byte, len(ch.CertificateAuthorities))
		for i, dn := range ch.CertificateAuthorities {
			d.CertificateAuthorities[i] = bytes.Clone(dn)
		}
	}
	return &d
}
