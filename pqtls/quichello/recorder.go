package quichello

import (
	"errors"
	"fmt"

	"github.com/pqedge/pqedge/pqtls"
)

// Defaults of a Recorder's limits.
const (
	// DefaultLimit bounds the CRYPTO bytes one attempt buffers: 16 KiB,
	// the most quic-go accepts on a crypto stream (MaxCryptoStreamOffset in
	// its internal/protocol/params.go, v0.65), so a ClientHello the server
	// would refuse is not recorded either. Real ones are 0.3–2.5 KB.
	DefaultLimit = 16 << 10
	// DefaultMaxDatagrams bounds the datagrams one attempt may take before
	// the recorder gives up: a 16 KiB ClientHello fills 14 Initials of
	// 1,200 bytes, real ones take one to three.
	DefaultMaxDatagrams = 32
)

// ErrIncomplete is returned by Recorder.ClientHello while the ClientHello
// is still arriving.
var ErrIncomplete = pqtls.ErrClientHelloIncomplete

// ErrSkipped wraps the reason a datagram contributed nothing (not an
// Initial, failed authentication, too small): such datagrams never end an
// attempt.
var ErrSkipped = errors.New("datagram skipped")

// Recorder recovers the ClientHello of one QUIC connection attempt from
// the datagrams its client sent. It is not safe for concurrent use;
// Tracker serializes the recorders it keeps.
type Recorder struct {
	limit        int
	maxDatagrams int

	version  uint32
	odcid    []byte // the Destination Connection ID the keys come from
	hadToken bool
	keys     *initialKeys
	largest  int64 // largest packet number opened; -1 before the first
	asm      assembler
	scratch  []byte // a private copy of the datagram being opened

	seen      int // datagrams fed
	packets   int // Initial packets that carried ClientHello bytes
	datagrams int // datagrams that carried such packets
	done      bool
	err       error // why the attempt ended without a ClientHello

	ch *pqtls.ClientHello // parsed on first request
}

// NewRecorder returns a Recorder that buffers at most limit CRYPTO bytes
// (0 or less: DefaultLimit) and reads at most DefaultMaxDatagrams
// datagrams.
func NewRecorder(limit int) *Recorder {
	if limit <= 0 {
		limit = DefaultLimit
	}
	return &Recorder{limit: limit, maxDatagrams: DefaultMaxDatagrams, largest: -1, asm: assembler{limit: limit}}
}

// Done reports whether the recorder has stopped: the ClientHello is
// complete, or the attempt failed (ClientHello says why).
func (r *Recorder) Done() bool { return r.done }

// Version is the QUIC version of the attempt's Initial packets, 0 before
// the first one was opened.
func (r *Recorder) Version() uint32 { return r.version }

// HadToken reports whether the client's Initial carried an address
// validation token (RFC 9000 Section 8.1.3: from an earlier NEW_TOKEN or
// a Retry): a returning client whose address the server may trust at once.
func (r *Recorder) HadToken() bool { return r.hadToken }

// Datagram reads one UDP datagram the client sent. Datagrams that carry
// nothing for this attempt return an error wrapping ErrSkipped and change
// nothing; an error that does not wrap it ended the attempt (Done is true
// and ClientHello returns it). After Done, Datagram does nothing.
//
// d is not modified or kept: the recorder opens a private copy.
func (r *Recorder) Datagram(d []byte) error {
	if r.done {
		return nil
	}
	r.seen++
	if r.seen > r.maxDatagrams {
		return r.fail(fmt.Errorf("ClientHello not complete after %d datagrams", r.maxDatagrams))
	}
	if !IsInitial(d) {
		return fmt.Errorf("%w: does not start with a QUIC v1 or v2 Initial packet", ErrSkipped)
	}
	if len(d) < minInitialDatagram {
		// A server discards it (RFC 9000 Section 14.1); so do we, to see
		// what the server saw.
		return fmt.Errorf("%w: datagram of %d bytes carries an Initial but is smaller than %d (RFC 9000 Section 14.1)", ErrSkipped, len(d), minInitialDatagram)
	}
	if len(d) > maxDatagram {
		return fmt.Errorf("%w: datagram of %d bytes is larger than UDP allows", ErrSkipped, len(d))
	}
	r.scratch = append(r.scratch[:0], d...)
	used, skipWhy := false, error(nil)
	for rest := r.scratch; len(rest) > 0 && !r.done; {
		h, err := ParseHeader(rest)
		if err != nil {
			if !errors.Is(err, errShortHeader) {
				skipWhy = err
			}
			break // a 1-RTT packet, or bytes that cannot be split, end the datagram
		}
		pkt := rest[:h.Len]
		rest = rest[h.Len:]
		if !h.Initial || h.Version != r.versionOr(h.Version) {
			continue // 0-RTT or Handshake, or another attempt's version
		}
		carried, err := r.packet(h, pkt)
		switch {
		case err == nil:
			used = used || carried
		case errors.Is(err, ErrSkipped):
			skipWhy = err
		default:
			return r.fail(err)
		}
	}
	if used {
		r.datagrams++
	}
	if r.asm.complete() {
		r.done = true
	}
	if !used && skipWhy != nil {
		if errors.Is(skipWhy, ErrSkipped) {
			return skipWhy
		}
		return fmt.Errorf("%w: %w", ErrSkipped, skipWhy)
	}
	return nil
}

func (r *Recorder) versionOr(v uint32) uint32 {
	if r.version == 0 {
		return v
	}
	return r.version
}

// packet opens one Initial packet and feeds its CRYPTO frames. It reports
// whether the packet carried ClientHello bytes.
func (r *Recorder) packet(h Header, pkt []byte) (bool, error) {
	keys := r.keys
	if keys == nil {
		// The first Initial of the attempt: its Destination Connection ID
		// keys every Initial the client sends until a Retry (RFC 9001
		// Section 5.2), even after it switches to the server's ID.
		p, _ := paramsFor(h.Version)
		var err error
		if keys, err = newInitialKeys(p, h.DCID); err != nil {
			return false, err
		}
	}
	plain, pn, err := keys.open(pkt, h.PNOffset, r.largest)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrSkipped, err)
	}
	if r.keys == nil {
		r.keys, r.version = keys, h.Version
		r.odcid = append([]byte(nil), h.DCID...)
		r.hadToken = len(h.Token) > 0
	}
	r.largest = max(r.largest, pn)
	carried := false
	err = walkFrames(plain, func(off uint64, data []byte) error {
		carried = carried || len(data) > 0
		return r.asm.add(off, data)
	})
	if err != nil {
		return false, fmt.Errorf("Initial packet %d: %w", pn, err)
	}
	if carried {
		r.packets++
	}
	return carried, nil
}

func (r *Recorder) fail(err error) error {
	r.done = true
	r.err = fmt.Errorf("failed to record QUIC ClientHello: %w", err)
	r.asm = assembler{} // free the buffer: nothing more will be read
	r.scratch = nil
	return r.err
}

// ClientHello returns the parsed ClientHello with Wire filled in
// (Transport QUIC, Size, Packets, Datagrams), ErrIncomplete while it is
// still arriving, or why the attempt failed. The result is parsed once and
// shared: callers must not modify it.
func (r *Recorder) ClientHello() (*pqtls.ClientHello, error) {
	switch {
	case r.err != nil:
		return nil, r.err
	case !r.done:
		return nil, ErrIncomplete
	case r.ch != nil:
		return r.ch, nil
	}
	// The parser keeps references into its input: give it its own copy
	// and drop the assembly buffer.
	msg := append([]byte(nil), r.asm.message()...)
	ch, err := pqtls.ParseClientHello(msg)
	if err != nil {
		r.err = err
		return nil, err
	}
	ch.Wire = pqtls.WireShape{Size: len(msg), Transport: pqtls.TransportQUIC, Packets: r.packets, Datagrams: r.datagrams}
	r.ch = ch
	r.asm, r.scratch = assembler{}, nil
	return ch, nil
}
