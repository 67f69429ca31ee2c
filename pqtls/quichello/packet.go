package quichello

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/quic-go/quic-go/quicvarint"
)

// Header is the part of a long-header packet that is not protected
// (RFC 9000 Section 17.2): what can be read before decryption.
type Header struct {
	Version uint32
	// Type is the Long Packet Type, the two bits whose meaning depends on
	// the version (Initial is 0b00 in version 1, 0b01 in version 2).
	Type byte
	// Initial reports whether Type means Initial in Version; always false
	// for versions this package does not know.
	Initial bool
	DCID    []byte // Destination Connection ID
	SCID    []byte // Source Connection ID
	// Token is an Initial packet's address validation token (from a Retry
	// or NEW_TOKEN frame, RFC 9000 Section 8.1); empty on a first visit.
	Token []byte
	// PNOffset is where the protected packet number starts, and Len the
	// length of the whole packet (header, packet number and payload): a
	// datagram may carry more packets after it (coalescing, RFC 9000
	// Section 12.2).
	PNOffset int
	Len      int
}

// Wire limits of RFC 9000.
const (
	// maxCIDLen is the longest connection ID of QUIC version 1
	// (Section 17.2); versions 1 and 2 share it.
	maxCIDLen = 20
	// minInitialDatagram is the size a client must pad every datagram
	// carrying an Initial packet to (Section 14.1).
	minInitialDatagram = 1200
	// maxDatagram bounds what one UDP datagram can hold.
	maxDatagram = 65527
)

var (
	errShortHeader = errors.New("short-header packet (1-RTT), not an Initial")
	errNotQUIC     = errors.New("not a QUIC long-header packet")
)

// ParseHeader reads the unprotected long header of the packet at the start
// of b (RFC 9000 Section 17.2, and 17.2.2 for the Initial's token). For a
// version it does not know it reads only the version-independent fields
// (Section 5.1 of RFC 8999) and sets Len to len(b): such a datagram cannot
// be split into packets. b is not modified; the slices in the Header point
// into it.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) == 0 {
		return h, errors.New("empty packet")
	}
	if b[0]&0x80 == 0 {
		return h, errShortHeader
	}
	if len(b) < 7 {
		return h, fmt.Errorf("%w: %d bytes, shorter than a long header", errNotQUIC, len(b))
	}
	h.Version = binary.BigEndian.Uint32(b[1:5])
	if h.Version == 0 {
		return h, fmt.Errorf("%w: a Version Negotiation packet", errNotQUIC)
	}
	h.Type = b[0] >> 4 & 0x03
	off := 5
	var ok bool
	if h.DCID, off, ok = readCID(b, off); !ok {
		return h, fmt.Errorf("destination connection ID at byte 5 is truncated")
	}
	if h.SCID, off, ok = readCID(b, off); !ok {
		return h, fmt.Errorf("source connection ID at byte %d is truncated", 6+len(h.DCID))
	}
	p, known := paramsFor(h.Version)
	if !known {
		h.Len = len(b)
		return h, nil
	}
	if len(h.DCID) > maxCIDLen || len(h.SCID) > maxCIDLen {
		return h, fmt.Errorf("connection ID of %d/%d bytes is longer than %d (RFC 9000 Section 17.2)", len(h.DCID), len(h.SCID), maxCIDLen)
	}
	h.Initial = h.Type == p.initialType
	if h.Type == p.retryType() {
		// A Retry has no Length: it fills the datagram (Section 17.2.5).
		h.Len = len(b)
		return h, nil
	}
	if h.Initial {
		tokenLen, n, err := quicvarint.Parse(b[off:])
		if err != nil {
			return h, fmt.Errorf("token length at byte %d is truncated", off)
		}
		off += n
		if tokenLen > uint64(len(b)-off) {
			return h, fmt.Errorf("token of %d bytes at byte %d exceeds the %d bytes left", tokenLen, off, len(b)-off)
		}
		h.Token = b[off : off+int(tokenLen)]
		off += int(tokenLen)
	}
	length, n, err := quicvarint.Parse(b[off:])
	if err != nil {
		return h, fmt.Errorf("length at byte %d is truncated", off)
	}
	off += n
	if length > uint64(len(b)-off) {
		return h, fmt.Errorf("length %d at byte %d exceeds the %d bytes left in the datagram", length, off-n, len(b)-off)
	}
	h.PNOffset = off
	h.Len = off + int(length)
	return h, nil
}

// retryType is the Long Packet Type of Retry: 0b11 in version 1, 0b00 in
// version 2 (RFC 9369 Section 3.2).
func (p *versionParams) retryType() byte {
	if p.initialType == 0b01 {
		return 0b00
	}
	return 0b11
}

func readCID(b []byte, off int) ([]byte, int, bool) {
	if off >= len(b) {
		return nil, off, false
	}
	n := int(b[off])
	off++
	if n > len(b)-off {
		return nil, off, false
	}
	return b[off : off+n], off + n, true
}

// IsInitial reports, from the first five bytes alone, whether b starts
// with a long-header Initial packet of a version this package reads. It
// is the cheap test a socket wrapper makes on every datagram.
func IsInitial(b []byte) bool {
	if len(b) < 5 || b[0]&0x80 == 0 {
		return false
	}
	p, ok := paramsFor(binary.BigEndian.Uint32(b[1:5]))
	return ok && b[0]>>4&0x03 == p.initialType
}
