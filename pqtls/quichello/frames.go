package quichello

import (
	"fmt"

	"github.com/quic-go/quic-go/quicvarint"
)

// Frame types a client may send in an Initial packet (RFC 9000
// Section 12.4, Table 3); any other is a PROTOCOL_VIOLATION there.
const (
	framePadding         = 0x00
	framePing            = 0x01
	frameACK             = 0x02
	frameACKECN          = 0x03
	frameCrypto          = 0x06
	frameConnectionClose = 0x1c
)

// walkFrames reads the frames of a decrypted Initial payload and calls
// crypto for each CRYPTO frame (RFC 9000 Section 19.6) with its offset and
// data. An empty payload, a frame not allowed in an Initial or a
// truncated frame is an error: an authenticated packet that breaks the
// rules means a broken client, not noise.
func walkFrames(payload []byte, crypto func(offset uint64, data []byte) error) error {
	if len(payload) == 0 {
		// A packet must carry at least one frame (Section 12.4).
		return fmt.Errorf("Initial packet without frames")
	}
	for i := 0; i < len(payload); {
		typ := payload[i]
		at := i
		i++
		switch typ {
		case framePadding, framePing:
			continue
		case frameACK, frameACKECN:
			n, err := skipACK(payload[i:], typ == frameACKECN)
			if err != nil {
				return fmt.Errorf("ACK frame at byte %d: %w", at, err)
			}
			i += n
		case frameCrypto:
			off, n1, err := quicvarint.Parse(payload[i:])
			if err != nil {
				return fmt.Errorf("CRYPTO frame at byte %d: offset truncated", at)
			}
			length, n2, err := quicvarint.Parse(payload[i+n1:])
			if err != nil {
				return fmt.Errorf("CRYPTO frame at byte %d: length truncated", at)
			}
			i += n1 + n2
			if length > uint64(len(payload)-i) {
				return fmt.Errorf("CRYPTO frame at byte %d: length %d exceeds the %d bytes left", at, length, len(payload)-i)
			}
			// The stream cannot reach 2^62 (Section 19.6).
			if off+length > quicvarint.Max {
				return fmt.Errorf("CRYPTO frame at byte %d: offset %d + length %d exceeds 2^62-1", at, off, length)
			}
			if err := crypto(off, payload[i:i+int(length)]); err != nil {
				return fmt.Errorf("CRYPTO frame at byte %d (offset %d, %d bytes): %w", at, off, length, err)
			}
			i += int(length)
		case frameConnectionClose:
			// The client gave up; what it says does not matter here, but
			// the frame must be whole.
			n, err := skipVarints(payload[i:], 2)
			if err != nil {
				return fmt.Errorf("CONNECTION_CLOSE frame at byte %d: %w", at, err)
			}
			i += n
			reason, n, err := quicvarint.Parse(payload[i:])
			if err != nil || reason > uint64(len(payload)-i-n) {
				return fmt.Errorf("CONNECTION_CLOSE frame at byte %d: reason phrase truncated", at)
			}
			i += n + int(reason)
		default:
			return fmt.Errorf("frame type 0x%02x at byte %d is not allowed in an Initial packet (RFC 9000 Section 12.4)", typ, at)
		}
	}
	return nil
}

// skipACK returns the length of an ACK frame's body (RFC 9000
// Section 19.3): Largest Acknowledged, ACK Delay, ACK Range Count, First
// ACK Range, the ranges (Gap and Length each), and three ECN counts for
// type 0x03.
func skipACK(b []byte, ecn bool) (int, error) {
	n, err := skipVarints(b, 2)
	if err != nil {
		return 0, err
	}
	ranges, m, err := quicvarint.Parse(b[n:])
	if err != nil {
		return 0, fmt.Errorf("range count truncated")
	}
	n += m
	// Each range takes at least 2 bytes: a count beyond what is left
	// cannot be honest, and would only make the loop below long.
	if ranges > uint64(len(b)-n)/2 {
		return 0, fmt.Errorf("range count %d exceeds the %d bytes left", ranges, len(b)-n)
	}
	count := 1 + 2*int(ranges) // First ACK Range, then Gap and Length pairs
	if ecn {
		count += 3
	}
	m, err = skipVarints(b[n:], count)
	if err != nil {
		return 0, err
	}
	return n + m, nil
}

// skipVarints returns the bytes taken by count variable-length integers
// at the start of b (RFC 9000 Section 16).
func skipVarints(b []byte, count int) (int, error) {
	n := 0
	for range count {
		_, m, err := quicvarint.Parse(b[n:])
		if err != nil {
			return 0, fmt.Errorf("truncated")
		}
		n += m
	}
	return n, nil
}
