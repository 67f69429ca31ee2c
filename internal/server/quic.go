package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/pqedge/pqedge/internal/plan"
	"github.com/pqedge/pqedge/pqtls/quichello"
)

// HTTP/3 (config http3 = true on an https listener) is served by quic-go
// and its http3 package over the listener's sites, policies, certificates
// and routes. Its parts follow the server's lifecycle:
//
//	component   quicSocket: the UDP socket at the listener's address, the
//	            quichello.Tracker reading every ClientHello from its
//	            Initial packets, the quic.Transport and its listener. It
//	            lives in the socket set under the listener's QUICKey, so a
//	            reload that keeps the address keeps all of it.
//	generation  quicListener: per listener, the sites' TLS configs (ALPN
//	            h3), the quic.Config with the plan's timeouts, the
//	            http3.Server whose handler is the listener's router, and
//	            the connections handed to it, whose streams pqedge
//	            accepts itself (quic_serve.go; drained with GOAWAY).
//	connection  quicConn (quic_accept.go): from the first Initial to the
//	            hand-off, what the TLS callbacks decided, one
//	            HandshakeEvent with Transport "quic".

// quicMaxStreams bounds the concurrent request streams a client may open
// on one QUIC connection (RFC 9000 Section 4.6): net/http's HTTP/2 server
// default (250, its defaultMaxStreams), so a connection holds as much over
// HTTP/3 as over HTTP/2.
const quicMaxStreams = 250

// altSvcMaxAge is how long a client may remember that the listener speaks
// HTTP/3 (Alt-Svc ma, RFC 7838 Section 3): a day, so turning http3 off
// reaches every client within one, while a returning visitor still goes
// straight to QUIC.
const altSvcMaxAge = 24 * time.Hour

// quicSocket is the UDP side of an https listener: a component that
// outlives generations (see the socket set). Connections are accepted by
// its listener once their handshake is complete and handed to the
// generation current then.
type quicSocket struct {
	udp       *net.UDPConn
	tracker   *quichello.Tracker
	transport *quic.Transport
	ln        *quic.Listener
	// refusals are the connection attempts the limits refused, so that
	// their later Initials are refused once more without being counted
	// again (quic_refusals.go).
	refusals refusedAttempts
}

// openQUIC binds the UDP socket of an https listener at host:port (the
// port of its TCP socket) and starts its QUIC transport. Each connection
// finds the listener of the current generation by the socket
// (generation.bySocket).
func (ss *socketSet) openQUIC(ctx context.Context, w socketWant, port int) (*socket, error) {
	s := ss.srv
	host, _, err := net.SplitHostPort(plan.BindAddress(w.key))
	if err != nil {
		return nil, fmt.Errorf("failed to listen on UDP for %s: %w", w.what, err)
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	lc := net.ListenConfig{Control: w.control()}
	pc, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on UDP %s for %s (http3): %w", addr, w.what, err)
	}
	q := &quicSocket{udp: pc.(*net.UDPConn), tracker: &quichello.Tracker{}}
	sk := &socket{key: w.key, srv: s, done: make(chan struct{}), reusePort: w.reusePort, quic: q}
	q.transport = &quic.Transport{
		Conn:        quichello.NewPacketConn(q.udp, q.tracker),
		ConnContext: s.quicConnContext(sk),
		// Under a handshake flood (handshakes already queue for a slot),
		// a new client must first prove its address with a Retry (RFC
		// 9000 Section 8.1.2): a spoofed source then costs one stateless
		// packet instead of a connection.
		VerifySourceAddress: func(net.Addr) bool { return s.limiter.Stats().WaitingHandshakes > 0 },
		Tracer:              s.metrics.quic.drops,
	}
	// Every connection starts from this config; its site's config comes
	// from the ClientHello (quicConfigForClient).
	base := &tls.Config{GetConfigForClient: s.quicConfigForClient, NextProtos: []string{http3.NextProtoH3}}
	q.ln, err = q.transport.Listen(base, &quic.Config{GetConfigForClient: s.quicConfigFor(sk)})
	if err != nil {
		q.transport.Close()
		q.udp.Close()
		return nil, fmt.Errorf("failed to start QUIC on %s for %s: %w", addr, w.what, err)
	}
	return sk, nil
}

// serveQUIC accepts handshaken QUIC connections until the socket closes.
// quic-go completes each handshake in the connection's own goroutine; this
// loop only takes them from its queue.
func (sk *socket) serveQUIC() {
	defer close(sk.done)
	for {
		conn, err := sk.quic.ln.Accept(context.Background())
		if err != nil {
			return // the listener was closed
		}
		go sk.srv.handleQUIC(sk, conn)
	}
}

// close stops accepting and closes every QUIC connection of the socket,
// then the socket: a removed listener's UDP address is gone, and QUIC
// connections cannot outlive their socket as TCP ones do. Drains close
// their generation's connections gracefully before (quicListener.drain).
func (q *quicSocket) close() {
	q.ln.Close()
	q.transport.Close()
	q.udp.Close()
}

// QUICAddr returns the bound UDP address of a listener of the current
// config that serves HTTP/3, or nil.
func (s *Server) QUICAddr(name string) net.Addr {
	l := s.current.Load().plan.Listener(name)
	if l == nil || l.QUICKey == "" {
		return nil
	}
	return s.sockets.addr(l.QUICKey)
}

// quicConfigFor is the quic.Config of each new connection on a socket:
// the current generation's (timeouts change with reloads), or the
// defaults when the listener is gone (its ConnContext refuses it anyway).
func (s *Server) quicConfigFor(sk *socket) func(*quic.ClientInfo) (*quic.Config, error) {
	return func(*quic.ClientInfo) (*quic.Config, error) {
		if g := s.current.Load(); g != nil {
			if l := g.bySocket[sk]; l != nil && l.quic != nil {
				return l.quic.conf, nil
			}
		}
		return &quic.Config{}, nil
	}
}

// quicListener is the HTTP/3 side of one https listener of a generation.
type quicListener struct {
	l *listenerRuntime
	// tlsConfigs are the sites' TLS configs over QUIC: the TCP ones with
	// ALPN h3 alone (no acme-tls/1: TLS-ALPN-01 runs over TCP).
	tlsConfigs map[*siteRuntime]*tls.Config
	conf       *quic.Config
	h3         *http3.Server
	// altSvc is the Alt-Svc value the TCP side's responses carry.
	altSvc string

	// readHeader bounds a request stream's HEADERS frame and a
	// unidirectional stream's type (timeouts.read_header, quic_serve.go).
	readHeader time.Duration
	// grace ends when the drain begins: the connections' accept loops
	// then send GOAWAY.
	grace     context.Context
	stopGrace context.CancelFunc

	mu      sync.Mutex // guards conns and changed
	conns   map[*quic.Conn]bool
	changed chan struct{} // closed and replaced when conns shrinks
}

// newQUICListener builds the HTTP/3 side of l and makes l's TCP responses
// advertise it. udpPort is the bound port of its UDP socket.
func (t *txn) newQUICListener(l *listenerRuntime, udpPort int) *quicListener {
	s, p := t.s, t.plan
	q := &quicListener{l: l, tlsConfigs: map[*siteRuntime]*tls.Config{}, readHeader: p.Timeouts.ReadHeader,
		conns: map[*quic.Conn]bool{}, changed: make(chan struct{})}
	q.grace, q.stopGrace = context.WithCancel(context.Background())
	for rt := range l.tlsConfigs {
		c := s.siteTLS(rt, []string{http3.NextProtoH3})
		c.NextProtos = []string{http3.NextProtoH3}
		c.MinVersion = tls.VersionTLS13 // QUIC is TLS 1.3 only (RFC 9001 Section 4.2)
		q.tlsConfigs[rt] = c
	}
	streamWindow, connWindow := h3ReceiveWindows(p.Limits.RequestHeader)
	q.conf = &quic.Config{
		// quic-go closes a connection whose handshake has seen no packet
		// for HandshakeIdleTimeout, or that has not completed in twice
		// that: the handshake timeout bounds the whole, as on TCP.
		HandshakeIdleTimeout: p.Timeouts.Handshake / 2,
		// The transport ends a connection from which nothing arrived for
		// timeouts.idle (RFC 9000 section 10.1): a client that vanished.
		// The server's PINGs every half of it keep a present client's
		// ACKs coming while a request waits on its upstream longer than
		// that, as TCP keeps such a connection; quicIdle closes one idle
		// between requests.
		MaxIdleTimeout:     p.Timeouts.Idle,
		KeepAlivePeriod:    p.Timeouts.Idle / 2,
		MaxIncomingStreams: quicMaxStreams,
		// awaitHeaders peeks at header blocks without reading them, and
		// unread bytes keep their flow-control credit (RFC 9000 Section
		// 4.1): the windows fit every stream's header block at once.
		InitialStreamReceiveWindow:     streamWindow,
		InitialConnectionReceiveWindow: connWindow,
		MaxStreamReceiveWindow:         max(streamWindow, h3MaxStreamWindow),
		MaxConnectionReceiveWindow:     max(connWindow, h3MaxConnWindow),
		// No 0-RTT: early data can be replayed (RFC 9001 Section 9.2),
		// and requests go on to upstreams that do not expect it.
		Allow0RTT: false,
	}
	// Only its NewRawServerConn serves: pqedge accepts the streams
	// (quic_serve.go).
	q.h3 = &http3.Server{
		// No IdleTimeout: quicIdle keeps it instead (quic_idle.go says
		// why), counting the requests here.
		Handler:        quicIdleHandler{l.http.Handler},
		MaxHeaderBytes: p.Limits.RequestHeader,
		ConnContext:    q.connContext,
		Logger:         s.log.With("listener", l.Name, "transport", "quic"),
	}
	q.altSvc = fmt.Sprintf(`h3=":%d"; ma=%d`, udpPort, int(altSvcMaxAge.Seconds()))
	l.http.Handler = altSvc{h: l.http.Handler, value: q.altSvc}
	return q
}

// altSvc advertises the listener's HTTP/3 on every response of its TCP
// side (RFC 7838; RFC 9114 Section 3.1.1).
type altSvc struct {
	h     http.Handler
	value string
}

func (a altSvc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Alt-Svc", a.value)
	a.h.ServeHTTP(w, r)
}

// take serves conn in q's generation unless the generation is retired; it
// reports whether it took the connection. The connection is q's from now
// until its HTTP/3 has ended (serve), so a drain that starts at any point
// sends it a GOAWAY.
func (q *quicListener) take(conn *quic.Conn) bool {
	g := q.l.gen
	g.handoff.RLock()
	defer g.handoff.RUnlock()
	if g.retired {
		return false
	}
	q.mu.Lock()
	q.conns[conn] = true
	q.mu.Unlock()
	go func() {
		defer q.forget(conn)
		q.serve(conn)
	}()
	return true
}

// connContext is the http3.Server's ConnContext: requests carry the
// handshake record of their connection.
func (q *quicListener) connContext(ctx context.Context, conn *quic.Conn) context.Context {
	qc := quicConnFrom(conn.Context())
	if qc == nil || qc.info == nil {
		return ctx
	}
	return withConnInfo(ctx, qc.info)
}

func (q *quicListener) forget(conn *quic.Conn) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.conns, conn)
	close(q.changed)
	q.changed = make(chan struct{})
}

// drain sends every connection of the generation a GOAWAY (RFC 9114
// Section 5.2) and waits until their requests are answered and their
// clients closed them, or ctx ends; then what is left is closed, and
// waited for until its handlers returned.
func (q *quicListener) drain(ctx context.Context) {
	q.stopGrace()
	if q.waitConns(ctx) {
		return
	}
	q.mu.Lock()
	for conn := range q.conns {
		conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
	}
	q.mu.Unlock()
	q.waitConns(context.Background())
}

// waitConns waits until q serves no connection, or ctx ends; it reports
// whether none is left.
func (q *quicListener) waitConns(ctx context.Context) bool {
	for {
		q.mu.Lock()
		n, changed := len(q.conns), q.changed
		q.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}
