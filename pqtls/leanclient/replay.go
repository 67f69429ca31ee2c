package leanclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pqedge/pqedge/pqtls"
)

// ClientHelloRecord returns the ClientHello that a handshake with cfg
// would send first, framed as TLS records (RFC 8446 Section 5.1, legacy
// record version 0x0301), ready to be written to a new connection. Its key
// shares are fresh: Precomputed is not used, so each call yields a
// ClientHello with its own random, session ID and keys. Session and
// ReadTicket are ignored (no pre_shared_key and no psk_key_exchange_modes
// are offered, so a server sends no NewSessionTicket in its flight, RFC
// 8446 Section 4.2.9), as are SplitClientHello and everything after the
// ClientHello. The private keys are dropped: the hello can only ever be
// replayed, never finished.
func ClientHelloRecord(cfg *Config) ([]byte, error) {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Precomputed, c.Session, c.ReadTicket = nil, nil, false
	hs := &handshakeState{cfg: &c}
	if err := hs.makeClientHello(); err != nil {
		return nil, err
	}
	return (&recordConn{}).records(recordHandshake, hs.hello.marshal(), 0), nil
}

// Flight is the shape of a server's first flight in answer to a
// ClientHello: ServerHello through the server Finished as they came off
// the wire.
type Flight struct {
	// Records counts TLS records, the compatibility change_cipher_spec
	// included; Bytes those records with their 5-byte headers.
	Records int
	Bytes   int
}

// maxFlightRecords bounds what ReadFlight waits for: a ServerHello, a
// change_cipher_spec and the encrypted messages of the largest ML-DSA-87
// chains fit in far fewer (each record carries up to 16 KiB).
const maxFlightRecords = 64

// Calibrate makes one full handshake with cfg against addr (over TCP, as
// Dial) and returns the shape of the server's flight. A server that
// answered cfg's ClientHello with a HelloRetryRequest cannot be measured
// by replay (each replayed ClientHello would get only the retry request):
// that is a KindUnsupported error naming the group the server wanted.
func Calibrate(ctx context.Context, addr string, cfg *Config) (Flight, *Result, error) {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Precomputed, c.Session, c.ReadTicket, c.Request = nil, nil, false, nil
	res, err := Dial(ctx, addr, &c)
	if err != nil {
		return Flight{}, res, err
	}
	if res.HelloRetry {
		return Flight{}, res, unsupported("calibrate the server's flight",
			"the server answered with a HelloRetryRequest for %s: offer it first (a replayed ClientHello must get the whole flight)", pqtls.GroupName(res.Group))
	}
	if res.ServerFlightRecords < 2 || res.ServerFlightRecords > maxFlightRecords {
		return Flight{}, res, malformed("calibrate the server's flight", "the server's flight has %d records, want 2 to %d", res.ServerFlightRecords, maxFlightRecords)
	}
	return Flight{Records: res.ServerFlightRecords, Bytes: res.ServerFlightBytes}, res, nil
}

// minFlightReader is the smallest buffer ReadFlight reads through: a
// record header and a ServerHello up to its random.
const minFlightReader = 64

// ErrShortFlight says the server closed the connection before its whole
// flight arrived; ReadFlight wraps it in a KindDial *Error.
var ErrShortFlight = errors.New("short flight")

// ReadFlight reads and discards what the server sends in answer to a
// replayed ClientHello, record by record, until want.Records records have
// arrived, and returns the bytes read (whole records, headers included).
// It decrypts nothing: a whole flight only says the server did its part.
// It checks each record header (a TLS content type, version 0x03xx, at
// most 2^14+256 bytes, RFC 8446 Section 5.2) and that the first record is
// a ServerHello that is not a HelloRetryRequest. Errors are *Error: a
// plaintext alert is KindAlert, an answer that is no TLS KindNotTLS, bad
// headers KindMalformed, a close before the whole flight KindDial wrapping
// ErrShortFlight, a reset KindDial, a missed deadline KindTimeout. The
// deadlines are the caller's, set on the connection behind r, whose buffer
// must hold at least 64 bytes (bufio's default holds 4,096).
func ReadFlight(r *bufio.Reader, want Flight) (int, error) {
	const op = "read the server's flight"
	if want.Records < 1 || want.Records > maxFlightRecords {
		return 0, fmt.Errorf("flight of %d records: want 1 to %d", want.Records, maxFlightRecords)
	}
	if r.Size() < minFlightReader {
		// Peek of a ServerHello's first bytes needs them in the buffer.
		return 0, fmt.Errorf("a reader of %d bytes: want at least %d", r.Size(), minFlightReader)
	}
	n := 0
	for rec := 0; rec < want.Records; rec++ {
		if rec == 0 {
			if err := sniffReader(r, op, want.Records); err != nil {
				return n, err
			}
		}
		hdr, err := r.Peek(5)
		if err != nil {
			return n, flightErr(op, err, rec, want.Records)
		}
		typ, size := hdr[0], int(binary.BigEndian.Uint16(hdr[3:]))
		switch {
		case typ < recordChangeCipherSpec || typ > recordApplicationData:
			return n, malformed(op, "unknown record type %d", typ)
		case hdr[1] != 3:
			return n, malformed(op, "record version 0x%02x%02x is not TLS", hdr[1], hdr[2])
		case size > maxCiphertext:
			return n, malformed(op, "record of %d bytes exceeds 2^14+256 (RFC 8446 Section 5.2)", size)
		}
		if rec == 0 {
			if err := checkFirstRecord(r, op, typ, size, want.Records); err != nil {
				return n, err
			}
		}
		d, err := r.Discard(5 + size)
		n += d
		if err != nil {
			return n, flightErr(op, err, rec, want.Records)
		}
	}
	return n, nil
}

// sniffReader is recordConn.sniff for ReadFlight: an answer whose first
// bytes cannot start a TLS record names the protocol it shows. A failed
// read is reported here: bufio hands a read error out once, and a reset
// must not turn into a close at the next Peek.
func sniffReader(r *bufio.Reader, op string, want int) error {
	for n := 1; n <= 2; n++ {
		b, err := r.Peek(n)
		if !looksLikeTLS(b) {
			answer, _ := r.Peek(min(r.Buffered(), 512))
			return &Error{Kind: KindNotTLS, Op: op, Err: notTLS(answer)}
		}
		if err != nil {
			return flightErr(op, err, 0, want)
		}
	}
	return nil
}

// checkFirstRecord checks that the flight starts with a ServerHello (RFC
// 8446 Section 4.1.3): a plaintext alert is the server's refusal, and a
// HelloRetryRequest would leave the server waiting for a second
// ClientHello that never comes.
func checkFirstRecord(r *bufio.Reader, op string, typ uint8, size, want int) error {
	switch typ {
	case recordAlert:
		body, err := r.Peek(5 + min(size, 2))
		if err != nil {
			return flightErr(op, err, 0, want)
		}
		return alertErr(op, body[5:])
	case recordHandshake:
	default:
		return malformed(op, "the flight starts with a record of type %d, want a ServerHello", typ)
	}
	// Handshake header (4), legacy_version (2), random (32).
	const randomEnd = 5 + 4 + 2 + 32
	if size < randomEnd-5 {
		return malformed(op, "first record of %d bytes is too short for a ServerHello", size)
	}
	b, err := r.Peek(randomEnd)
	if err != nil {
		return flightErr(op, err, 0, want)
	}
	if b[5] != typeServerHello {
		return malformed(op, "the flight starts with handshake message type %d, want a ServerHello", b[5])
	}
	if bytes.Equal(b[randomEnd-32:randomEnd], helloRetryRandom) {
		return unsupported(op, "the server answered with a HelloRetryRequest")
	}
	return nil
}

// flightErr classifies a failed read after rec of want records.
func flightErr(op string, err error, rec, want int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Kind: KindDial, Op: op, Err: fmt.Errorf("connection closed after %d of %d records: %w", rec, want, ErrShortFlight)}
	}
	return ioErr(op, err)
}
