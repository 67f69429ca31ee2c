package h2guard

// Error codes (RFC 9113 Section 7) a server's RST_STREAM may carry that do
// not blame the client.
const (
	// errCodeNo: Go's server resets a stream with NO_ERROR when its
	// response is complete before the request body, which RFC 9113
	// Section 8.1 allows; the client did nothing wrong.
	errCodeNo = 0x0
	// errCodeInternal: Go's server resets with INTERNAL_ERROR when a
	// handler panics, as pqedge's proxy does (http.ErrAbortHandler) when
	// an upstream fails mid-response: the upstream's fault, or ours.
	errCodeInternal = 0x2
	// errCodeRefused: a stream the server did not start, which the
	// client may retry (RFC 9113 Section 8.7); net/http refuses this way
	// only streams over its limit that the client opened before it
	// acknowledged the SETTINGS frame announcing it (frameWriter.early).
	errCodeRefused = 0x7
	// errCodeCancel: a stream the server no longer needs.
	errCodeCancel = 0x8
)

// blamesClient reports whether a RST_STREAM the server sends with code
// says the client broke the protocol: PROTOCOL_ERROR (invalid headers,
// pseudo-headers, content-length mismatch, WINDOW_UPDATE of 0, a stream
// depending on itself), FLOW_CONTROL_ERROR, STREAM_CLOSED (DATA after
// END_STREAM), REFUSED_STREAM (over the stream limit), and any code the
// guard does not know.
func blamesClient(code uint32) bool {
	switch code {
	case errCodeNo, errCodeInternal, errCodeCancel:
		return false
	}
	return true
}

// frameWriter follows the frames the server writes (net/http's own
// framing; the server sends no preface of its own, RFC 9113 Section 3.4),
// reading their 9-byte headers and a RST_STREAM's 4-byte error code
// (RFC 9113 Section 6.4), and nothing else.
type frameWriter struct {
	hdr  frameHeader
	left uint32 // payload bytes of the current frame still to pass

	code    [4]byte // a RST_STREAM's error code so far
	codeLen int     // -1: not in a RST_STREAM's code

	// earlyUpTo is the highest stream the client began before it
	// acknowledged the server's SETTINGS (the Conn sets it from its
	// frameReader before each feed); early counts the REFUSED_STREAMs
	// for those streams not blamed on the client, at most EarlyRefusals.
	earlyUpTo uint32
	early     int

	wroteFrame bool // a whole frame went out (net/http's SETTINGS first)
	goAway     bool // the guard's GOAWAY went out: nothing may follow it

	got tally // since take: provoked, dataSent and dataBytes
}

// atFrameBoundary reports whether the server wrote at least one whole
// frame and nothing of the next: a frame of the guard's may go next.
func (w *frameWriter) atFrameBoundary() bool {
	return w.wroteFrame && !w.hdr.started()
}

func newFrameWriter() frameWriter { return frameWriter{codeLen: -1} }

// feed follows b, which the server wrote.
func (w *frameWriter) feed(b []byte) {
	for i := 0; i < len(b); {
		if !w.hdr.complete() {
			i += w.hdr.fill(b[i:])
			if w.hdr.complete() {
				w.headerDone()
			}
			continue
		}
		n := min(int(w.left), len(b)-i)
		if w.codeLen >= 0 {
			n = min(n, len(w.code)-w.codeLen)
			copy(w.code[w.codeLen:], b[i:i+n])
			w.codeLen += n
			if w.codeLen == len(w.code) {
				w.resetDone()
			}
		}
		w.left -= uint32(n)
		i += n
		if w.left == 0 {
			w.frameDone()
		}
	}
}

// toFrameEnd returns how many bytes of b, written next, finish the frame
// under way (all of b if they do not): none between frames, except before
// the server's first frame, its preface (RFC 9113 Section 3.4), which
// they finish too.
func (w *frameWriter) toFrameEnd(b []byte) int {
	switch {
	case !w.hdr.started() && w.wroteFrame:
		return 0
	case w.hdr.complete():
		return min(len(b), int(w.left))
	}
	need := len(w.hdr.b) - w.hdr.n
	if len(b) < need {
		return len(b)
	}
	h := w.hdr
	h.fill(b[:need])
	return min(len(b), need+int(h.length()))
}

func (w *frameWriter) headerDone() {
	w.left = w.hdr.length()
	typ := w.hdr.typ()
	switch {
	case typ == frameRSTStream, typ == frameHeaders,
		(typ == framePing || typ == frameSettings) && w.hdr.flags()&flagAck != 0:
		// A stream's trailers, or its RST_STREAM after its HEADERS,
		// count as answers again: the backlog only ever comes out
		// lower for it, never higher.
		w.got.answered++
	}
	switch typ {
	case frameData:
		if w.left >= MinDataFrame {
			w.got.dataSent++
		}
		w.got.dataBytes += int(w.left)
	case frameRSTStream:
		if w.left >= 4 {
			w.codeLen = 0
		}
	}
	if w.left == 0 {
		w.frameDone()
	}
}

func (w *frameWriter) resetDone() {
	code := uint32(w.code[0])<<24 | uint32(w.code[1])<<16 | uint32(w.code[2])<<8 | uint32(w.code[3])
	switch {
	case code == errCodeRefused && w.hdr.stream() <= w.earlyUpTo && w.early < EarlyRefusals:
		// RFC 9113 Section 5.1.2: over a limit the client could not
		// know yet (SETTINGS_MAX_CONCURRENT_STREAMS starts unlimited,
		// Section 6.5.2).
		w.early++
	case blamesClient(code):
		w.got.provoked++
	}
	w.codeLen = -1
}

func (w *frameWriter) frameDone() {
	w.wroteFrame = true
	w.hdr.reset()
	w.codeLen = -1
}

// take returns what was counted since the last call.
func (w *frameWriter) take() tally {
	t := w.got
	w.got = tally{}
	return t
}
