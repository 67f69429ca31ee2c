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
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dialFrom connects to addr from the loopback address from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c: a read returns EOF
// (or a reset) instead of blocking.
func closedByServer(c net.Conn) bool {
	// Callers wait for the Limiter's verdict first, so a refused
	// connection's FIN is already on its way.
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// acceptAll serves a Limiter-wrapped listener, keeping what it admits.
type acceptAll struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (a *acceptAll) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		a.mu.Lock()
		a.conns = append(a.conns, c)
		a.mu.Unlock()
	}
}

func (a *acceptAll) closeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		c.Close()
	}
	a.conns = nil
}

func TestConnectionCaps(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		from  []string // one dial each, in order
		open  []bool   // whether each stays open
		stats Stats
	}{
		{
			name: "total cap", opts: Options{MaxConns: 3, MaxConnsPerClient: -1},
			from:  []string{"127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.3"},
			open:  []bool{true, true, true, false},
			stats: Stats{Conns: 3, Admitted: 3, RefusedTotal: 1},
		},
		{
			name: "per-client cap", opts: Options{MaxConnsPerClient: 2},
			from:  []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"},
			open:  []bool{true, true, false, true, true},
			stats: Stats{Conns: 4, Admitted: 4, RefusedPerClient: 1},
		},
		{
			name: "caps off", opts: Options{MaxConns: -1, MaxConnsPerClient: -1},
			from:  []string{"127.0.0.1", "127.0.0.1", "127.0.0.1"},
			open:  []bool{true, true, true},
			stats: Stats{Conns: 3, Admitted: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(tt.opts)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var srv acceptAll
			defer srv.closeAll()
			go srv.serve(l.Listener(ln))
			var conns []net.Conn
			for i, from := range tt.from {
				conns = append(conns, dialFrom(t, from, ln.Addr().String()))
				want := tt.stats.Admitted
				waitFor(t, "the server to take the connection", func() bool {
					s := l.Stats()
					return s.Admitted+s.RefusedTotal+s.RefusedPerClient == uint64(i+1) || s.Admitted > want
				})
			}
			for i, c := range conns {
				if closed := closedByServer(c); closed == tt.open[i] {
					t.Errorf("connection %d from %s: closed = %v, want %v", i, tt.from[i], closed, !tt.open[i])
				}
			}
			if got := l.Stats(); got != tt.stats {
				t.Errorf("Stats = %+v, want %+v", got, tt.stats)
			}
			srv.closeAll()
			if got := l.Stats(); got.Conns != 0 {
				t.Errorf("after closing every connection: %d still counted", got.Conns)
			}
		})
	}
}

func TestClientKey(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:443":                   "192.0.2.7",
		"[::ffff:192.0.2.7]:443":          "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443":      "2001:db8:1:2::",
		"[2001:db8:1:2:ffff:ffff::1]:443": "2001:db8:1:2::",
	} {
		key, ok := clientKey(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		if !ok || key.String() != want {
			t.Errorf("clientKey(%s) = %s, %v; want %s", addr, key, ok, want)
		}
	}
	if _, ok := clientKey(&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}); ok {
		t.Error("a unix address got a client key")
	}
}

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

// TestConcurrentUse churns connections and handshakes from many
// goroutines (run with -race): every slot taken is given back.
func TestConcurrentUse(t *testing.T) {
	l := New(Options{MaxConns: 50, MaxConnsPerClient: 20, MaxHandshakes: 4, HandshakeQueue: 8})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				a, b := net.Pipe()
				b.Close()
				c, err := l.Accept(&fakeAddrConn{Conn: a, remote: &net.TCPAddr{IP: net.IPv4(10, 0, 0, byte(g%4)), Port: 1}})
				if err != nil {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				if done, err := l.BeginHandshake(ctx, nil); err == nil {
					done()
				}
				cancel()
				c.Close()
				c.Close() // twice: released once
			}
		}()
	}
	wg.Wait()
	if st := l.Stats(); st.Conns != 0 || st.Handshakes != 0 || st.WaitingHandshakes != 0 {
		t.Errorf("after the churn: %+v, want every gauge at 0", st)
	}
	if len(l.perClient) != 0 {
		t.Errorf("per-client map keeps %d entries", len(l.perClient))
	}
}

type fakeAddrConn struct {
	net.Conn
	remote net.Addr
}

func (c *fakeAddrConn) RemoteAddr() net.Addr { return c.remote }

// TestSetOptions raises and lowers caps on a Limiter in use, as a reload
// does: a raised handshake cap lets a waiting handshake through at once,
// a lowered connection cap refuses the next connection.
func TestSetOptions(t *testing.T) {
	l := New(Options{MaxHandshakes: 1, HandshakeQueue: 4, MaxConns: -1, MaxConnsPerClient: -1})
	done, err := l.BeginHandshake(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	got := make(chan error, 1)
	go func() {
		d, err := l.BeginHandshake(context.Background(), nil)
		if err == nil {
			d()
		}
		got <- err
	}()
	for l.Stats().WaitingHandshakes == 0 {
		runtime.Gosched()
	}
	l.SetOptions(Options{MaxHandshakes: 2, HandshakeQueue: 4, MaxConns: 1, MaxConnsPerClient: -1})
	if err := <-got; err != nil {
		t.Fatalf("a waiting handshake after raising the cap: %v", err)
	}
	a, b := net.Pipe()
	defer b.Close()
	c1, err := l.Accept(a)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	x, y := net.Pipe()
	defer y.Close()
	if _, err := l.Accept(x); err != ErrTooManyConns {
		t.Errorf("second connection under MaxConns 1: %v, want ErrTooManyConns", err)
	}
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

// TestAdmit counts QUIC-style connections (an address, no net.Conn) under
// the same caps as accepted ones, and frees each slot once however often
// its release is called.
func TestAdmit(t *testing.T) {
	l := New(Options{MaxConns: 3, MaxConnsPerClient: 2})
	a := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000}
	b := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 1000}
	r1, err := l.Admit(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Admit(&net.UDPAddr{IP: a.IP, Port: 2000}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Admit(a); !errors.Is(err, ErrTooManyFromClient) {
		t.Fatalf("third connection from one address: %v, want ErrTooManyFromClient", err)
	}
	if _, err := l.Admit(b); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Admit(&net.UDPAddr{IP: net.IPv4(192, 0, 2, 3)}); !errors.Is(err, ErrTooManyConns) {
		t.Fatalf("fourth connection: %v, want ErrTooManyConns", err)
	}
	r1.Release()
	r1.Release()
	if st := l.Stats(); st.Conns != 2 || st.RefusedPerClient != 1 || st.RefusedTotal != 1 {
		t.Errorf("stats %+v, want 2 open, 1 refused per client, 1 in total", st)
	}
	if _, err := l.Admit(a); err != nil {
		t.Errorf("a released slot is not free again: %v", err)
	}
}

// TestAdmitUnproven: a connection admitted before its address is proven
// (a QUIC Initial's source can be forged) counts in the total only, so
// that forged ones cannot use up an address's per-client cap; once
// proven it counts against its client, and is refused if that client is
// at its cap.
func TestAdmitUnproven(t *testing.T) {
	l := New(Options{MaxConns: 10, MaxConnsPerClient: 2})
	victim := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000}
	var forged []*Admission
	for range 5 { // more than the per-client cap, in the victim's name
		adm, err := l.Admit(nil)
		if err != nil {
			t.Fatal(err)
		}
		forged = append(forged, adm)
	}
	own, err := l.Admit(&net.TCPAddr{IP: victim.IP, Port: 2000})
	if err != nil {
		t.Fatalf("the victim's own connection after 5 unproven ones: %v, want admitted", err)
	}
	if err := forged[0].SetClient(victim); err != nil {
		t.Fatalf("first proven connection: %v", err)
	}
	if err := forged[1].SetClient(victim); !errors.Is(err, ErrTooManyFromClient) {
		t.Fatalf("third connection of the client, proven: %v, want ErrTooManyFromClient", err)
	}
	if err := forged[0].SetClient(&net.UDPAddr{IP: net.IPv4(192, 0, 2, 9)}); err != nil {
		t.Errorf("a second SetClient: %v, want ignored", err)
	}
	if st := l.Stats(); st.Conns != 6 || st.RefusedPerClient != 1 {
		t.Errorf("stats %+v, want 6 open, 1 refused per client", st)
	}
	for _, adm := range forged {
		adm.Release()
	}
	forged[1].SetClient(victim) // released: nothing to count
	own.Release()
	if _, err := l.Admit(victim); err != nil {
		t.Fatalf("after the releases: %v", err)
	}
	if _, err := l.Admit(victim); err != nil {
		t.Fatalf("after the releases, a second: %v (the proven connection's place was not freed)", err)
	}
	if st := l.Stats(); st.Conns != 2 {
		t.Errorf("open %d, want 2", st.Conns)
	}
}

// TestCryptoGate: at most the cap compute at once, waiters get freed
// slots in arrival order, a wait ends at its deadline, and raising the cap
// lets waiters through at once.
func TestCryptoGate(t *testing.T) {
	far := time.Now().Add(10 * time.Second)
	t.Run("cap and FIFO hand-over", func(t *testing.T) {
		g := NewCryptoGate(1)
		if err := g.Acquire(far); err != nil {
			t.Fatal(err)
		}
		order := make(chan int, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			// Start the second waiter only once the first waits.
			waitFor(t, "earlier waiters", func() bool { return g.Stats().Waiting == i })
			wg.Go(func() {
				if err := g.Acquire(far); err != nil {
					t.Error(err)
					return
				}
				order <- i
				g.Release()
			})
		}
		waitFor(t, "two waiters", func() bool { return g.Stats().Waiting == 2 })
		if st := g.Stats(); st.Running != 1 {
			t.Fatalf("%d running with a cap of 1", st.Running)
		}
		g.Release()
		wg.Wait()
		if a, b := <-order, <-order; a != 0 || b != 1 {
			t.Errorf("slots went to waiters %d then %d, want 0 then 1", a, b)
		}
		// The last release may still be in the relay (the gate paces
		// for a while after handshakes queued).
		waitFor(t, "every slot free", g.settled)
		if st := g.Stats(); st.Running != 0 || st.Waiting != 0 || st.Queued != 2 || st.Expired != 0 {
			t.Errorf("Stats = %+v, want all free, 2 queued", st)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		g := NewCryptoGate(1)
		if err := g.Acquire(far); err != nil {
			t.Fatal(err)
		}
		defer g.Release()
		if err := g.Acquire(time.Now().Add(20 * time.Millisecond)); !errors.Is(err, ErrCryptoWait) {
			t.Fatalf("err %v, want ErrCryptoWait", err)
		}
		if st := g.Stats(); st.Waiting != 0 || st.Expired != 1 {
			t.Errorf("Stats = %+v, want no waiter left, 1 expired", st)
		}
	})
	t.Run("raised cap and no cap", func(t *testing.T) {
		g := NewCryptoGate(1)
		if err := g.Acquire(far); err != nil {
			t.Fatal(err)
		}
		defer g.Release()
		got := make(chan error, 1)
		go func() {
			err := g.Acquire(far)
			if err == nil {
				g.Release()
			}
			got <- err
		}()
		waitFor(t, "a waiter", func() bool { return g.Stats().Waiting == 1 })
		g.setLimit(-1)
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		if err := g.Acquire(time.Now()); err != nil { // no cap: never waits
			t.Fatal(err)
		}
		g.Release()
	})
	t.Run("default follows GOMAXPROCS", func(t *testing.T) {
		g := NewCryptoGate(0)
		n := runtime.GOMAXPROCS(0)
		for range n {
			if err := g.Acquire(far); err != nil {
				t.Fatal(err)
			}
		}
		if err := g.Acquire(time.Now().Add(10 * time.Millisecond)); err == nil {
			t.Error("a slot beyond GOMAXPROCS was free")
		}
		for range n {
			g.Release()
		}
	})
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

// fakeWatch is a connection as the limiter's eviction sees it.
type fakeWatch struct {
	spoke   bool // the client has sent something
	evicted bool
}

func (w *fakeWatch) Silent() bool { return !w.spoke }
func (w *fakeWatch) Evict()       { w.evicted = true }

// TestEvictSilent: while the limiter is full, watched connections whose
// client has sent nothing for SilentGrace are evicted, oldest first,
// slot holders and queued ones alike, their places (and their client's
// count) freed at once and counted; connections that spoke, young ones
// and unwatched ones stay; nothing is evicted while there is room.
func TestEvictSilent(t *testing.T) {
	client := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000}
	type conn struct {
		spoke   bool
		young   bool // reserved less than SilentGrace before the pass
		watched bool
		queued  bool // the reservation queued
		evicted bool // want
	}
	tests := []struct {
		name    string
		slots   int
		queue   int
		conns   []conn
		waitErr []bool // want ErrEvicted from the queued tickets' Wait, in order
	}{
		{"room left: nothing evicted", 3, 1, []conn{{watched: true}, {watched: true}}, nil},
		{"silent slot holders and queued ones evicted", 2, 2,
			[]conn{{watched: true, evicted: true}, {watched: true, spoke: true}, {watched: true, queued: true, evicted: true}, {watched: true, queued: true, spoke: true}},
			[]bool{true, false}},
		{"young and unwatched connections stay", 2, 1,
			[]conn{{watched: false}, {watched: true, evicted: true}, {watched: true, queued: true, young: true}},
			[]bool{false}}, // the evicted one's slot went to it
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Options{MaxHandshakes: tt.slots, HandshakeQueue: tt.queue, MaxHandshakesPerClient: 10})
			var tickets []HandshakeTicket
			var watches []*fakeWatch
			for i, c := range tt.conns {
				w := &fakeWatch{spoke: c.spoke}
				var tk HandshakeTicket
				var err error
				if c.watched {
					tk, err = l.ReserveWatchedHandshake(client, w)
				} else {
					tk, err = l.ReserveHandshake(client)
				}
				if err != nil {
					t.Fatalf("reservation %d: %v", i, err)
				}
				if (tk.ch != nil) != c.queued {
					t.Fatalf("reservation %d queued %v, want %v", i, tk.ch != nil, c.queued)
				}
				if c.young && tk.p != nil {
					tk.p.since = time.Now().Add(time.Hour)
				}
				tickets, watches = append(tickets, tk), append(watches, w)
			}
			l.mu.Lock()
			closers := l.evictSilent(time.Now().Add(SilentGrace))
			l.mu.Unlock()
			for _, w := range closers {
				w.Evict()
			}
			want := 0
			for i, c := range tt.conns {
				if watches[i].evicted != c.evicted || tickets[i].Evicted() != c.evicted {
					t.Errorf("connection %d: evicted %v (ticket %v), want %v", i, watches[i].evicted, tickets[i].Evicted(), c.evicted)
				}
				if c.evicted {
					want++
				}
			}
			st := l.Stats()
			if st.HandshakesEvicted != uint64(want) {
				t.Errorf("HandshakesEvicted %d, want %d", st.HandshakesEvicted, want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			// Every place comes back exactly once: the evicted ones at
			// the eviction, the others when their tickets end.
			k := 0
			for i, c := range tt.conns {
				switch {
				case c.queued:
					done, err := tickets[i].wait(ctx)
					if got := errors.Is(err, ErrEvicted); got != tt.waitErr[k] {
						t.Errorf("queued connection %d: Wait %v, want ErrEvicted %v", i, err, tt.waitErr[k])
					}
					k++
					if done != nil {
						done()
					}
				case c.evicted:
					tickets[i].done() // what a slot holder's goroutine does after its failed read
				default:
					tickets[i].Cancel()
				}
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.running != 0 || len(l.waiters) != 0 || len(l.pending) != 0 || l.oldest != nil || l.newest != nil {
				t.Errorf("after every ticket ended: %d running, %d waiting, pending %v, list %p..%p; want all empty", l.running, len(l.waiters), l.pending, l.oldest, l.newest)
			}
		})
	}
}
