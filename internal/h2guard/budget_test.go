package h2guard

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// trickled is a GET request's header block sent as a 1-byte HEADERS frame
// and 1-byte CONTINUATION frames, the last with END_HEADERS: a valid
// request that costs the server a frame read per byte.
func trickled(id uint32) []byte {
	out := frame(frameHeaders, flagEndStream, id, getBlock[:1])
	for i := 1; i < len(getBlock); i++ {
		flags := byte(0)
		if i == len(getBlock)-1 {
			flags = flagEndHeaders
		}
		out = append(out, frame(frameContinuation, flags, id, getBlock[i:i+1])...)
	}
	return out
}

// fragmented is a header block of n bytes (a GET, padded with a long
// header field) split the way clients split one: HEADERS and CONTINUATION
// frames of size bytes each, the last shorter.
func fragmented(id uint32, n, size int) []byte {
	value := make([]byte, n-len(getBlock)-8)
	for i := range value {
		value[i] = 'v'
	}
	// A literal without indexing, new name "x-big", its value's length an
	// HPACK integer (RFC 7541 Section 5.1) with a 7-bit prefix.
	block := concat(getBlock, []byte{0x00, 5}, []byte("x-big"), hpackLen(len(value)), value)
	var out []byte
	for i := 0; i < len(block); i += size {
		typ, flags := byte(frameContinuation), byte(0)
		if i == 0 {
			typ, flags = frameHeaders, flagEndStream
		}
		if i+size >= len(block) {
			flags |= flagEndHeaders
		}
		out = append(out, frame(typ, flags, id, block[i:min(i+size, len(block))])...)
	}
	return out
}

func hpackLen(n int) []byte {
	if n < 127 {
		return []byte{byte(n)}
	}
	out := []byte{127}
	for n -= 127; n >= 128; n >>= 7 {
		out = append(out, byte(n%128+128))
	}
	return append(out, byte(n))
}

// TestSmallHeaderFragments: a header block's frames that do not end it
// are as large as the sender's frames allow (RFC 9113 Section 4.2: at
// least 16,384 bytes); a client sending them a byte at a time makes the
// server read a frame per byte, and each counts like an empty one. A large
// block split as clients split it does not count.
func TestSmallHeaderFragments(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		empties int
	}{
		{name: "a request a byte a frame", in: trickled(1), empties: len(getBlock) - 1},
		{name: "a 40 KiB block in 16 KiB frames", in: fragmented(1, 40<<10, 16<<10)},
		{name: "a 3 KiB block in minimum-useful frames", in: fragmented(1, 3<<10, MinHeaderFragment)},
		{name: "a 3 KiB block in frames one byte short", in: fragmented(1, 3<<10, MinHeaderFragment-1), empties: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFrameReader()
			r.feed(concat(prefaceAndSettings, tt.in), time.Unix(0, 0))
			if got := r.take(); got.empties != tt.empties || got.streams != 1 {
				t.Errorf("empties %d streams %d; want %d 1", got.empties, got.streams, tt.empties)
			}
		})
	}
}

// TestTrickledRequestsClosed: valid requests whose header blocks come a
// byte a frame, through a real server: closed for empty_frames.
func TestTrickledRequestsClosed(t *testing.T) {
	s := startH2Server(t, Options{}, nil)
	r := dialRaw(t, s.addr)
	go flood(trickled)(r)
	r.waitClosed(t, 15*time.Second)
	waitFor(t, "the abuse to be reported", func() bool { return len(s.abuses()) == 1 })
	if got := s.abuses()[0]; got != ReasonEmptyFrames {
		t.Errorf("closed for %q, want %q", got, ReasonEmptyFrames)
	}
}

// TestEarlyRefusedStreams: a client may open more streams than the
// server's SETTINGS_MAX_CONCURRENT_STREAMS before it has that SETTINGS
// frame (the initial value is unlimited, RFC 9113 Sections 5.1.2 and
// 6.5.2); net/http then refuses the extra streams with REFUSED_STREAM,
// for the client to retry. Those refusals do not count against it; once
// the client has acknowledged the server's SETTINGS, streams over the
// limit are its fault (net/http answers PROTOCOL_ERROR) and count.
func TestEarlyRefusedStreams(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	done := func() { once.Do(func() { close(release) }) }
	t.Cleanup(done)
	s := startH2Server(t, Options{MaxGlitches: 20}, func(w http.ResponseWriter, r *http.Request) {
		select { // hold every stream open
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "ok")
	})
	const streams = 250 + 100 // net/http's default limit, and 100 over it
	r := dialRawNoAck(t, s.addr)
	var first []byte
	for id := uint32(1); id < 2*streams; id += 2 {
		first = append(first, headers(id, flagEndHeaders|flagEndStream)...)
	}
	if err := r.write(first); err != nil {
		t.Fatal(err)
	}
	// Wait until the server has started the 250, then for the refusals'
	// verdict: a close would come within milliseconds.
	waitFor(t, "the streams to start", func() bool { return s.handled.Load() == 250 })
	select {
	case <-r.closed:
		t.Fatalf("a client opening streams before it saw the server's SETTINGS was closed for %q", s.abuses())
	case <-time.After(500 * time.Millisecond):
	}
	// Now it acknowledges, and goes over the limit knowingly.
	r.write(frame(frameSettings, 1, 0, nil))
	go flood(func(id uint32) []byte { return headers(2*streams+id, flagEndHeaders|flagEndStream) })(r)
	r.waitClosed(t, 15*time.Second)
	waitFor(t, "the abuse to be reported", func() bool { return len(s.abuses()) == 1 })
	if got := s.abuses()[0]; got != ReasonProvokedReset {
		t.Errorf("closed for %q, want %q", got, ReasonProvokedReset)
	}
}

// dialRawNoAck is dialRaw without the ACK of the server's SETTINGS.
func dialRawNoAck(t testing.TB, addr string) *rawH2 {
	t.Helper()
	return dialRawWith(t, addr, prefaceAndSettings)
}

// TestCreditCeiling: what a connection earned and did not spend carries
// into later windows up to CreditCeiling, and no further, whatever it
// downloaded.
func TestCreditCeiling(t *testing.T) {
	const window = time.Second
	sc := &scriptConn{}
	for _, tt := range []struct {
		control int
		closed  bool
	}{{100 + CreditCeiling, false}, {100 + CreditCeiling + 1, true}} {
		t.Run(fmt.Sprint(tt.control), func(t *testing.T) {
			c, _ := Unwrap(Wrap(sc, Options{MaxControlFrames: 100, GlitchWindow: window, HeaderTimeout: time.Hour}))
			start := time.Now()
			// 256 MiB in 16 KiB frames earns 4*(16,384 + 65,536).
			c.countLocked(start, tally{dataSent: 16384, dataBytes: 256 << 20})
			c.countLocked(start.Add(2*window), tally{control: tt.control})
			if got := c.ClosedFor() != ""; got != tt.closed {
				t.Errorf("closed %v (for %q), want %v", got, c.ClosedFor(), tt.closed)
			}
		})
	}
}

// TestParallelDownloadsReadLate: the legitimate side of the ceiling. Go's
// client takes four 4 MiB bodies at once (its stream window each), its
// reader pauses past the window, then reads them 4 KiB at a time: 8,192
// WINDOW_UPDATEs in windows in which the server sends nothing. Then a
// 32 MiB download read 4 KiB at a time across many short windows.
func TestParallelDownloadsReadLate(t *testing.T) {
	const window = 100 * time.Millisecond
	s := startH2Server(t, Options{GlitchWindow: window}, func(w http.ResponseWriter, r *http.Request) {
		n := 4 << 20
		if r.URL.Path == "/long" {
			n = 32 << 20
		}
		chunk := make([]byte, 64<<10)
		for ; n > 0; n -= len(chunk) {
			w.Write(chunk)
		}
	})
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true,
	}}
	defer c.CloseIdleConnections()
	var bodies []*http.Response
	for range 4 {
		resp, err := c.Get("https://" + s.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp)
	}
	time.Sleep(3 * window)
	for i, resp := range bodies {
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{resp.Body}, make([]byte, 4<<10))
		resp.Body.Close()
		if err != nil || n != 4<<20 {
			t.Fatalf("download %d: read %d bytes: %v (closed for %q)", i, n, err, s.abuses())
		}
	}
	resp, err := c.Get("https://" + s.addr + "/long")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{resp.Body}, make([]byte, 4<<10))
	resp.Body.Close()
	if err != nil || n != 32<<20 {
		t.Fatalf("32 MiB download: read %d bytes: %v (closed for %q)", n, err, s.abuses())
	}
	if a := s.abuses(); len(a) != 0 {
		t.Errorf("Go's client reading downloads late was closed for %q", a)
	}
}

// TestDataDribble: CVE-2019-9511. A client that sets its stream window to
// 1 byte and returns each byte as it arrives, stream and connection, makes
// the server send a DATA frame per byte; with an allowance of 4 control
// frames per DATA frame sent, its two WINDOW_UPDATEs per frame were paid
// for and the dribble went on as long as the body. Frames smaller than
// MinDataFrame earn only their share of bytes, so it is closed.
func TestDataDribble(t *testing.T) {
	for _, window := range []uint32{1, MinDataFrame - 1} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			s := startH2Server(t, Options{}, func(w http.ResponseWriter, r *http.Request) {
				chunk := make([]byte, 64<<10)
				for range 64 { // 4 MiB, 4 Ki frames or more
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})
			c, err := tls.Dial("tcp", s.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			io.WriteString(c, http2.ClientPreface)
			fr := http2.NewFramer(c, c)
			fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: getBlock, EndStream: true, EndHeaders: true})
			frames, start := 0, time.Now()
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					break // closed
				}
				switch f := f.(type) {
				case *http2.DataFrame:
					if n := uint32(len(f.Data())); n > 0 {
						frames++
						fr.WriteWindowUpdate(1, n)
						fr.WriteWindowUpdate(0, n)
					}
					if f.StreamEnded() {
						t.Fatalf("the dribble ran to the end of the body (%d frames, closed for %q)", frames, s.abuses())
					}
				case *http2.SettingsFrame:
					if !f.IsAck() {
						fr.WriteSettingsAck()
					}
				}
			}
			t.Logf("closed after %d DATA frames, %v", frames, time.Since(start).Round(time.Millisecond))
			waitFor(t, "the abuse to be reported", func() bool { return len(s.abuses()) == 1 })
			if got := s.abuses()[0]; got != ReasonControlFrames {
				t.Errorf("closed for %q, want %q", got, ReasonControlFrames)
			}
		})
	}
}

// TestRefused: requests the server answered itself with an error have a
// budget of their own, MaxGlitches per window, apart from the resets'.
func TestRefused(t *testing.T) {
	const window = time.Second
	tests := []struct {
		name    string
		opts    Options
		refused []int // refusals in each window
		resets  int   // client RST_STREAMs in the first window
		closed  bool
	}{
		{name: "the budget", opts: Options{MaxGlitches: 20}, refused: []int{20}},
		{name: "one more", opts: Options{MaxGlitches: 20}, refused: []int{21}, closed: true},
		{name: "the budget each window", opts: Options{MaxGlitches: 20}, refused: []int{20, 20, 20}},
		{name: "apart from resets", opts: Options{MaxGlitches: 20}, refused: []int{20}, resets: 20},
		{name: "checks off", opts: Options{MaxGlitches: -1, MaxControlFrames: -1}, refused: []int{1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.GlitchWindow, o.HeaderTimeout = window, time.Hour
			sc := &scriptConn{}
			c, _ := Unwrap(Wrap(sc, o))
			start := time.Now()
			c.countLocked(start, tally{resets: tt.resets})
			closed := false
			for w, n := range tt.refused {
				c.countLocked(start.Add(time.Duration(w)*2*window), tally{})
				for range n {
					closed = c.Refused()
				}
			}
			closedOnce(c)
			if closed != tt.closed || sc.closed != tt.closed {
				t.Fatalf("Refused reported %v, the conn closed %v; want %v", closed, sc.closed, tt.closed)
			}
			if tt.closed && c.ClosedFor() != ReasonRefusedRequests {
				t.Errorf("closed for %q, want %q", c.ClosedFor(), ReasonRefusedRequests)
			}
		})
	}
}
