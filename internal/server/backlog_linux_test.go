package server

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenBacklogOf reads a listening socket's backlog and accept queue from
// the kernel (TCP_INFO on a LISTEN socket: tcpi_sacked is its backlog,
// tcpi_unacked the connections waiting to be accepted).
func listenBacklogOf(t *testing.T, ts *testServer, addr string) (backlog, queued int) {
	t.Helper()
	ts.srv.sockets.mu.Lock()
	var ln net.Listener
	for _, sk := range ts.srv.sockets.byKey {
		if sk.ln != nil && sk.ln.Addr().String() == addr {
			ln = sk.ln
		}
	}
	ts.srv.sockets.mu.Unlock()
	if ln == nil {
		t.Fatalf("no listening socket on %s", addr)
	}
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if ierr != nil {
		t.Fatal(ierr)
	}
	return int(info.Sacked), int(info.Unacked)
}

// TestAcceptPauseLeavesExcessToTheKernel: with every handshake slot taken
// and no queue room, the accept loop stops accepting and the listen
// backlog shrinks, so that the kernel refuses new connections (their SYNs
// time out) instead of pqedge accepting and closing each one; once a
// slot frees, handshakes complete again, and the backlog is restored by
// the first connection backlogHold after the last pause.
func TestAcceptPauseLeavesExcessToTheKernel(t *testing.T) {
	ts := startServer(t, baseConfig+"[timeouts]\nhandshake_idle = \"1m\"\n[limits]\nhandshakes = 2\nhandshake_queue = 0\n"+inspectSite)
	addr := ts.addr("https")
	if b, _ := listenBacklogOf(t, ts, addr); b != listenBacklog() {
		t.Fatalf("backlog before any pause %d, want %d (somaxconn)", b, listenBacklog())
	}

	// Two clients that send the first byte of a ClientHello and stall hold
	// both slots (for the test: they would be evicted as stalled after
	// timeouts.handshake_idle, TestIdleSlotHoldersGiveWay).
	stallers := []net.Conn{dialTimeout(t, addr), dialTimeout(t, addr)}
	for _, c := range stallers {
		if _, err := c.Write([]byte{0x16}); err != nil {
			t.Fatal(err)
		}
	}
	// The accept loop reserved their slots before their goroutines ran,
	// so it pauses at once, without accepting another connection.
	waitFor(t, "the accept loop to pause", func() bool { return ts.srv.limiter.Stats().AcceptPauses == 1 })
	if b, _ := listenBacklogOf(t, ts, addr); b != pausedBacklog {
		t.Fatalf("backlog while paused %d, want %d", b, pausedBacklog)
	}

	// A burst of new connections: the kernel queues pausedBacklog+1 of
	// them and drops the SYNs of the rest, which time out.
	const burst = 3 * pausedBacklog
	var (
		mu       sync.Mutex
		held     []net.Conn
		timedOut int
		wg       sync.WaitGroup
	)
	for range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				timedOut++
				return
			}
			held = append(held, c)
		}()
	}
	wg.Wait()
	_, queued := listenBacklogOf(t, ts, addr)
	if timedOut == 0 || queued > pausedBacklog+1 {
		t.Errorf("%d of %d connections timed out, %d wait in the accept queue; want some refused by the kernel, at most %d queued",
			timedOut, burst, queued, pausedBacklog+1)
	}
	if st := ts.srv.limiter.Stats(); st.HandshakesRefused != 0 || st.Conns != 2 {
		t.Errorf("limiter: %d refused after an accept, %d connections open; want 0 and 2 (the stallers): the burst was left to the kernel",
			st.HandshakesRefused, st.Conns)
	}

	// The queued connections leave, the stallers too: the slots free, the
	// loop accepts what the kernel queued (each fails at once).
	for _, c := range append(held, stallers...) {
		c.Close()
	}
	waitFor(t, "the queued connections to be taken", func() bool {
		_, q := listenBacklogOf(t, ts, addr)
		return q == 0 && ts.srv.limiter.Stats().Handshakes == 0
	})
	// The backlog stays small for backlogHold after the last pause (a
	// sustained flood would pause again at once); the first connection
	// accepted after that restores it (it takes one slot of two: no new
	// pause).
	time.Sleep(backlogHold)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake after the pause: %v", err)
	}
	c.Close()
	waitFor(t, "the backlog to be restored", func() bool {
		b, _ := listenBacklogOf(t, ts, addr)
		return b == listenBacklog()
	})
	if n := ts.metricSum("pqedge_accept_pauses_total"); n < 1 {
		t.Errorf("pqedge_accept_pauses_total = %v, want at least 1", n)
	}
	if s := ts.metricSum("pqedge_accept_paused_seconds_total"); s <= 0 {
		t.Errorf("pqedge_accept_paused_seconds_total = %v, want > 0", s)
	}
}
