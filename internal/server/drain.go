package server

import (
	"context"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// retire stops a generation from taking connections and drains it in the
// background until its timeouts.shutdown or parent ends, whichever is
// first; then it is forgotten (its upstream series go). Retiring a
// generation that is already retiring only adds parent's bound.
func (s *Server) retire(g *generation, parent context.Context) {
	g.retireOnce.Do(func() {
		g.handoff.Lock()
		g.retired = true
		g.handoff.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), g.plan.Timeouts.Shutdown)
		g.cancelDrain = cancel
		s.retiring.Add(1)
		go func() {
			defer s.retiring.Done()
			defer cancel()
			g.drain(ctx)
			s.forget(g)
		}()
	})
	context.AfterFunc(parent, g.cancelDrain)
}

// forget drops a drained generation from the live list.
func (s *Server) forget(g *generation) {
	s.mu.Lock()
	s.live = slices.DeleteFunc(s.live, func(x *generation) bool { return x == g })
	s.mu.Unlock()
	s.sockets.closeUnused(s.liveGenerations()) // UDP sockets only its QUIC connections held
	s.syncUpstreamMetrics()
}

// drain lets what the generation took finish, until ctx ends, then closes
// what is left. It takes no new connection (retired is set).
//
// An HTTP/1 connection that has not sent its request yet must not meet
// http.Server.Shutdown: a request read after Shutdown began is dropped
// unanswered (net/http's conn.serve checks shuttingDown after reading it).
// So keep-alives are turned off first, which answers every request still to
// come with "Connection: close" and closes idle connections, and Shutdown
// waits until no HTTP/1 connection is left. HTTP/2 connections then get
// Shutdown's GOAWAY, which tells their clients which streams were not
// served so they retry them elsewhere (RFC 9113 section 6.8). A connection
// handed over just before the reload, whose client has not sent its first
// request yet, gets up to h2FirstRequestGrace to send it first: Go's
// client does not retry a first request on a connection that closed
// before it (net/http's "http2: client conn could not be established"),
// which a reload under load produced now and then.
func (g *generation) drain(ctx context.Context) {
	var wg sync.WaitGroup
	for _, l := range g.listeners {
		if l.http != nil {
			wg.Go(func() { l.drainHTTP(ctx) })
		}
		if l.quic != nil {
			wg.Go(func() { l.quic.drain(ctx) })
		}
	}
	wg.Go(func() {
		waitOrDone(ctx, &g.streams)
		for _, l := range g.listeners {
			if l.stream != nil {
				// Streams still running now are past the deadline:
				// Shutdown closes them.
				l.stream.Shutdown(ctx)
			}
		}
	})
	wg.Go(func() {
		// Upgraded connections (WebSockets) are hijacked: http.Server
		// no longer tracks them; their handlers do until they end.
		waitOrDone(ctx, &g.upgraded)
		for _, l := range g.listeners {
			if l.conns != nil {
				l.conns.closeHijacked()
			}
		}
	})
	wg.Wait()
	g.closePools()
}

func (l *listenerRuntime) drainHTTP(ctx context.Context) {
	l.http.SetKeepAlivesEnabled(false)
	l.conns.waitHTTP1(ctx)
	if err := l.http.Shutdown(ctx); err != nil {
		l.http.Close()
	}
}

// waitOrDone waits for wg or for ctx to end.
func waitOrDone(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// connTracker follows the connections of one http.Server through its
// ConnState hook, so a drain knows when no HTTP/1 connection is left and
// every HTTP/2 connection is known to the HTTP/2 server (which reports a
// connection's state only once it registered it for graceful shutdown).
//
// The hook runs twice per request (Active, Idle); for almost every
// request nothing a drain waits on changes, so that costs one map lookup,
// and a change wakes a waiter only when there is one.
type connTracker struct {
	mu       sync.Mutex // guards the fields below
	phase    map[net.Conn]connPhase
	fresh    map[net.Conn]time.Time // when each phaseH2Fresh connection became so
	grace    time.Duration          // h2FirstRequestGrace
	hijacked map[net.Conn]bool
	changed  chan struct{} // made by a waiter, closed at the next change; nil when nobody waits
}

type connPhase uint8

const (
	phaseHTTP1     connPhase = iota // an HTTP/1 connection
	phaseH2Pending                  // ALPN h2, not yet registered by the HTTP/2 server
	phaseH2Fresh                    // registered, no request yet (fresh holds since when)
	phaseH2                         // registered and past its first request: Shutdown's GOAWAY may come
)

// h2FirstRequestGrace is how long a drain waits for a fresh HTTP/2
// connection's first request before its GOAWAY: a client sends it with
// the connection preface, within a round trip of the handshake; one that
// opened the connection ahead of need (a browser's preconnect) gets the
// GOAWAY after this and opens another when it needs one.
const h2FirstRequestGrace = time.Second

func newConnTracker() *connTracker {
	return &connTracker{phase: map[net.Conn]connPhase{}, fresh: map[net.Conn]time.Time{}, hijacked: map[net.Conn]bool{},
		grace: h2FirstRequestGrace}
}

// phaseOf is where a connection starts: HTTP/2 pending when ALPN chose h2.
func phaseOf(c net.Conn) connPhase {
	if tc, ok := tlsConnOf(c); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
		return phaseH2Pending
	}
	return phaseHTTP1
}

// expect records a connection about to be handed to the http.Server, before
// it is: http.Server.Serve reports StateNew only after its Accept returned,
// and a drain that looked in between would see no connection and start
// Shutdown, which then drops the request that connection reads.
func (t *connTracker) expect(c net.Conn) {
	ph := phaseOf(c)
	t.mu.Lock()
	t.phase[c] = ph
	t.mu.Unlock()
}

// forget drops a connection expect recorded that was not handed over.
func (t *connTracker) forget(c net.Conn) { t.track(c, http.StateClosed) }

// track is the http.Server's ConnState hook.
func (t *connTracker) track(c net.Conn, state http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch state {
	case http.StateNew:
		if _, expected := t.phase[c]; expected {
			return
		}
		t.phase[c] = phaseOf(c)
	case http.StateActive, http.StateIdle:
		// The HTTP/2 server reports Active then Idle as it registers a
		// connection, then Active at its first stream.
		switch ph := t.phase[c]; {
		case ph == phaseH2Pending && state == http.StateActive:
			t.phase[c] = phaseH2Fresh
			t.fresh[c] = time.Now()
		case ph == phaseH2Fresh && state == http.StateActive:
			t.phase[c] = phaseH2
			delete(t.fresh, c)
		default:
			return // a request began or ended: nothing a drain waits on
		}
	case http.StateHijacked:
		delete(t.phase, c)
		delete(t.fresh, c)
		t.hijacked[c] = true
	case http.StateClosed:
		delete(t.phase, c)
		delete(t.fresh, c)
	}
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// waitHTTP1 waits until no HTTP/1 connection is left, no HTTP/2 one is
// unregistered, and every fresh HTTP/2 one has sent its first request or
// had h2FirstRequestGrace to, or ctx ends.
func (t *connTracker) waitHTTP1(ctx context.Context) {
	for {
		t.mu.Lock()
		busy := false
		var graceLeft time.Duration // the longest a fresh connection still has
		for c, ph := range t.phase {
			switch ph {
			case phaseH2:
			case phaseH2Fresh:
				graceLeft = max(graceLeft, t.grace-time.Since(t.fresh[c]))
			default:
				busy = true
			}
		}
		if !busy && graceLeft <= 0 {
			t.mu.Unlock()
			return
		}
		// Taken with the state: no change can slip between.
		if t.changed == nil {
			t.changed = make(chan struct{})
		}
		changed := t.changed
		t.mu.Unlock()
		var graceOver <-chan time.Time
		var tm *time.Timer
		if graceLeft > 0 {
			tm = time.NewTimer(graceLeft)
			graceOver = tm.C
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-graceOver:
		}
		if tm != nil {
			tm.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// closeHijacked closes the upgraded connections still open.
func (t *connTracker) closeHijacked() {
	t.mu.Lock()
	conns := make([]net.Conn, 0, len(t.hijacked))
	for c := range t.hijacked {
		conns = append(conns, c)
	}
	t.hijacked = map[net.Conn]bool{}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// connQueue is a net.Listener fed by the accept loop with handshaken
// connections; http.Server.Serve accepts from it.
type connQueue struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// deliver hands c to the http.Server; false when the queue is closed.
func (q *connQueue) deliver(c net.Conn) bool {
	select {
	case q.conns <- c:
		return true
	case <-q.closed:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

// Addr is required by net.Listener; http.Server only logs it.
func (q *connQueue) Addr() net.Addr { return queueAddr{} }

type queueAddr struct{}

func (queueAddr) Network() string { return "pqedge" }
func (queueAddr) String() string  { return "pqedge-handshaken" }
