package quicclient

import (
	"net"
	"os"
	"sync"
	"time"

	"github.com/pqedge/pqedge/pqtls/quichello"
)

// maxQueued bounds the datagrams waiting out the emulated delay: a
// handshake's server flights are a few dozen datagrams; more means the
// server floods, and the excess is dropped as a full link would.
const maxQueued = 256

// datagramEvent is one datagram the client sent or received.
type datagramEvent struct {
	at   time.Time // sent, or delivered to quic-go
	size int
}

// measuringConn is the client's UDP socket as quic-go sees it: it counts
// what crosses it, records the client's own ClientHello from the datagrams
// it sends, and can hold every received datagram back by a fixed delay, so
// that a loopback path behaves like one with that round-trip time.
//
// It is a plain net.PacketConn (no ReadMsgUDP): quic-go then reads one
// datagram per ReadFrom, which the delay needs.
type measuringConn struct {
	udp   *net.UDPConn
	delay time.Duration
	hello *quichello.Recorder // fed with sent datagrams until done

	mu       sync.Mutex // guards the fields below
	sent     []datagramEvent
	received []datagramEvent
	queue    []queued // received, waiting for their delivery time
	readErr  error    // the socket's read error, once it failed
	deadline time.Time
	wake     chan struct{} // signalled when queue, readErr or deadline change
}

type queued struct {
	data []byte
	from net.Addr
	due  time.Time
}

func newMeasuringConn(udp *net.UDPConn, delay time.Duration) *measuringConn {
	c := &measuringConn{udp: udp, delay: delay, hello: quichello.NewRecorder(0), wake: make(chan struct{}, 1)}
	if delay > 0 {
		go c.readLoop()
	}
	return c
}

func (c *measuringConn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// readLoop reads the socket and queues each datagram for delivery after
// the delay; it ends when the socket is closed.
func (c *measuringConn) readLoop() {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.udp.ReadFrom(buf)
		c.mu.Lock()
		if err != nil {
			c.readErr = err
			c.mu.Unlock()
			c.signal()
			return
		}
		if len(c.queue) < maxQueued {
			c.queue = append(c.queue, queued{data: append([]byte(nil), buf[:n]...), from: from, due: time.Now().Add(c.delay)})
		}
		c.mu.Unlock()
		c.signal()
	}
}

func (c *measuringConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.delay <= 0 {
		n, from, err := c.udp.ReadFrom(p)
		if n > 0 {
			c.mu.Lock()
			c.received = append(c.received, datagramEvent{at: time.Now(), size: n})
			c.mu.Unlock()
		}
		return n, from, err
	}
	for {
		c.mu.Lock()
		now := time.Now()
		if len(c.queue) > 0 && !c.queue[0].due.After(now) {
			q := c.queue[0]
			c.queue = c.queue[1:]
			c.received = append(c.received, datagramEvent{at: now, size: len(q.data)})
			c.mu.Unlock()
			return copy(p, q.data), q.from, nil
		}
		if c.readErr != nil {
			err := c.readErr
			c.mu.Unlock()
			return 0, nil, err
		}
		if !c.deadline.IsZero() && !now.Before(c.deadline) {
			c.mu.Unlock()
			return 0, nil, os.ErrDeadlineExceeded
		}
		wait := time.Hour
		if len(c.queue) > 0 {
			wait = c.queue[0].due.Sub(now)
		}
		if !c.deadline.IsZero() {
			wait = min(wait, c.deadline.Sub(now))
		}
		c.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-c.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// WriteTo records the client's own Initials before they leave: recorded
// after the write, the server's answer (and the handshake's end) could
// overtake the recording on a loaded machine, and Dial would find its own
// ClientHello incomplete.
func (c *measuringConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	if !c.hello.Done() {
		c.hello.Datagram(p) // skipped ones change nothing
	}
	c.mu.Unlock()
	n, err := c.udp.WriteTo(p, addr)
	if n > 0 {
		c.mu.Lock()
		c.sent = append(c.sent, datagramEvent{at: time.Now(), size: n})
		c.mu.Unlock()
	}
	return n, err
}

func (c *measuringConn) Close() error {
	err := c.udp.Close()
	c.signal()
	return err
}

func (c *measuringConn) LocalAddr() net.Addr { return c.udp.LocalAddr() }

func (c *measuringConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.udp.SetWriteDeadline(t)
}

func (c *measuringConn) SetReadDeadline(t time.Time) error {
	if c.delay <= 0 {
		return c.udp.SetReadDeadline(t)
	}
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	c.signal()
	return nil
}

func (c *measuringConn) SetWriteDeadline(t time.Time) error { return c.udp.SetWriteDeadline(t) }

// SetReadBuffer and SetWriteBuffer let quic-go size the socket's buffers.
func (c *measuringConn) SetReadBuffer(n int) error  { return c.udp.SetReadBuffer(n) }
func (c *measuringConn) SetWriteBuffer(n int) error { return c.udp.SetWriteBuffer(n) }

// snapshot copies the events recorded so far.
func (c *measuringConn) snapshot() (sent, received []datagramEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]datagramEvent(nil), c.sent...), append([]datagramEvent(nil), c.received...)
}
