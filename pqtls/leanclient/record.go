package leanclient

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// TLS record content types (RFC 8446 Section 5.1).
const (
	recordChangeCipherSpec = 20
	recordAlert            = 21
	recordHandshake        = 22
	recordApplicationData  = 23
)

const (
	maxPlaintext = 1 << 14 // RFC 8446 Section 5.1
	// maxCiphertext is 2^14 + 256 (RFC 8446 Section 5.2).
	maxCiphertext = maxPlaintext + 256
)

// SplitMode chooses how the ClientHello goes on the wire, to test servers
// and middleboxes that assume it arrives in one piece.
type SplitMode int

const (
	// SplitNone sends the ClientHello as one record in one write.
	SplitNone SplitMode = 0
	// SplitRecords cuts the ClientHello message into two TLS records
	// (allowed by RFC 8446 Section 5.1: handshake messages may span records).
	SplitRecords SplitMode = 1 << 0
	// SplitWrites hands the ClientHello bytes to the kernel in two writes,
	// with Config.SplitDelay between them, so that the server needs two reads.
	SplitWrites SplitMode = 1 << 1
)

func (m SplitMode) String() string {
	switch m {
	case SplitNone:
		return "none"
	case SplitRecords:
		return "records"
	case SplitWrites:
		return "writes"
	case SplitRecords | SplitWrites:
		return "records+writes"
	}
	return fmt.Sprintf("split(%d)", int(m))
}

// recordConn is the record layer: framing, protection and byte counts.
type recordConn struct {
	conn net.Conn
	r    *bufio.Reader
	in   *protection // nil while records are plaintext
	out  *protection

	hsBuf []byte // handshake bytes read but not yet returned as messages

	bytesSent, bytesReceived int // whole records, headers included
	recordsReceived          int // whole records, change_cipher_spec included
	splitDelay               time.Duration
}

// readers holds the record readers of finished handshakes: a benchmark
// makes thousands of handshakes a second, and a fresh 16 KiB buffer for
// each was the client's largest allocation.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 5+maxCiphertext) }}

func newRecordConn(conn net.Conn) *recordConn {
	r := readers.Get().(*bufio.Reader)
	r.Reset(conn)
	return &recordConn{conn: conn, r: r}
}

// release returns the reader to the pool; c must not read after it.
// Nothing read keeps pointing into the reader's buffer: readRecord copies
// every record body out of it.
func (c *recordConn) release() {
	c.r.Reset(nil)
	readers.Put(c.r)
	c.r = nil
}

// readRecord returns the next record that is not a compatibility
// change_cipher_spec, decrypted when keys are set. Alerts become errors.
func (c *recordConn) readRecord(op string) (typ uint8, body []byte, err error) {
	if c.bytesReceived == 0 && c.in == nil {
		if err := c.sniff(op); err != nil {
			return 0, nil, err
		}
	}
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			// A partial header gives ErrUnexpectedEOF (truncated, malformed).
			if errors.Is(err, io.EOF) && len(c.hsBuf) > 0 {
				return 0, nil, malformed(op, "connection closed in the middle of a handshake message")
			}
			return 0, nil, readErr(op, err)
		}
		typ = hdr[0]
		n := int(binary.BigEndian.Uint16(hdr[3:]))
		if n > maxCiphertext {
			return 0, nil, malformed(op, "record of %d bytes exceeds 2^14+256 (RFC 8446 Section 5.2)", n)
		}
		if hdr[1] != 3 {
			return 0, nil, malformed(op, "record version 0x%02x%02x is not TLS", hdr[1], hdr[2])
		}
		body = make([]byte, n)
		if _, err := io.ReadFull(c.r, body); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the header promised a body
			}
			return 0, nil, readErr(op, err)
		}
		c.bytesReceived += 5 + n
		c.recordsReceived++
		switch typ {
		case recordChangeCipherSpec:
			// RFC 8446 Section 5: a change_cipher_spec of one byte 0x01 is
			// dropped (middlebox compatibility); anything else is an error.
			if n != 1 || body[0] != 1 {
				return 0, nil, malformed(op, "bad change_cipher_spec record")
			}
			continue
		case recordAlert:
			if c.in != nil {
				return 0, nil, malformed(op, "plaintext alert after keys were set")
			}
			return 0, nil, alertErr(op, body)
		case recordApplicationData:
			if c.in == nil {
				return 0, nil, malformed(op, "encrypted record before ServerHello")
			}
			typ, body, err = c.decrypt(op, hdr[:], body)
			if err != nil {
				return 0, nil, err
			}
			if typ == recordAlert {
				return 0, nil, alertErr(op, body)
			}
			return typ, body, nil
		case recordHandshake:
			if c.in != nil {
				return 0, nil, malformed(op, "plaintext handshake record after ServerHello (RFC 8446 Section 5)")
			}
			return typ, body, nil
		default:
			return 0, nil, malformed(op, "unknown record type %d", typ)
		}
	}
}

// sniff looks at the first bytes of the server's answer: a server that is
// not TLS answers in its own protocol (an HTTP 400, an SSH or SMTP banner),
// which is worth naming instead of reporting a malformed record. It
// returns nil when the bytes can start a TLS record, or when there are
// none yet (the record read then reports the close or the timeout).
func (c *recordConn) sniff(op string) error {
	// Judge by the first byte, then the second: a short answer (a 3-byte
	// "OK\n") must not wait for a whole record header that never comes.
	for n := 1; n <= 2; n++ {
		b, err := c.r.Peek(n)
		if !looksLikeTLS(b) {
			break
		}
		if err != nil || n == 2 {
			return nil
		}
	}
	// Quote what already arrived; never wait for more.
	answer, _ := c.r.Peek(min(c.r.Buffered(), 512))
	return &Error{Kind: KindNotTLS, Op: op, Err: notTLS(answer)}
}

// readErr classifies a failed read: a close in the middle of a record is
// a truncated (malformed) reply, a close between records a broken
// connection.
func readErr(op string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return malformed(op, "connection closed in the middle of a record")
	}
	if errors.Is(err, io.EOF) {
		return &Error{Kind: KindDial, Op: op, Err: fmt.Errorf("connection closed by server: %w", io.ErrUnexpectedEOF)}
	}
	return ioErr(op, err)
}

func alertErr(op string, body []byte) error {
	if len(body) != 2 {
		return malformed(op, "alert record of %d bytes", len(body))
	}
	return &Error{Kind: KindAlert, Alert: body[1], Op: op}
}

// decrypt opens a TLSCiphertext and strips the inner type and padding
// (RFC 8446 Section 5.2 and 5.4).
func (c *recordConn) decrypt(op string, hdr, body []byte) (uint8, []byte, error) {
	if len(body) < c.in.aead.Overhead()+1 {
		return 0, nil, malformed(op, "encrypted record of %d bytes is too short", len(body))
	}
	pt, err := c.in.aead.Open(body[:0], c.in.nonce(), body, hdr)
	if err != nil {
		return 0, nil, malformed(op, "failed to decrypt record (bad_record_mac)")
	}
	c.in.seq++
	i := len(pt) - 1
	for i >= 0 && pt[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, malformed(op, "encrypted record has no content type")
	}
	if i > maxPlaintext {
		return 0, nil, malformed(op, "record plaintext exceeds 2^14 bytes")
	}
	return pt[i], pt[:i], nil
}

// readHandshake returns the next whole handshake message, header included.
// Messages may span records and records may hold several messages
// (RFC 8446 Section 5.1).
func (c *recordConn) readHandshake(op string) ([]byte, error) {
	for {
		if len(c.hsBuf) >= 4 {
			n := int(c.hsBuf[1])<<16 | int(c.hsBuf[2])<<8 | int(c.hsBuf[3])
			if n > maxHandshakeMessage {
				return nil, malformed(op, "handshake message of %d bytes is too large", n)
			}
			if len(c.hsBuf) >= 4+n {
				msg := c.hsBuf[: 4+n : 4+n]
				c.hsBuf = c.hsBuf[4+n:]
				if len(c.hsBuf) == 0 {
					c.hsBuf = nil
				}
				return msg, nil
			}
		}
		typ, body, err := c.readRecord(op)
		if err != nil {
			return nil, err
		}
		if typ != recordHandshake {
			return nil, malformed(op, "got record type %d, want handshake", typ)
		}
		if len(body) == 0 {
			return nil, malformed(op, "empty handshake record (RFC 8446 Section 5.1)")
		}
		c.hsBuf = append(c.hsBuf, body...)
	}
}

// maxHandshakeMessage bounds what the client buffers: large enough for an
// ML-DSA-87 chain of several certificates, small enough that a hostile
// length cannot make it allocate without bound.
const maxHandshakeMessage = 256 << 10

// setReadKeys switches incoming records to protection p. A key change in
// the middle of a handshake message is an error (RFC 8446 Section 5.1).
func (c *recordConn) setReadKeys(op string, p *protection) error {
	if len(c.hsBuf) != 0 {
		return malformed(op, "handshake message spans a key change")
	}
	c.in = p
	return nil
}

// records frames data as records of type typ, encrypted when out keys are
// set, cut into pieces of at most maxPlaintext (or at cut, when > 0).
func (c *recordConn) records(typ uint8, data []byte, cut int) []byte {
	var out []byte
	for len(data) > 0 {
		n := min(len(data), maxPlaintext)
		if cut > 0 && cut < n {
			n = cut
			cut = 0
		}
		out = c.appendRecord(out, typ, data[:n])
		data = data[n:]
	}
	return out
}

func (c *recordConn) appendRecord(out []byte, typ uint8, frag []byte) []byte {
	if c.out == nil {
		// RFC 8446 Section 5.1: legacy_record_version is 0x0301 for the
		// initial ClientHello and 0x0303 after it (crypto/tls rejects
		// 0x0301 on the second ClientHello with protocol_version).
		minor := byte(3)
		if c.bytesSent == 0 {
			minor = 1
		}
		out = append(out, typ, 3, minor, byte(len(frag)>>8), byte(len(frag)))
		return append(out, frag...)
	}
	inner := append(append([]byte(nil), frag...), typ)
	n := len(inner) + c.out.aead.Overhead()
	hdr := []byte{recordApplicationData, 3, 3, byte(n >> 8), byte(n)}
	out = append(out, hdr...)
	out = c.out.aead.Seal(out, c.out.nonce(), inner, hdr)
	c.out.seq++
	return out
}

// write sends wire bytes, in two writes when splitAt > 0.
func (c *recordConn) write(op string, wire []byte, splitAt int) error {
	parts := [][]byte{wire}
	if splitAt > 0 && splitAt < len(wire) {
		parts = [][]byte{wire[:splitAt], wire[splitAt:]}
	}
	for i, p := range parts {
		if i > 0 && c.splitDelay > 0 {
			// Without a pause the kernel may coalesce both writes into one
			// segment and the server would read them at once, which is not
			// the shape under test. This is the client pacing its own
			// output, not a wait for readiness.
			time.Sleep(c.splitDelay)
		}
		if _, err := c.conn.Write(p); err != nil {
			return ioErr(op, err)
		}
		c.bytesSent += len(p)
	}
	return nil
}
