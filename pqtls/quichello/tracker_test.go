package quichello

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func udpAddr(port int) *net.UDPAddr      { return &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: port} }
func mappedAddr(port int) *net.UDPAddr {
	return &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1).To16(), Port: port}
}
func helloDatagrams(t testing.TB, dcid []byte) [][]byte {
	t.Helper()
	hello := bigHello(t)
	return [][]byte{
		datagram(1200, testPacket{dcid: dcid, pn: 0, payload: cryptoFrame(0, hello[:1000])}.seal(t)),
		datagram(1200, testPacket{dcid: dcid, pn: 1, payload: cryptoFrame(1000, hello[1000:])}.seal(t)),
	}
}

func TestTracker(t *testing.T) {
	a1 := helloDatagrams(t, []byte{1, 1, 1, 1, 1, 1, 1, 1})
	a2 := helloDatagrams(t, []byte{2, 2, 2, 2, 2, 2, 2, 2})
	tests := []struct {
		name string
		// run feeds the tracker and returns the address to ask for and
		// the error wanted (nil: a ClientHello).
		run  func(tr *Tracker, clock *fakeClock) (net.Addr, error)
		size int // attempts left, -1 to skip the check
	}{
		{"complete", func(tr *Tracker, _ *fakeClock) (net.Addr, error) {
			tr.Observe(a1[0], udpAddr(1))
			tr.Observe(a1[1], udpAddr(1))
			return udpAddr(1), nil
		}, 1},
		{"IPv4-mapped address is the same client", func(tr *Tracker, _ *fakeClock) (net.Addr, error) {
			tr.Observe(a1[0], mappedAddr(1))
			tr.Observe(a1[1], udpAddr(1))
			return mappedAddr(1), nil
		}, 1},
		{"incomplete", func(tr *Tracker, _ *fakeClock) (net.Addr, error) {
			tr.Observe(a1[0], udpAddr(1))
			return udpAddr(1), ErrIncomplete
		}, 1},
		{"other address", func(tr *Tracker, _ *fakeClock) (net.Addr, error) {
			tr.Observe(a1[0], udpAddr(1))
			tr.Observe(a1[1], udpAddr(1))
			return udpAddr(2), ErrNotRecorded
		}, 1},
		{"expired", func(tr *Tracker, c *fakeClock) (net.Addr, error) {
			tr.Observe(a1[0], udpAddr(1))
			tr.Observe(a1[1], udpAddr(1))
			c.add(DefaultTTL + time.Second)
			return udpAddr(1), ErrNotRecorded
		}, -1},
		{"expired attempts are swept", func(tr *Tracker, c *fakeClock) (net.Addr, error) {
			tr.Observe(a1[0], udpAddr(1))
			c.add(DefaultTTL + time.Second)
			tr.Observe(a2[0], udpAddr(2))
			return udpAddr(1), ErrNotRecorded
		}, 1},
		{"full tracker drops new addresses", func(tr *Tracker, _ *fakeClock) (net.Addr, error) {
			tr.MaxAttempts = 1
			tr.Observe(a1[0], udpAddr(1))
			tr.Observe(a2[0], udpAddr(2))
			tr.Observe(a2[1], udpAddr(2))
			if tr.Dropped() != 2 {
				t.Errorf("dropped %d, want 2", tr.Dropped())
			}
			return udpAddr(2), ErrNotRecorded
		}, 1},
		{"noise takes no slot", func(tr *Tracker, _ *fakeClock) (net.Addr, error) {
			bad := bytes.Clone(a1[0])
			bad[len(bad)-1200+100] ^= 0xff // inside the sealed payload
			tr.Observe(bad, udpAddr(1))
			tr.Observe(bytes.Repeat([]byte{0x40}, 1200), udpAddr(1))
			tr.Observe(a1[0][:1000], udpAddr(1)) // too small to be read
			if !tr.Unreadable(udpAddr(1)) || tr.UnreadableInitials() != 2 {
				t.Errorf("unreadable %v, %d counted; want true, 2 (the short header is not an Initial)", tr.Unreadable(udpAddr(1)), tr.UnreadableInitials())
			}
			return udpAddr(1), ErrNotRecorded
		}, 0},
		{"an authentic Initial clears the verdict", func(tr *Tracker, _ *fakeClock) (net.Addr, error) {
			bad := bytes.Clone(a1[0])
			bad[len(bad)-1200+100] ^= 0xff
			tr.Observe(bad, udpAddr(1))
			tr.Observe(a1[0], udpAddr(1))
			tr.Observe(a1[1], udpAddr(1))
			if tr.Unreadable(udpAddr(1)) {
				t.Error("an address with an attempt is unreadable")
			}
			return udpAddr(1), nil
		}, 1},
		{"a client's later Initials are not counted", func(tr *Tracker, _ *fakeClock) (net.Addr, error) {
			tr.Observe(a1[0], udpAddr(1))
			tr.Observe(a1[1], udpAddr(1))
			// Once the server answered, the client's Initials carry the
			// server's connection ID but keep the first keys: nothing here
			// can open them, and nothing is wrong with them.
			later := datagram(1200, testPacket{dcid: []byte{3, 3, 3, 3}, keyDCID: []byte{1, 1, 1, 1, 1, 1, 1, 1}, pn: 2, payload: []byte{0x01}}.seal(t))
			tr.Observe(later, udpAddr(1))
			if tr.Unreadable(udpAddr(1)) || tr.UnreadableInitials() != 0 {
				t.Errorf("unreadable %v, %d counted", tr.Unreadable(udpAddr(1)), tr.UnreadableInitials())
			}
			return udpAddr(1), nil
		}, 1},
		{"a new connection from the same socket replaces the old", func(tr *Tracker, _ *fakeClock) (net.Addr, error) {
			tr.Observe(a1[0], udpAddr(1))
			tr.Observe(a1[1], udpAddr(1))
			tr.Observe(a2[0], udpAddr(1))
			return udpAddr(1), ErrIncomplete // the second attempt's, not the first's ClientHello
		}, 1},
		{"retransmission after completion changes nothing", func(tr *Tracker, _ *fakeClock) (net.Addr, error) {
			tr.Observe(a1[0], udpAddr(1))
			tr.Observe(a1[1], udpAddr(1))
			tr.Observe(a1[0], udpAddr(1))
			return udpAddr(1), nil
		}, 1},
		{"forgotten", func(tr *Tracker, _ *fakeClock) (net.Addr, error) {
			tr.Observe(a1[0], udpAddr(1))
			tr.Observe(a1[1], udpAddr(1))
			tr.Forget(udpAddr(1))
			return udpAddr(1), ErrNotRecorded
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_000_000, 0)}
			tr := &Tracker{Now: clock.now}
			addr, want := tt.run(tr, clock)
			ch, err := tr.ClientHello(addr)
			switch {
			case want == nil && err != nil:
				t.Fatalf("ClientHello: %v", err)
			case want == nil && !bytes.Equal(ch.Raw, bigHello(t)):
				t.Errorf("wrong ClientHello of %d bytes", len(ch.Raw))
			case want != nil && !errors.Is(err, want):
				t.Errorf("ClientHello error %v, want %v", err, want)
			}
			if tt.size >= 0 && tr.Len() != tt.size {
				t.Errorf("%d attempts followed, want %d", tr.Len(), tt.size)
			}
		})
	}
}

// BenchmarkObserveShortHeader is the per-packet cost of the wrapper once
// handshakes are done: every 1-RTT packet has a short header.
func BenchmarkObserveShortHeader(b *testing.B) {
	tr := &Tracker{}
	d := bytes.Repeat([]byte{0x40}, 1200)
	from := udpAddr(1)
	for b.Loop() {
		tr.Observe(d, from)
	}
}

// BenchmarkRecordHello is the cost of recording a two-Initial ClientHello.
func BenchmarkRecordHello(b *testing.B) {
	ds := helloDatagrams(b, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	for b.Loop() {
		r := NewRecorder(0)
		for _, d := range ds {
			r.Datagram(d)
		}
		if _, err := r.ClientHello(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTrackerAttempt: the Initials of one connection attempt name the same
// attempt; a new connection from the same socket names another.
func TestTrackerAttempt(t *testing.T) {
	a1 := helloDatagrams(t, []byte{1, 1, 1, 1, 1, 1, 1, 1})
	a2 := helloDatagrams(t, []byte{2, 2, 2, 2, 2, 2, 2, 2})
	tr := &Tracker{}
	if _, ok := tr.Attempt(udpAddr(1)); ok {
		t.Fatal("an attempt before any Initial")
	}
	tr.Observe(a1[0], udpAddr(1))
	first, ok := tr.Attempt(udpAddr(1))
	if !ok || first != string([]byte{1, 1, 1, 1, 1, 1, 1, 1}) {
		t.Fatalf("attempt %x, %v after the first Initial, want its DCID", first, ok)
	}
	tr.Observe(a1[1], udpAddr(1))
	tr.Observe(a1[0], udpAddr(1)) // a retransmission
	if got, _ := tr.Attempt(mappedAddr(1)); got != first {
		t.Errorf("attempt %x after the rest of its ClientHello, want %x", got, first)
	}
	if _, ok := tr.Attempt(udpAddr(2)); ok {
		t.Error("an attempt for an address that sent nothing")
	}
	tr.Observe(a2[0], udpAddr(1))
	if got, _ := tr.Attempt(udpAddr(1)); got == first {
		t.Error("a new connection from the same socket is the same attempt")
	}
}
