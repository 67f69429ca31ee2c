package quichello

import (
	"bytes"
	"fmt"
	"slices"
)

// maxFragments bounds the separate pieces of CRYPTO data an attempt keeps
// before they join: a client cuts its ClientHello into a handful of
// frames, and a hostile one must not make every insertion walk a long
// list.
const maxFragments = 32

// handshake message header: msg_type and uint24 length (RFC 8446 Section 4).
const (
	handshakeHeaderLen       = 4
	handshakeTypeClientHello = 1
)

// assembler puts the Initial CRYPTO stream back together (RFC 9000
// Section 19.6: "the CRYPTO frames ... carry data at an offset of a byte
// stream"), in a buffer of at most limit bytes, until it holds one whole
// ClientHello.
type assembler struct {
	limit int
	buf   []byte   // stream bytes [0, len(buf)); valid where have says
	have  [][2]int // received [start, end) ranges, sorted, disjoint, not adjacent
	need  int      // length of the ClientHello with its header; 0 until known
}

// add places data at off. Data that repeats bytes already received must
// be the same bytes (RFC 9000 Section 2.2); data past the end of the
// ClientHello or the limit is refused.
func (a *assembler) add(off uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	end := off + uint64(len(data))
	if end > uint64(a.limit) {
		return fmt.Errorf("CRYPTO data up to byte %d exceeds the limit of %d bytes", end, a.limit)
	}
	if a.need > 0 && int(end) > a.need {
		return fmt.Errorf("CRYPTO data up to byte %d runs past the %d-byte ClientHello", end, a.need)
	}
	start, stop := int(off), int(end)
	if stop > len(a.buf) {
		if stop > cap(a.buf) {
			// Grow once to the whole message when its length is known,
			// else to a typical post-quantum ClientHello.
			size := max(stop, a.need, min(a.limit, 2048))
			grown := make([]byte, stop, size)
			copy(grown, a.buf)
			a.buf = grown
		} else {
			a.buf = a.buf[:stop]
		}
	}
	for _, r := range a.have {
		lo, hi := max(r[0], start), min(r[1], stop)
		if lo < hi && !bytes.Equal(a.buf[lo:hi], data[lo-start:hi-start]) {
			return fmt.Errorf("CRYPTO bytes %d..%d differ from the copy received before", lo, hi)
		}
	}
	copy(a.buf[start:], data)
	if err := a.mark(start, stop); err != nil {
		return err
	}
	return a.readHeader()
}

// mark records [start, stop) as received, merging it with the ranges it
// touches.
func (a *assembler) mark(start, stop int) error {
	i := 0
	for i < len(a.have) && a.have[i][1] < start {
		i++
	}
	j := i
	for j < len(a.have) && a.have[j][0] <= stop {
		start, stop = min(start, a.have[j][0]), max(stop, a.have[j][1])
		j++
	}
	a.have = slices.Replace(a.have, i, j, [2]int{start, stop})
	if len(a.have) > maxFragments {
		return fmt.Errorf("more than %d separate pieces of CRYPTO data", maxFragments)
	}
	return nil
}

// readHeader learns the message length once the first 4 bytes are in.
func (a *assembler) readHeader() error {
	if a.need > 0 || len(a.have) == 0 || a.have[0][0] != 0 || a.have[0][1] < handshakeHeaderLen {
		return nil
	}
	if a.buf[0] != handshakeTypeClientHello {
		return fmt.Errorf("first handshake message has type %d, not client_hello (1)", a.buf[0])
	}
	need := handshakeHeaderLen + (int(a.buf[1])<<16 | int(a.buf[2])<<8 | int(a.buf[3]))
	if need > a.limit {
		return fmt.Errorf("the ClientHello's %d bytes exceed the limit of %d", need, a.limit)
	}
	if len(a.buf) > need {
		return fmt.Errorf("CRYPTO data up to byte %d runs past the %d-byte ClientHello", len(a.buf), need)
	}
	a.need = need
	return nil
}

// complete reports whether the whole ClientHello is in.
func (a *assembler) complete() bool {
	return a.need > 0 && len(a.have) == 1 && a.have[0] == [2]int{0, a.need}
}

// message is the ClientHello once complete.
func (a *assembler) message() []byte { return a.buf[:a.need] }
