package h2guard

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestToFrameEnd: after an abuse the guard lets through only what
// finishes the server's frame under way (or its first frame, the
// preface), so that its GOAWAY begins a frame.
func TestToFrameEnd(t *testing.T) {
	settings := frame(frameSettings, 0, 0, make([]byte, 12)) // 21 bytes
	data := frame(frameData, 0, 1, make([]byte, 100))        // 109 bytes
	tests := []struct {
		name    string
		written []byte // what the server wrote before
		next    []byte // its next write
		want    int
	}{
		{"between frames", settings, data, 0},
		{"before the first frame: all of it", nil, concat(settings, data), len(settings)},
		{"before the first frame, its header short", nil, settings[:5], 5},
		{"in a header", concat(settings, data[:4]), concat(data[4:], settings), len(data) - 4},
		{"header just complete", concat(settings, data[:9]), concat(data[9:], settings), 100},
		{"in a payload", concat(settings, data[:50]), concat(data[50:], settings), len(data) - 50},
		{"in a payload, next write short of its end", concat(settings, data[:50]), data[50:60], 10},
		{"in a header, next write short of its end", concat(settings, data[:2]), data[2:5], 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newFrameWriter()
			w.feed(tt.written)
			if got := w.toFrameEnd(tt.next); got != tt.want {
				t.Errorf("toFrameEnd = %d, want %d", got, tt.want)
			}
			w.feed(tt.next[:tt.want])
			if tt.want < len(tt.next) && !w.atFrameBoundary() {
				t.Error("not at a frame boundary after the frame's end")
			}
		})
	}
}

// TestGoAwayAfterServerFrame: the GOAWAY never lands inside a frame of the
// server's. Handlers write DATA on many streams while the client floods
// PINGs; every frame the client reads, the GOAWAY last, is whole, and the
// GOAWAY names the highest stream it opened. (1 MiB in all: the socket
// buffers never fill, else a write stuck at the close leaves no room for
// the GOAWAY, TestNonReadingAbuserClosed.)
func TestGoAwayAfterServerFrame(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 20<<10)
	s := startH2Server(t, Options{MaxControlFrames: 200}, func(w http.ResponseWriter, r *http.Request) {
		for range 5 {
			if _, err := w.Write(big); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	c, err := tls.Dial("tcp", s.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	// 1 MiB windows: the server writes all its DATA, in 16 KiB frames, as
	// fast as the client reads.
	settings := frame(frameSettings, 0, 0, []byte{0, 4, 0, 0x10, 0, 0})
	first := concat([]byte(clientPreface), settings, frame(frameSettings, flagAck, 0, nil), windowUpdate(0, 1<<20))
	for id := uint32(1); id <= 19; id += 2 {
		first = append(first, headerBlock(id, flagEndHeaders|flagEndStream, nil)...)
	}
	go func() {
		c.Write(first)
		for { // until closed: the DATA sent earns PINGs too
			if _, err := c.Write(ping()); err != nil {
				return
			}
		}
	}()
	var last []byte
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			if err != io.EOF && len(last) == 0 {
				t.Fatalf("the connection ended (%v) without a GOAWAY", err)
			}
			break
		}
		payload := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
		if _, err := io.ReadFull(c, payload); err != nil {
			t.Fatalf("a frame of type %#x cut short: %v", hdr[3], err)
		}
		if hdr[3] == frameGoAway {
			last = payload
		} else if last != nil {
			t.Fatalf("a frame of type %#x after the GOAWAY", hdr[3])
		}
	}
	if len(last) != 8 {
		t.Fatalf("GOAWAY payload %x, want 8 bytes", last)
	}
	if code := last[7]; code != errCodeEnhanceYourCalm {
		t.Errorf("GOAWAY code %d, want ENHANCE_YOUR_CALM", code)
	}
	if id := uint32(last[0])<<24 | uint32(last[1])<<16 | uint32(last[2])<<8 | uint32(last[3]); id != 19 {
		t.Errorf("GOAWAY last stream %d, want 19", id)
	}
}

// TestNonReadingAbuserClosed: a client that stopped reading while the
// server writes to it, then resets streams rapidly, is closed all the same: the write
// under way never finishes, so the GOAWAY cannot go out, and the
// connection does not wait for it beyond GoAwayTimeout.
func TestNonReadingAbuserClosed(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 64<<10)
	var written atomic.Int64
	s := startH2Server(t, Options{MaxGlitches: 50}, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("x-reset") != "" {
			return
		}
		for {
			n, err := w.Write(big)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	// A receive buffer so small that the server's writes stay blocked
	// once it is full (a larger one reopens as the kernel collapses it).
	raw, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.(*net.TCPConn).SetReadBuffer(4 << 10)
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	defer c.Close()
	// Windows of 2 GiB: only the socket buffers stop the server.
	settings := frame(frameSettings, 0, 0, []byte{0, 4, 0x7f, 0xff, 0xff, 0xff})
	c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	c.Write(concat([]byte(clientPreface), settings, frame(frameSettings, flagAck, 0, nil),
		windowUpdate(0, 1<<30), headerBlock(1, flagEndHeaders|flagEndStream, nil)))
	waitFor(t, "the server's writes to block", func() bool {
		before := written.Load()
		time.Sleep(200 * time.Millisecond)
		return before > 0 && written.Load() == before
	})
	for id := uint32(3); id < 1000; id += 2 {
		reset := concat(frame(frameHeaders, flagEndHeaders|flagEndStream, id, concat(getBlock, literal("x-reset", "1"))), rst(id))
		if _, err := c.Write(reset); err != nil {
			break
		}
	}
	waitFor(t, "the abuse to be reported", func() bool { return len(s.abuses()) == 1 })
	abused := time.Now()
	// What the server sent before is still buffered; then the close.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the connection is still open 10 s after the abuse")
	}
	t.Logf("closed %v after the abuse was reported (%v)", time.Since(abused), err)
}

// gateConn is a net.Conn that records what is written to it; a write
// made while gate is set waits for it, after telling entered. Reads wait
// for Close.
type gateConn struct {
	net.Conn // nil: only the methods below are used

	mu      sync.Mutex
	wire    bytes.Buffer
	gate    chan struct{}
	entered chan struct{}
	closed  chan struct{}
	once    sync.Once
}

func newGateConn() *gateConn {
	return &gateConn{entered: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (g *gateConn) Write(b []byte) (int, error) {
	g.mu.Lock()
	gate := g.gate
	g.gate = nil
	g.mu.Unlock()
	if gate != nil {
		g.entered <- struct{}{}
		<-gate
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.wire.Write(b)
}

func (g *gateConn) Read([]byte) (int, error) {
	<-g.closed
	return 0, net.ErrClosed
}

func (g *gateConn) Close() error {
	g.once.Do(func() { close(g.closed) })
	return nil
}

func (g *gateConn) SetReadDeadline(time.Time) error  { return nil }
func (g *gateConn) SetWriteDeadline(time.Time) error { return nil }

// TestGoAwayAfterWriteUnderWay: a connection found abusive while one of
// net/http's writes is under way gets its GOAWAY after the frame that
// write was in, whether the write ends inside a frame or finishes one.
// Before, the guard lost track of that write's bytes: its GOAWAY went out
// inside a DATA frame, or never.
func TestGoAwayAfterWriteUnderWay(t *testing.T) {
	settings := frame(frameSettings, 0, 0, make([]byte, 12))
	data := frame(frameData, 0, 1, make([]byte, 100))
	ping := frame(framePing, 0, 0, make([]byte, 8))
	goAway := frame(frameGoAway, 0, 0, []byte{0, 0, 0, 0, 0, 0, 0, errCodeEnhanceYourCalm})
	tests := []struct {
		name   string
		before []byte // written before the abuse
		during []byte // the write under way at the abuse
		after  []byte // net/http's next write
		want   []byte // on the wire
	}{
		{"the write under way ends inside a frame", settings, data[:50], concat(data[50:], ping), concat(settings, data, goAway)},
		{"the write under way finishes a frame", concat(settings, data[:50]), data[50:], ping, concat(settings, data, goAway)},
		{"the write under way is whole frames", settings, data, ping, concat(settings, data, goAway)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := newGateConn()
			c := Wrap(raw, Options{}).(*Conn)
			if _, err := c.Write(tt.before); err != nil {
				t.Fatal(err)
			}
			gate := make(chan struct{})
			raw.mu.Lock()
			raw.gate = gate
			raw.mu.Unlock()
			wrote := make(chan error, 1)
			go func() {
				_, err := c.Write(tt.during)
				wrote <- err
			}()
			<-raw.entered
			c.mu.Lock()
			c.abuseLocked(ReasonRapidReset) // as a read or the header timer would
			c.mu.Unlock()
			close(gate)
			<-wrote
			c.Write(tt.after)
			c.Close() // waits for the GOAWAY (at most GoAwayTimeout)
			raw.mu.Lock()
			got := raw.wire.Bytes()
			raw.mu.Unlock()
			if !bytes.Equal(got, tt.want) {
				t.Errorf("wire:\n%x\nwant:\n%x", got, tt.want)
			}
		})
	}
}
