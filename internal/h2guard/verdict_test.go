package h2guard

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

func ping() []byte     { return frame(framePing, 0, 0, make([]byte, 8)) }
func settings() []byte { return frame(frameSettings, 0, 0, []byte{0, 3, 0, 0, 0, 100}) }
func windowUpdate(stream, inc uint32) []byte {
	return frame(frameWindowUpdate, 0, stream, binary.BigEndian.AppendUint32(nil, inc))
}
func priority(stream, dep uint32) []byte {
	return frame(framePriority, 0, stream, append(binary.BigEndian.AppendUint32(nil, dep), 15))
}
func priorityUpdate(stream uint32) []byte {
	return frame(framePriorityUpdate, 0, 0, append(binary.BigEndian.AppendUint32(nil, stream), "u=1"...))
}
func serverRST(stream, code uint32) []byte {
	return frame(frameRSTStream, 0, stream, binary.BigEndian.AppendUint32(nil, code))
}
func serverData(stream uint32) []byte { return frame(frameData, 0, stream, []byte("some bytes")) }

// serverData16K is a DATA frame of the default SETTINGS_MAX_FRAME_SIZE.
func serverData16K(stream uint32) []byte { return frame(frameData, 0, stream, make([]byte, 16384)) }

func repeat(n int, f func(i int) []byte) []byte {
	var out []byte
	for i := range n {
		out = append(out, f(i)...)
	}
	return out
}

func TestFrameWriter(t *testing.T) {
	tests := []struct {
		name      string
		in        []byte
		provoked  int
		dataSent  int
		dataBytes int
	}{
		// dataSent counts the frames of at least MinDataFrame bytes,
		// dataBytes the payload of all.
		{name: "settings and a response", in: concat(frame(frameSettings, 0, 0, nil), frame(frameHeaders, flagEndHeaders, 1, []byte{0x88}), serverData(1)), dataBytes: 10},
		{name: "a DATA frame of MinDataFrame", in: frame(frameData, 0, 1, make([]byte, MinDataFrame)), dataSent: 1, dataBytes: MinDataFrame},
		{name: "a DATA frame one byte short", in: frame(frameData, 0, 1, make([]byte, MinDataFrame-1)), dataBytes: MinDataFrame - 1},
		{name: "reset after a complete response (RFC 9113 Section 8.1)", in: serverRST(1, errCodeNo)},
		{name: "reset for a handler's panic", in: serverRST(1, errCodeInternal)},
		{name: "cancel", in: serverRST(1, errCodeCancel)},
		{name: "protocol error", in: serverRST(1, 0x1), provoked: 1},
		{name: "flow-control error", in: serverRST(1, 0x3), provoked: 1},
		{name: "stream closed", in: serverRST(1, 0x5), provoked: 1},
		{name: "refused stream", in: serverRST(1, 0x7), provoked: 1},
		{name: "unknown code", in: serverRST(1, 0x77), provoked: 1},
		{name: "many", in: concat(serverData(1), serverRST(3, 1), serverData(1), serverRST(5, 0), serverRST(7, 5)), provoked: 2, dataBytes: 20},
		{name: "large and empty DATA", in: concat(frame(frameData, 0, 1, make([]byte, 70000)), frame(frameData, flagEndStream, 1, nil), serverRST(1, 1)), provoked: 1, dataSent: 1, dataBytes: 70000},
		{name: "code cut short", in: serverRST(1, 1)[:11]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, step := range []int{len(tt.in), 1, 3, 7} {
				w := newFrameWriter()
				for i := 0; i < len(tt.in); i += step {
					w.feed(tt.in[i:min(i+step, len(tt.in))])
				}
				got := w.take()
				if got.provoked != tt.provoked || got.dataSent != tt.dataSent || got.dataBytes != tt.dataBytes {
					t.Fatalf("in pieces of %d: provoked %d data %d (%d bytes); want %d %d (%d bytes)", step, got.provoked, got.dataSent, got.dataBytes, tt.provoked, tt.dataSent, tt.dataBytes)
				}
			}
		})
	}
}

func TestFrameReaderControl(t *testing.T) {
	tests := []struct {
		name             string
		in               []byte
		control, streams int
	}{
		{name: "preface, settings, ack, window", in: concat(prefaceAndSettings, frame(frameSettings, 1, 0, nil), windowUpdate(0, 1<<20)), control: 3},
		{name: "requests", in: concat(prefaceAndSettings, headers(1, 5), headers(3, 5), headers(5, 0), frame(frameContinuation, flagEndHeaders, 5, []byte{0x40})), control: 1, streams: 3},
		{name: "pings", in: concat(prefaceAndSettings, ping(), ping(), frame(framePing, 1, 0, make([]byte, 8))), control: 4},
		{name: "priorities", in: concat(prefaceAndSettings, priority(3, 0), priority(5, 3), priorityUpdate(1)), control: 4},
		{name: "unknown types", in: concat(prefaceAndSettings, frame(0xfa, 0, 0, []byte("x")), frame(0x0a, 0, 0, nil)), control: 3},
		{name: "goaway", in: concat(prefaceAndSettings, frame(frameGoAway, 0, 0, make([]byte, 8))), control: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFrameReader()
			r.feed(tt.in, time.Unix(0, 0))
			if got := r.take(); got.control != tt.control || got.streams != tt.streams {
				t.Fatalf("control %d streams %d; want %d %d", got.control, got.streams, tt.control, tt.streams)
			}
		})
	}
}

// scriptConn is a net.Conn that returns the client's bytes to Read one
// frame run at a time and takes the server's Writes.
type scriptConn struct {
	net.Conn
	reads  [][]byte
	closed bool
}

func (c *scriptConn) Read(b []byte) (int, error) {
	if len(c.reads) == 0 {
		return 0, net.ErrClosed
	}
	n := copy(b, c.reads[0])
	if c.reads[0] = c.reads[0][n:]; len(c.reads[0]) == 0 {
		c.reads = c.reads[1:]
	}
	return n, nil
}
func (c *scriptConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *scriptConn) Close() error                     { c.closed = true; return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// closedOnce waits until a connection closed for abuse has sent its
// GOAWAY (or given up) and closed what is under it.
func closedOnce(c *Conn) {
	if c.ClosedFor() != "" {
		<-c.shut
	}
}

// step is bytes from the client (read) or from the server (write).
type step struct {
	client, server []byte
}

// TestVerdict: frames in both directions in, the guard's verdict out.
func TestVerdict(t *testing.T) {
	opts := Options{MaxGlitches: 20, MaxControlFrames: 50, GlitchWindow: time.Hour, HeaderTimeout: time.Hour}
	start := []step{{client: concat(prefaceAndSettings, windowUpdate(0, 1<<20))}, {server: frame(frameSettings, 0, 0, nil)}, {client: frame(frameSettings, 1, 0, nil)}}
	// A client that takes 1 MiB DATA frames (Go's transport advertises
	// SETTINGS_MAX_FRAME_SIZE 1 MiB) and returns credit for every 4 KiB
	// it reads, stream and connection: 512 WINDOW_UPDATEs for one frame.
	bigFrame := frame(frameData, 0, 1, make([]byte, 1<<20))
	bigDownload := []step{{server: bigFrame}, {client: repeat(256, func(int) []byte { return concat(windowUpdate(1, 4096), windowUpdate(0, 4096)) })}}
	// The same frame does not buy a flood: its allowance is 4 per 4 KiB.
	bigThenFlood := []step{{server: bigFrame}, {client: repeat(4*257+50+1, func(int) []byte { return ping() })}}
	var pingFlood, settingsFlood, priorityFlood, updateFlood, windowFlood, unknownFlood, madeYouReset, dataAfterEnd, download, dribble, browsing []step
	// Streams opened before the client acknowledged the server's SETTINGS,
	// over its limit, refused (REFUSED_STREAM): before and after the ACK
	// is read, and after it for streams begun after it.
	var opened, refusedEarly, refusedLate []step
	for i := range 60 {
		opened = append(opened, step{client: headers(uint32(2*i+1), flagEndHeaders|flagEndStream)})
		refusedEarly = append(refusedEarly, step{server: serverRST(uint32(2*i+1), errCodeRefused)})
		refusedLate = append(refusedLate, step{client: headers(uint32(2*i+121), flagEndHeaders|flagEndStream)}, step{server: serverRST(uint32(2*i+121), errCodeRefused)})
	}
	ack := step{client: frame(frameSettings, flagAck, 0, nil)}
	var neverAcked []step
	for i := range EarlyRefusals + 21 {
		neverAcked = append(neverAcked, step{client: headers(uint32(2*i+1), flagEndHeaders|flagEndStream)}, step{server: serverRST(uint32(2*i+1), errCodeRefused)})
	}
	for i := range 60 {
		id := uint32(2*i + 1)
		pingFlood = append(pingFlood, step{client: ping()}, step{server: frame(framePing, 1, 0, make([]byte, 8))})
		settingsFlood = append(settingsFlood, step{client: settings()}, step{server: frame(frameSettings, 1, 0, nil)})
		priorityFlood = append(priorityFlood, step{client: priority(id, 0)})
		updateFlood = append(updateFlood, step{client: priorityUpdate(1)})
		windowFlood = append(windowFlood, step{client: windowUpdate(0, 1)})
		unknownFlood = append(unknownFlood, step{client: frame(0xde, 0, 0, []byte("grease"))})
		// WINDOW_UPDATE of 0 on an open stream: the server resets it with
		// PROTOCOL_ERROR (RFC 9113 Section 6.9).
		madeYouReset = append(madeYouReset, step{client: concat(headers(id, flagEndHeaders), windowUpdate(id, 0))}, step{server: serverRST(id, 0x1)})
		// DATA after END_STREAM: STREAM_CLOSED (RFC 9113 Section 5.1).
		dataAfterEnd = append(dataAfterEnd, step{client: concat(headers(id, 5), frame(frameData, 0, id, []byte("x")))}, step{server: serverRST(id, 0x5)})
		// One large download: the client returns credit after every DATA
		// frame, for the stream and the connection, and probes with a PING.
		download = append(download, step{server: repeat(4, func(int) []byte { return serverData16K(1) })},
			step{client: repeat(4, func(int) []byte { return concat(windowUpdate(1, 16384), windowUpdate(0, 16384)) })}, step{client: ping()})
		// The same client with a 10-byte window: a DATA frame per 10
		// bytes, credit for each (CVE-2019-9511).
		dribble = append(dribble, step{server: serverData(1)}, step{client: concat(windowUpdate(1, 10), windowUpdate(0, 10))})
		// A browser: a request, a reprioritisation, the response, and a
		// reset with NO_ERROR after it (the request body not read).
		browsing = append(browsing, step{client: concat(headers(id, flagEndHeaders), priorityUpdate(id), priority(id, 0))},
			step{server: concat(frame(frameHeaders, flagEndHeaders, id, []byte{0x88}), serverData(id), serverRST(id, errCodeNo))})
	}
	// Answers the client asks for and does not get (MaxBacklog): new
	// streams, PINGs; a stream's trailers ask for nothing more.
	var unanswered, answered, unansweredPings, cancelled []step
	for i := range MaxBacklog + 1 {
		id := uint32(2*i + 1)
		unanswered = append(unanswered, step{client: headers(id, flagEndHeaders|flagEndStream)})
		unansweredPings = append(unansweredPings, step{client: ping()})
		cancelled = append(cancelled, step{client: concat(headers(id, flagEndHeaders|flagEndStream), rst(id))})
		answered = append(answered, step{client: concat(headers(id, flagEndHeaders), headers(id, flagEndHeaders|flagEndStream))},
			step{server: frame(frameHeaders, flagEndHeaders|flagEndStream, id, []byte{0x88})})
	}
	pingsOnly := &Options{MaxGlitches: 20, MaxControlFrames: -1, GlitchWindow: time.Hour, HeaderTimeout: time.Hour}
	tests := []struct {
		name   string
		steps  []step
		opts   *Options
		noAck  bool // the client does not acknowledge the server's SETTINGS
		reason string
	}{
		{name: "PING flood", steps: pingFlood, reason: ReasonControlFrames},
		{name: "SETTINGS flood", steps: settingsFlood, reason: ReasonControlFrames},
		{name: "PRIORITY flood", steps: priorityFlood, reason: ReasonControlFrames},
		{name: "PRIORITY_UPDATE flood", steps: updateFlood, reason: ReasonControlFrames},
		{name: "WINDOW_UPDATE flood", steps: windowFlood, reason: ReasonControlFrames},
		{name: "unknown frame flood", steps: unknownFlood, reason: ReasonControlFrames},
		{name: "MadeYouReset: WINDOW_UPDATE of 0", steps: madeYouReset, reason: ReasonProvokedReset},
		{name: "MadeYouReset: DATA after END_STREAM", steps: dataAfterEnd, reason: ReasonProvokedReset},
		{name: "a large download", steps: download},
		{name: "a 10-byte DATA dribble", steps: dribble, reason: ReasonControlFrames},
		{name: "REFUSED_STREAM before the SETTINGS ACK", noAck: true, steps: append(append([]step(nil), opened...), refusedEarly...)},
		{name: "REFUSED_STREAM after the ACK, for streams begun before it", noAck: true, steps: append(append(append([]step(nil), opened...), ack), refusedEarly...)},
		{name: "REFUSED_STREAM for streams begun after the ACK", steps: refusedLate, reason: ReasonProvokedReset},
		{name: "REFUSED_STREAM beyond EarlyRefusals, never acknowledged", noAck: true, steps: neverAcked, reason: ReasonProvokedReset},
		{name: "a large download in 1 MiB frames, credit per 4 KiB read", steps: bigDownload},
		{name: "PING flood after a 1 MiB frame", steps: bigThenFlood, reason: ReasonControlFrames},
		{name: "browsing", steps: browsing},
		{name: "requests never answered", steps: unanswered, reason: ReasonBacklog},
		{name: "requests with trailers, each answered", steps: answered},
		{name: "requests cancelled by the client, never answered", steps: cancelled, opts: &Options{MaxGlitches: 1 << 20, MaxControlFrames: 50, GlitchWindow: time.Hour, HeaderTimeout: time.Hour}},
		{name: "PINGs never answered, control budget off", steps: unansweredPings, opts: pingsOnly, reason: ReasonBacklog},
		{name: "requests never answered, checks off", steps: unanswered, opts: &Options{MaxGlitches: -1, MaxControlFrames: -1, HeaderTimeout: time.Hour}},
		{name: "PING flood, checks off", steps: pingFlood, opts: &Options{MaxGlitches: -1, MaxControlFrames: -1, HeaderTimeout: time.Hour}},
		{name: "MadeYouReset, checks off", steps: madeYouReset, opts: &Options{MaxGlitches: -1, MaxControlFrames: -1, HeaderTimeout: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := opts
			if tt.opts != nil {
				o = *tt.opts
			}
			sc := &scriptConn{}
			g, _ := Unwrap(Wrap(sc, o))
			buf := make([]byte, 1<<16)
			first := start
			if tt.noAck {
				first = start[:2]
			}
			for _, s := range append(append([]step(nil), first...), tt.steps...) {
				if s.client != nil {
					sc.reads = append(sc.reads, s.client)
					for len(sc.reads) > 0 {
						if _, err := g.Read(buf); err != nil {
							break // closed for abuse: nothing more is read
						}
					}
				}
				if s.server != nil {
					g.Write(s.server)
				}
			}
			closedOnce(g)
			if got := g.ClosedFor(); got != tt.reason || sc.closed != (tt.reason != "") {
				t.Errorf("closed for %q (the conn closed: %v), want %q", got, sc.closed, tt.reason)
			}
		})
	}
}

// TestControlCreditAcrossWindows: allowance earned in one window and not
// spent there carries into the next, once; the free budget does not.
func TestControlCreditAcrossWindows(t *testing.T) {
	const window = time.Second
	mib := tally{dataSent: 1, dataBytes: 1 << 20} // earns 4 * (1 + 256) = 1,028
	type at struct {
		window int // which window the tally arrives in
		t      tally
	}
	tests := []struct {
		name   string
		steps  []at
		closed bool
	}{
		{name: "credit spent in the next window", steps: []at{{0, mib}, {1, tally{control: 100 + 1028}}}},
		{name: "one more than the credit", steps: []at{{0, mib}, {1, tally{control: 100 + 1029}}}, closed: true},
		{name: "credit spent over two windows", steps: []at{{0, mib}, {1, tally{control: 600}}, {2, tally{control: 600}}}},
		{name: "credit spent once only", steps: []at{{0, mib}, {1, tally{control: 1128}}, {2, tally{control: 101}}}, closed: true},
		{name: "free budget not carried", steps: []at{{0, tally{control: 0}}, {1, tally{control: 101}}}, closed: true},
		{name: "requests earn credit too", steps: []at{{0, tally{streams: 50}}, {1, tally{control: 600}}}},
		{name: "a flood after the credit", steps: []at{{0, mib}, {1, tally{control: 1128}}, {2, tally{control: 100}}, {3, tally{control: 101}}}, closed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := &scriptConn{}
			c, _ := Unwrap(Wrap(sc, Options{MaxControlFrames: 100, GlitchWindow: window, HeaderTimeout: time.Hour}))
			start := time.Now()
			for _, s := range tt.steps {
				c.countLocked(start.Add(time.Duration(s.window)*2*window), s.t)
			}
			if got := c.ClosedFor() != ""; got != tt.closed {
				t.Errorf("closed %v (for %q), want %v", got, c.ClosedFor(), tt.closed)
			}
		})
	}
}
