package connlimit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tlsServer serves TLS handshakes through a Limiter the way the server's
// accept path does: Accept and ReserveHandshake in the accept loop, then
// the ticket's Wait (under the handshake deadline) and its done around
// the handshake in the connection's goroutine. hellos counts ClientHellos that
// reached crypto/tls's callbacks, i.e. handshakes whose cryptography
// started.
type tlsServer struct {
	addr   string
	hellos atomic.Int32
	done   atomic.Int32 // completed handshakes
}

func startTLSServer(t *testing.T, l *Limiter, queueWait time.Duration) *tlsServer {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "limit.test"}, DNSNames: []string{"limit.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{}
	cfg := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		s.hellos.Add(1)
		return nil, nil
	}, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s.addr = ln.Addr().String()
	lln := l.Listener(ln)
	go func() {
		for {
			c, err := lln.Accept()
			if err != nil {
				return
			}
			ticket, err := l.ReserveHandshake(nil)
			if err != nil {
				c.Close() // refused before a byte of it was read
				continue
			}
			go func() {
				defer c.Close()
				done, err := ticket.Wait(time.Now().Add(queueWait))
				if err != nil {
					return // closed before a byte of it was read
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(c, cfg)
				err = tc.Handshake()
				done()
				if err != nil {
					return
				}
				s.done.Add(1)
				io.Copy(io.Discard, tc) // hold the connection until the client closes
			}()
		}
	}()
	return s
}

func tlsDial(addr string) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "limit.test"})
	if err != nil {
		return err
	}
	return c.Close()
}

// TestExcessHandshakesRefusedBeforeCrypto holds the only handshake slot
// with a client that connects and sends nothing, then sends real TLS
// clients.
func TestExcessHandshakesRefusedBeforeCrypto(t *testing.T) {
	t.Run("queue full: refused at once, no ClientHello processed", func(t *testing.T) {
		l := New(Options{MaxHandshakes: 1, HandshakeQueue: -1})
		s := startTLSServer(t, l, 10*time.Second)
		staller := dialFrom(t, "127.0.0.1", s.addr)
		waitFor(t, "the staller to hold the slot", func() bool { return l.Stats().Handshakes == 1 })
		if err := tlsDial(s.addr); err == nil {
			t.Fatal("a handshake beyond the cap succeeded")
		}
		st := l.Stats()
		if st.HandshakesRefused != 1 || s.hellos.Load() != 0 {
			t.Fatalf("refused %d handshakes, %d ClientHellos processed; want 1 and 0", st.HandshakesRefused, s.hellos.Load())
		}
		staller.Close()
		waitFor(t, "the slot to be freed", func() bool { return l.Stats().Handshakes == 0 })
		if err := tlsDial(s.addr); err != nil {
			t.Fatalf("handshake with a free slot: %v", err)
		}
		if got := s.hellos.Load(); got != 1 {
			t.Errorf("%d ClientHellos processed, want 1", got)
		}
	})
	t.Run("queued: waits for the slot, then completes", func(t *testing.T) {
		l := New(Options{MaxHandshakes: 1, HandshakeQueue: 1})
		s := startTLSServer(t, l, 10*time.Second)
		staller := dialFrom(t, "127.0.0.1", s.addr)
		waitFor(t, "the staller to hold the slot", func() bool { return l.Stats().Handshakes == 1 })
		result := make(chan error, 1)
		go func() { result <- tlsDial(s.addr) }()
		waitFor(t, "the second handshake to queue", func() bool { return l.Stats().WaitingHandshakes == 1 })
		if s.hellos.Load() != 0 {
			t.Fatal("a queued handshake was processed")
		}
		staller.Close()
		if err := <-result; err != nil {
			t.Fatalf("queued handshake: %v", err)
		}
		if st := l.Stats(); st.HandshakesQueued != 1 || st.HandshakesRefused != 0 {
			t.Errorf("Stats = %+v, want one queued, none refused", st)
		}
	})
	t.Run("queued past its deadline: expired, closed unprocessed", func(t *testing.T) {
		l := New(Options{MaxHandshakes: 1, HandshakeQueue: 4})
		s := startTLSServer(t, l, 200*time.Millisecond)
		dialFrom(t, "127.0.0.1", s.addr) // holds the slot for its 10s handshake deadline
		waitFor(t, "the staller to hold the slot", func() bool { return l.Stats().Handshakes == 1 })
		if err := tlsDial(s.addr); err == nil {
			t.Fatal("a handshake queued past its deadline succeeded")
		}
		st := l.Stats()
		if st.HandshakesQueued != 1 || st.HandshakesExpired != 1 || st.WaitingHandshakes != 0 || s.hellos.Load() != 0 {
			t.Errorf("Stats = %+v, ClientHellos %d; want one queued and expired, none waiting or processed", st, s.hellos.Load())
		}
	})
}

// TestHandshakeTicket: a ticket for a free slot is granted at once; a
// queued one waits until its deadline and gives its place up with a
// deadline error, or is handed the slot; Cancel gives either kind back
// without counting.
func TestHandshakeTicket(t *testing.T) {
	l := New(Options{MaxHandshakes: 1, HandshakeQueue: 1, MaxConns: -1, MaxConnsPerClient: -1})
	first, err := l.ReserveHandshake(nil)
	if err != nil {
		t.Fatal(err)
	}
	done, err := first.Wait(time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	queued, err := l.ReserveHandshake(nil)
	if err != nil {
		t.Fatalf("a place in the queue: %v", err)
	}
	if st := l.Stats(); !isFull(l) || st.WaitingHandshakes != 1 || st.HandshakesQueued != 1 {
		t.Fatalf("after reserving a slot and a queue place: full %v, %+v", isFull(l), st)
	}
	if _, err := queued.Wait(time.Now().Add(20 * time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting past the deadline: %v, want context.DeadlineExceeded", err)
	}
	if st := l.Stats(); st.HandshakesExpired != 1 || st.WaitingHandshakes != 0 || isFull(l) {
		t.Errorf("after the expired wait: full %v, %+v", isFull(l), st)
	}

	handed, err := l.ReserveHandshake(nil)
	if err != nil {
		t.Fatal(err)
	}
	done() // hands the slot to the queued ticket
	d, err := handed.Wait(time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("the handed-over slot: %v", err)
	}

	canceled, err := l.ReserveHandshake(nil)
	if err != nil {
		t.Fatal(err)
	}
	canceled.Cancel() // leaves the queue
	d()
	free, err := l.ReserveHandshake(nil)
	if err != nil {
		t.Fatal(err)
	}
	free.Cancel() // gives the slot back
	if st := l.Stats(); st.Handshakes != 0 || st.WaitingHandshakes != 0 || st.HandshakesExpired != 1 {
		t.Errorf("after both cancels: %+v, want nothing held and still one expiry", st)
	}
}

// TestReserveHandshakeRefusesWhenFull: the accept loop's reservation
// refuses (and counts) only when every slot is taken and the queue is
// full, and is what makes the limiter full for the next connection.
func TestReserveHandshakeRefusesWhenFull(t *testing.T) {
	l := New(Options{MaxHandshakes: 1, HandshakeQueue: 1})
	for i, wantFull := range []bool{false, true} {
		tk, err := l.ReserveHandshake(nil)
		if err != nil {
			t.Fatalf("reservation %d: %v", i+1, err)
		}
		defer tk.Cancel()
		if isFull(l) != wantFull || tk.LeftFull() != wantFull {
			t.Errorf("after reservation %d: full %v, LeftFull %v, want %v", i+1, isFull(l), tk.LeftFull(), wantFull)
		}
	}
	if _, err := l.ReserveHandshake(nil); !errors.Is(err, ErrHandshakeQueue) {
		t.Errorf("a third reservation: %v, want ErrHandshakeQueue", err)
	}
	if st := l.Stats(); st.HandshakesRefused != 1 {
		t.Errorf("refusals counted %d, want 1", st.HandshakesRefused)
	}
}

// TestWaitForRoom: an accept loop's pause ends when a handshake could
// start or queue again, by each way room is made, or when it is stopped;
// each pause is counted.
func TestWaitForRoom(t *testing.T) {
	tests := []struct {
		name string
		// makeRoom frees room in a limiter whose one slot is held (done)
		// and, with a queue, whose queue is full (cancel ends the
		// waiter); nil when stop ends the pause instead.
		makeRoom func(l *Limiter, done func(), cancel context.CancelFunc)
		queue    int
		want     bool
	}{
		{"the handshake ends (no queue)", func(_ *Limiter, done func(), _ context.CancelFunc) { done() }, -1, true},
		{"the slot is handed to the waiter: its queue place frees", func(_ *Limiter, done func(), _ context.CancelFunc) { done() }, 1, true},
		{"the waiter gives up", func(_ *Limiter, _ func(), cancel context.CancelFunc) { cancel() }, 1, true},
		{"a reload raises the cap", func(l *Limiter, _ func(), _ context.CancelFunc) {
			l.SetOptions(Options{MaxHandshakes: 2, HandshakeQueue: 1})
		}, 1, true},
		{"stopped (the socket closed)", nil, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Options{MaxHandshakes: 1, HandshakeQueue: tt.queue})
			if !l.WaitForRoom(nil) {
				t.Fatal("no room in an idle limiter")
			}
			held, err := l.BeginHandshake(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			done := sync.OnceFunc(held) // once: makeRoom may end it first
			defer done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.queue > 0 {
				go func() {
					if d, err := l.BeginHandshake(ctx, nil); err == nil {
						d()
					}
				}()
				waitFor(t, "a waiter", func() bool { return l.Stats().WaitingHandshakes == 1 })
			}
			if !isFull(l) {
				t.Fatal("not full with the slot taken and no queue room")
			}
			stop := make(chan struct{})
			got := make(chan bool, 1)
			go func() { got <- l.WaitForRoom(stop) }()
			select {
			case r := <-got:
				t.Fatalf("WaitForRoom returned %v while full", r)
			case <-time.After(50 * time.Millisecond):
			}
			// An operator watching a pause that has not ended yet sees
			// its time grow.
			waitFor(t, "the ongoing pause to be counted", func() bool {
				st := l.Stats()
				return st.AcceptPauses == 1 && st.AcceptPaused > 0
			})
			if tt.makeRoom != nil {
				tt.makeRoom(l, done, cancel)
			} else {
				close(stop)
			}
			select {
			case r := <-got:
				if r != tt.want {
					t.Errorf("WaitForRoom = %v, want %v", r, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("WaitForRoom still waiting")
			}
			if st := l.Stats(); st.AcceptPauses != 1 || st.AcceptPaused < 50*time.Millisecond || st.HandshakesRefused != 0 {
				t.Errorf("Stats = %+v, want one pause of at least 50ms and no refusal counted", st)
			}
		})
	}
}

// isFull reports whether every handshake slot is taken and the queue is
// full, as the limiter sees it.
func isFull(l *Limiter) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.full()
}

// TestHandshakesPerClient: one client address holds at most
// MaxHandshakesPerClient slots and queue places; IPv6 addresses count by
// /64, a non-IP address not at all; a refusal leaves the limiter open to
// other addresses (no accept pause), and every way a place ends (done,
// Cancel, a queued wait that expires) gives it back to its client.
func TestHandshakesPerClient(t *testing.T) {
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	tests := []struct {
		name    string
		held    []net.Addr // reserved in order, all granted
		next    net.Addr
		refused bool
	}{
		{"under the cap", []net.Addr{tcp("192.0.2.1:1")}, tcp("192.0.2.1:2"), false},
		{"at the cap", []net.Addr{tcp("192.0.2.1:1"), tcp("192.0.2.1:2")}, tcp("192.0.2.1:3"), true},
		{"another address", []net.Addr{tcp("192.0.2.1:1"), tcp("192.0.2.1:2")}, tcp("192.0.2.2:1"), false},
		{"a v4-mapped address is the v4 one", []net.Addr{tcp("192.0.2.1:1"), tcp("192.0.2.1:2")}, tcp("[::ffff:192.0.2.1]:3"), true},
		{"one IPv6 /64", []net.Addr{tcp("[2001:db8:0:1::1]:1"), tcp("[2001:db8:0:1::2]:1")}, tcp("[2001:db8:0:1:ffff::3]:1"), true},
		{"another IPv6 /64", []net.Addr{tcp("[2001:db8:0:1::1]:1"), tcp("[2001:db8:0:1::2]:1")}, tcp("[2001:db8:0:2::1]:1"), false},
		{"queued places count", []net.Addr{tcp("192.0.2.9:1"), tcp("192.0.2.1:1"), tcp("192.0.2.1:2")}, tcp("192.0.2.1:3"), true},
		{"not an IP address", []net.Addr{&net.UnixAddr{Name: "@a"}, &net.UnixAddr{Name: "@a"}}, &net.UnixAddr{Name: "@a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One slot: the second reservation on queues.
			l := New(Options{MaxHandshakes: 1, HandshakeQueue: 8, MaxHandshakesPerClient: 2})
			for _, a := range tt.held {
				if _, err := l.ReserveHandshake(a); err != nil {
					t.Fatalf("reserving for %v: %v", a, err)
				}
			}
			_, err := l.ReserveHandshake(tt.next)
			if got := errors.Is(err, ErrTooManyHandshakesFromClient); got != tt.refused {
				t.Fatalf("reserving for %v: %v, want refused %v", tt.next, err, tt.refused)
			}
			want := uint64(0)
			if tt.refused {
				want = 1
			}
			st := l.Stats()
			if st.HandshakesRefusedPerClient != want || st.HandshakesRefused != 0 {
				t.Errorf("refused per client %d, queue full %d; want %d, 0", st.HandshakesRefusedPerClient, st.HandshakesRefused, want)
			}
			if tt.refused && !l.WaitForRoom(closedChan()) {
				t.Error("a client over its own cap made the limiter full: accept loops would pause")
			}
		})
	}

	t.Run("a full limiter refuses as full", func(t *testing.T) {
		// A holds the only slot and the only queue place, so it is at
		// its cap too: its next connection must make the accept loop
		// pause like anyone's, not be accepted and closed one by one.
		l := New(Options{MaxHandshakes: 1, HandshakeQueue: 1, MaxHandshakesPerClient: 2})
		a := tcp("192.0.2.1:1")
		for range 2 {
			if _, err := l.ReserveHandshake(a); err != nil {
				t.Fatal(err)
			}
		}
		for _, next := range []net.Addr{a, tcp("192.0.2.2:1")} {
			if _, err := l.ReserveHandshake(next); !errors.Is(err, ErrHandshakeQueue) {
				t.Errorf("reserving for %v in a full limiter: %v, want ErrHandshakeQueue", next, err)
			}
		}
		if st := l.Stats(); st.HandshakesRefused != 2 || st.HandshakesRefusedPerClient != 0 {
			t.Errorf("refused queue full %d, per client %d; want 2, 0", st.HandshakesRefused, st.HandshakesRefusedPerClient)
		}
		if l.WaitForRoom(closedChan()) {
			t.Error("WaitForRoom saw room in a full limiter")
		}
	})

	t.Run("a reload moves the cap", func(t *testing.T) {
		// Places held above a lowered cap stay; the address gets no
		// new one until it holds fewer than the new cap.
		l := New(Options{MaxHandshakes: 8, HandshakeQueue: 8, MaxHandshakesPerClient: 4})
		a, b := tcp("192.0.2.1:1"), tcp("192.0.2.2:1")
		var held []HandshakeTicket
		for range 3 {
			tk, err := l.ReserveHandshake(a)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, tk)
		}
		l.SetOptions(Options{MaxHandshakes: 8, HandshakeQueue: 8, MaxHandshakesPerClient: 1})
		if _, err := l.ReserveHandshake(a); !errors.Is(err, ErrTooManyHandshakesFromClient) {
			t.Fatalf("an address holding 3 under a lowered cap of 1: %v, want ErrTooManyHandshakesFromClient", err)
		}
		if tk, err := l.ReserveHandshake(b); err != nil {
			t.Fatalf("another address under the lowered cap: %v", err)
		} else {
			tk.Cancel()
		}
		held[0].Cancel()
		held[1].Cancel()
		if _, err := l.ReserveHandshake(a); !errors.Is(err, ErrTooManyHandshakesFromClient) {
			t.Fatalf("an address holding 1 under a cap of 1: %v, want ErrTooManyHandshakesFromClient", err)
		}
		held[2].Cancel()
		tk, err := l.ReserveHandshake(a)
		if err != nil {
			t.Fatalf("an address holding none under a cap of 1: %v", err)
		}
		l.SetOptions(Options{MaxHandshakes: 8, HandshakeQueue: 8, MaxHandshakesPerClient: -1})
		for range 4 {
			if _, err := l.ReserveHandshake(a); err != nil {
				t.Fatalf("with the cap turned off: %v", err)
			}
		}
		tk.Cancel()
	})

	t.Run("a balancer's connections get their client later", func(t *testing.T) {
		l := New(Options{MaxHandshakes: 1, HandshakeQueue: 8, MaxHandshakesPerClient: 1})
		client := tcp("198.51.100.9:1")
		first, err := l.ReserveHandshake(nil) // a trusted balancer's: no client yet
		if err != nil || first.HasClient() {
			t.Fatalf("reserved %v, has client %v; want a place without a client", err, first.HasClient())
		}
		if err := first.SetClient(client); err != nil || !first.HasClient() {
			t.Fatalf("SetClient: %v, has client %v", err, first.HasClient())
		}
		second, err := l.ReserveHandshake(nil) // queued behind the first
		if err != nil {
			t.Fatal(err)
		}
		if err := second.SetClient(tcp("198.51.100.9:2")); !errors.Is(err, ErrTooManyHandshakesFromClient) {
			t.Fatalf("a second place for one client behind the balancer: %v, want ErrTooManyHandshakesFromClient", err)
		}
		second.Cancel() // the refused ticket is still the caller's to end
		if err := first.SetClient(tcp("198.51.100.10:1")); err != nil {
			t.Fatalf("SetClient on a ticket that has a client: %v, want nil (left as it is)", err)
		}
		done, err := first.Wait(time.Now().Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		done()
		st := l.Stats()
		l.mu.Lock()
		left, running, waiting := len(l.pending), l.running, len(l.waiters)
		l.mu.Unlock()
		if left != 0 || running != 0 || waiting != 0 || st.HandshakesRefusedPerClient != 1 {
			t.Errorf("after both: %d clients counted, %d running, %d waiting, %d refused; want 0, 0, 0, 1",
				left, running, waiting, st.HandshakesRefusedPerClient)
		}
	})

	t.Run("places come back", func(t *testing.T) {
		l := New(Options{MaxHandshakes: 1, HandshakeQueue: 8, MaxHandshakesPerClient: 2})
		a := tcp("192.0.2.1:1")
		reserve := func() HandshakeTicket {
			t.Helper()
			tk, err := l.ReserveHandshake(a)
			if err != nil {
				t.Fatalf("a freed place is not free again: %v", err)
			}
			return tk
		}
		first, second := reserve(), reserve() // a slot, a queued place
		done, err := first.Wait(time.Now().Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		done() // the slot passes to second, a place comes back
		third := reserve()
		if _, err := third.Wait(time.Now().Add(10 * time.Millisecond)); err == nil {
			t.Fatal("a queued wait behind a held slot got one")
		}
		fourth := reserve() // the expired wait gave its place back
		fourth.Cancel()
		fifth := reserve() // so did Cancel
		if _, err := l.ReserveHandshake(a); !errors.Is(err, ErrTooManyHandshakesFromClient) {
			t.Fatalf("a third place for one client: %v, want ErrTooManyHandshakesFromClient", err)
		}
		d2, err := second.Wait(time.Now().Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		d2()
		fifth.Cancel()
		l.mu.Lock()
		left := len(l.pending)
		l.mu.Unlock()
		if left != 0 {
			t.Errorf("%d client addresses still counted with no handshake left", left)
		}
	})
}

// closedChan is a closed channel: WaitForRoom given it returns at once,
// reporting whether there was room.
func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
