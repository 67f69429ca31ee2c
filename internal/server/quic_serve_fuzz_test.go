package server

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
)

// errWouldWait is bytePeeker's answer where a QUIC stream's Peek would
// wait for bytes the client has not sent.
var errWouldWait = errors.New("peek would wait for more bytes")

// bytePeeker is a request stream whose client sent sent (and its FIN if
// fin), recording what awaitHeaders asked of it.
type bytePeeker struct {
	sent     []byte
	fin      bool
	calls    int
	peeked   int // bytes copied over all calls
	maxAsked int // the longest buffer asked to fill
}

func (p *bytePeeker) Peek(b []byte) (int, error) {
	p.calls++
	p.maxAsked = max(p.maxAsked, len(b))
	n := copy(b, p.sent)
	p.peeked += n
	switch {
	case n == len(b):
		return n, nil
	case p.fin:
		return n, io.EOF
	}
	return n, errWouldWait
}

// refHeadersEnd is where the first HEADERS frame of b ends, read as
// quic-go's frame parser reads a request stream (skipping the frames of
// types RFC 9114 does not define) within awaitHeaders' caps on what it
// skips; ok is false if b does not hold it whole, or it is over
// maxHeader, or another known frame or the caps come first.
func refHeadersEnd(b []byte, maxHeader int) (start, end int, ok bool) {
	r := bytes.NewReader(b)
	for frames := 1; ; frames++ {
		t, err := quicvarint.Read(r)
		if err != nil {
			return 0, 0, false
		}
		l, err := quicvarint.Read(r)
		if err != nil {
			return 0, 0, false
		}
		start := len(b) - r.Len()
		switch {
		case t == h3FrameHeaders:
			if l > uint64(maxHeader) || l > uint64(r.Len()) {
				return 0, 0, false
			}
			return start, start + int(l), true
		case isKnownFrame(t), l > uint64(r.Len()), start+int(l) > h3SkipMax, frames >= h3SkipFramesMax:
			return 0, 0, false
		}
		r.Seek(int64(l), io.SeekCurrent)
	}
}

// checkAwaitHeaders runs awaitHeaders on sent (with its FIN or not) and
// checks what a client can make it do: find the HEADERS frame where
// quic-go's parser ends it and return its payload, wait for no byte
// past it, and keep its
// buffers and copying in proportion to the bytes sent.
func checkAwaitHeaders(t *testing.T, sent []byte, fin bool) {
	const maxHeader = 64 << 10
	p := &bytePeeker{sent: sent, fin: fin}
	block, err := awaitHeaders(p, maxHeader)
	if start, end, ok := refHeadersEnd(sent, maxHeader); ok {
		if err != nil {
			t.Fatalf("%d bytes holding a whole HEADERS frame ending at %d: %v", len(sent), end, err)
		}
		if !bytes.Equal(block, sent[start:end]) {
			t.Fatalf("returned a block of %d bytes, want the %d of the HEADERS frame", len(block), end-start)
		}
		if p.maxAsked > end {
			t.Fatalf("asked for %d bytes, past the HEADERS frame's end at %d", p.maxAsked, end)
		}
	}
	if err != nil && err != errWouldWait && err != errH3SkipLimit && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("error %v, want a wait or an EOF", err)
	}
	// A buffer at most twice what arrived, or one step.
	if limit := max(2*len(sent), h3PeekStep) + 16; p.maxAsked > limit {
		t.Fatalf("%d bytes sent: asked to fill %d bytes (cap %d)", len(sent), p.maxAsked, limit)
	}
	// Each skipped frame costs up to five peeks of what precedes it.
	if limit := 5*h3SkipFramesMax*min(len(sent), h3SkipMax) + 4*min(len(sent), maxHeader+h3SkipMax) + 64; p.peeked > limit {
		t.Fatalf("%d bytes sent: %d bytes copied in %d peeks (cap %d)", len(sent), p.peeked, p.calls, limit)
	}
}

// awaitHeadersInputs are request streams as clients send them, and as
// an attacker might.
func awaitHeadersInputs() map[string][]byte {
	get := h3Frame(h3FrameHeaders, h3Block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/"))
	grease := h3Frame(0x21, []byte("grease"))
	var tiny []byte // 2-byte unknown frames, past h3SkipMax
	for len(tiny) < h3SkipMax+64 {
		tiny = append(tiny, 0x21, 0x00)
	}
	big := quicvarint.Append(quicvarint.Append(nil, h3FrameHeaders), 60<<10) // a header block's length alone
	huge := quicvarint.Append(quicvarint.Append(nil, h3FrameHeaders), quicvarint.Max)
	hugeUnknown := quicvarint.Append(quicvarint.Append(nil, 0x21), quicvarint.Max)
	return map[string][]byte{
		"GET":                                 get,
		"GET with a body":                     append(append([]byte(nil), get...), h3Frame(0x00, []byte("body"))...),
		"GREASE then GET":                     append(append([]byte(nil), grease...), get...),
		"HEADERS cut":                         get[:len(get)-1],
		"HEADERS frame header only":           get[:2],
		"HEADERS of 60 KiB, length only":      big,
		"HEADERS of 2^62-1, length only":      huge,
		"unknown frame of 2^62-1":             hugeUnknown,
		"8-byte varint cut at the end":        {0xc0, 0, 0, 0},
		"8-byte length cut at the end":        {0x01, 0xc0, 0, 0, 0, 0, 0},
		"2-byte unknown frames past 16 KiB":   tiny,
		"2-byte unknown frames then GET":      append(append([]byte(nil), tiny[:2*(h3SkipFramesMax-1)]...), get...),
		"2-byte unknown frames, one too many": append(append([]byte(nil), tiny[:2*h3SkipFramesMax]...), get...),
		"DATA first":                          h3Frame(0x00, []byte("x")),
		"PRIORITY_UPDATE first":               h3Frame(0xf0700, []byte{0, 'u', '=', '1'}),
		"nothing":                             nil,
	}
}

// TestAwaitHeaders: awaitHeaders on the inputs of awaitHeadersInputs,
// each with and without its FIN and cut at every length up to 64 bytes
// and a few longer. Before, a HEADERS frame's length alone (3 bytes)
// had it allocate and ask for the whole block (60 KiB), and 16 KiB of
// 2-byte unknown frames cost ~33,000 peeks copying ~270 MB.
func TestAwaitHeaders(t *testing.T) {
	for name, sent := range awaitHeadersInputs() {
		t.Run(name, func(t *testing.T) {
			for _, fin := range []bool{false, true} {
				checkAwaitHeaders(t, sent, fin)
				for _, n := range []int{0, 1, 2, 3, 5, 8, 9, 17, 33, 64, len(sent) / 2, len(sent) - 1} {
					if n >= 0 && n < len(sent) {
						checkAwaitHeaders(t, sent[:n], fin)
					}
				}
			}
		})
	}
}

// FuzzAwaitHeaders: whatever a client sends on a request stream,
// awaitHeaders does not panic, finds the HEADERS frame where quic-go's
// parser does, waits for no byte past it, and keeps its buffers and
// copying in proportion to what was sent (checkAwaitHeaders).
func FuzzAwaitHeaders(f *testing.F) {
	for _, sent := range awaitHeadersInputs() {
		f.Add(sent, false)
		f.Add(sent, true)
	}
	f.Fuzz(func(t *testing.T, sent []byte, fin bool) {
		checkAwaitHeaders(t, sent, fin)
	})
}
