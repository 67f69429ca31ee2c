package connlimit

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
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
