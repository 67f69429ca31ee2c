package h2guard

import "time"

// clientPreface is what an HTTP/2 client sends first (RFC 9113 Section
// 3.4); frames follow it.
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Frame types and flags the guard looks at (RFC 9113 Section 6, RFC 9218
// Section 7.1).
const (
	frameData           = 0x0
	frameHeaders        = 0x1
	framePriority       = 0x2
	frameRSTStream      = 0x3
	frameSettings       = 0x4
	framePushPromise    = 0x5
	framePing           = 0x6
	frameGoAway         = 0x7
	frameWindowUpdate   = 0x8
	frameContinuation   = 0x9
	framePriorityUpdate = 0x10

	flagAck        = 0x1 // SETTINGS, PING
	flagEndStream  = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
)

// tally is what one side's frames did since it was last taken.
type tally struct {
	// From the client.
	resets  int // RST_STREAM frames (rapid reset, CVE-2023-44487)
	empties int // empty CONTINUATION (CVE-2024-27316), empty non-final DATA (CVE-2019-9518), header-block fragments under MinHeaderFragment
	control int // frames that carry no request: SETTINGS, PING, PRIORITY, PRIORITY_UPDATE, WINDOW_UPDATE, GOAWAY, PUSH_PROMISE, unknown types
	streams int // header blocks begun (requests, or trailers)

	// From the server.
	provoked  int // RST_STREAM frames with an error code that blames the client (CVE-2025-8671)
	dataSent  int // DATA frames of at least MinDataFrame bytes
	dataBytes int // the payload bytes of all DATA frames

	// Either side.
	refused int // requests the server answered itself with an error (Conn.Refused)

	// owed (from the client) are the frames it asked of the server: a
	// new stream's answer, a PING's or a SETTINGS frame's ACK; answered
	// the frames that settle them: from the server a stream's HEADERS or
	// RST_STREAM, an ACK; from the client its RST_STREAM. They feed
	// Conn.backlog, not the window.
	owed, answered int
}

func (t *tally) add(o tally) {
	t.resets += o.resets
	t.empties += o.empties
	t.control += o.control
	t.streams += o.streams
	t.provoked += o.provoked
	t.dataSent += o.dataSent
	t.dataBytes += o.dataBytes
	t.refused += o.refused
	t.owed += o.owed
	t.answered += o.answered
}

func (t tally) glitches() int { return t.resets + t.empties + t.provoked }

// frameHeader collects a frame's 9-byte header (RFC 9113 Section 4.1) as
// its bytes arrive, for both sides' followers.
type frameHeader struct {
	b [9]byte
	n int // bytes so far
}

// fill takes what b holds of the header and returns how many bytes it
// took.
func (h *frameHeader) fill(b []byte) int {
	k := copy(h.b[h.n:], b)
	h.n += k
	return k
}

func (h *frameHeader) started() bool  { return h.n > 0 }
func (h *frameHeader) complete() bool { return h.n == len(h.b) }
func (h *frameHeader) reset()         { h.n = 0 }

func (h *frameHeader) length() uint32 {
	return uint32(h.b[0])<<16 | uint32(h.b[1])<<8 | uint32(h.b[2])
}
func (h *frameHeader) typ() byte   { return h.b[3] }
func (h *frameHeader) flags() byte { return h.b[4] }
func (h *frameHeader) stream() uint32 {
	return (uint32(h.b[5])<<24 | uint32(h.b[6])<<16 | uint32(h.b[7])<<8 | uint32(h.b[8])) & 0x7fffffff
}

// frameReader follows the frames a client sends, reading only their
// 9-byte headers (RFC 9113 Section 4.1) and counting payload bytes past
// without looking at them: it holds 9 bytes whatever the client sends.
type frameReader struct {
	preface int // preface bytes still to pass

	hdr        frameHeader
	frameStart time.Time // when the current frame's first byte arrived
	left       uint32    // payload bytes of the current frame still to pass
	padCheck   bool      // the next payload byte is a non-final DATA frame's Pad Length

	inBlock    bool      // a header block is open
	blockEnds  bool      // the current frame's payload closes it
	blockStart time.Time // when the open block's HEADERS frame began

	lastStream uint32 // the highest stream a header block began on
	acked      bool   // the client has acknowledged the server's SETTINGS
	ackedAfter uint32 // lastStream when it did

	got tally // since take
}

func newFrameReader() frameReader { return frameReader{preface: len(clientPreface)} }

// feed reads b, which arrived at now, counting glitches (frames that cost
// the server work and the client nothing: a RST_STREAM, an empty
// CONTINUATION, an empty DATA frame that does not end its stream), control
// frames and header blocks.
func (r *frameReader) feed(b []byte, now time.Time) {
	i := 0
	if r.preface > 0 {
		i = min(r.preface, len(b))
		r.preface -= i
	}
	for i < len(b) {
		if !r.hdr.complete() {
			if !r.hdr.started() {
				r.frameStart = now
			}
			i += r.hdr.fill(b[i:])
			if r.hdr.complete() {
				r.headerDone()
			}
			continue
		}
		if r.padCheck {
			// All padding, no data (RFC 9113 Section 6.1): as empty as a
			// frame without payload, and as cheap to send.
			r.padCheck = false
			if uint32(b[i])+1 >= r.hdr.length() {
				r.got.empties++
			}
		}
		n := min(int(r.left), len(b)-i)
		r.left -= uint32(n)
		i += n
		if r.left == 0 {
			r.frameDone()
		}
	}
}

// take returns what was counted since the last call.
func (r *frameReader) take() tally {
	t := r.got
	r.got = tally{}
	return t
}

// headerDone runs when a frame header is complete.
func (r *frameReader) headerDone() {
	r.left = r.hdr.length()
	typ, flags := r.hdr.typ(), r.hdr.flags()
	switch typ {
	case frameHeaders, frameContinuation:
		r.blockEnds = flags&flagEndHeaders != 0
		if typ == frameHeaders && !r.inBlock {
			r.inBlock, r.blockStart = true, r.frameStart
			if r.hdr.stream() > r.lastStream {
				// A new stream, not trailers: it is owed an answer.
				r.got.owed++
			}
			r.lastStream = max(r.lastStream, r.hdr.stream())
			r.got.streams++
		}
		// A fragment that does not end its block is as large as the
		// sender's frames (RFC 9113 Section 4.2: 16,384 bytes or more);
		// an empty or tiny one is a frame read for nothing
		// (CVE-2024-27316).
		if !r.blockEnds && r.left < MinHeaderFragment {
			r.got.empties++
		}
	case frameRSTStream:
		r.got.resets++
		// The client released the server from answering the stream
		// (net/http writes nothing more on it): a browser cancelling
		// requests does not build a backlog.
		r.got.answered++
	case frameData:
		switch {
		case flags&flagEndStream != 0:
		case r.left == 0:
			r.got.empties++
		case flags&flagPadded != 0:
			r.padCheck = true
		}
	case frameSettings:
		if flags&flagAck != 0 && !r.acked {
			// net/http sends one SETTINGS frame, first: this ACK is its.
			r.acked, r.ackedAfter = true, r.lastStream
		}
		if flags&flagAck == 0 {
			r.got.owed++ // RFC 9113 Section 6.5.3
		}
		r.got.control++
	case framePing:
		if flags&flagAck == 0 {
			r.got.owed++ // RFC 9113 Section 6.7
		}
		r.got.control++
	default:
		// Each is read, and most are answered (PING, SETTINGS: RFC 9113
		// Sections 6.7 and 6.5.3) or change server state (PRIORITY,
		// PRIORITY_UPDATE, WINDOW_UPDATE), with no request to show for
		// it; RFC 9113 Section 5.5 has a receiver ignore unknown types,
		// which still costs a read each (CVE-2019-9512, -9513, -9515).
		r.got.control++
	}
	if r.left == 0 {
		r.frameDone()
	}
}

// frameDone runs when a frame's payload has passed.
func (r *frameReader) frameDone() {
	r.hdr.reset()
	r.padCheck = false
	if r.blockEnds {
		r.blockEnds, r.inBlock = false, false
	}
}

// waitingSince reports since when the client owes the rest of something
// that must arrive within the header timeout: an open header block (RFC
// 9113 Section 4.3: HEADERS and its CONTINUATIONs, which nothing else may
// interleave), or a frame header it has begun.
func (r *frameReader) waitingSince() (time.Time, bool) {
	switch {
	case r.inBlock:
		return r.blockStart, true
	case r.preface == 0 && r.hdr.started() && !r.hdr.complete():
		return r.frameStart, true
	}
	return time.Time{}, false
}

// earlyUpTo is the highest stream the client began before it acknowledged
// the server's SETTINGS (all of them while it has not).
func (r *frameReader) earlyUpTo() uint32 {
	if !r.acked {
		return 1<<31 - 1
	}
	return r.ackedAfter
}
