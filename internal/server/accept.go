package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/connlimit"
	"github.com/pqedge/pqedge/internal/h2guard"
	"github.com/pqedge/pqedge/internal/pages"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// connInfo is what the requests and streams of a connection know of it,
// decided once at the handshake.
type connInfo struct {
	handshake *pqtls.Handshake  // &kept
	site      string            // name of the site the handshake chose
	leaf      *x509.Certificate // the certificate sent, for Host checks
	facts     proxy.HandshakeFacts
	remote    net.Addr
	kept      pqtls.Handshake // the record, held here (newConnInfo)
}

// acceptLoop accepts until the socket is closed. Each connection's handshake
// runs in its own goroutine, so a client that stalls mid-handshake holds
// only its own goroutine, until the handshake timeout.
func (sk *socket) acceptLoop() {
	defer close(sk.done)
	if sk.plain != nil {
		sk.servePlain()
		return
	}
	var backoff time.Duration
	var bl backlogState
	// full: the last reservation took the last handshake place, or was
	// refused; the limiter is asked only once per connection.
	full := false
	for accepted := 1; ; accepted++ {
		if accepted%acceptBurst == 0 {
			// Under a flood, established connections' requests run
			// between bursts of accepts (connlimit.CryptoGate).
			sk.srv.limiter.YieldToPoller()
		}
		// Every handshake slot taken and the queue full: accept no more
		// until there is room, and let the kernel refuse the rest
		// (waitForRoom).
		if full && !sk.waitForRoom(&bl) {
			return // closed while waiting
		}
		full = false
		c, err := sk.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait instead of
			// spinning, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			sk.srv.log.Warn("accept failed", "address", sk.key, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if bl.shrunk && time.Since(bl.lastPause) >= backlogHold {
			// The first connection after a quiet spell: the rest of its
			// burst queues in the kernel as before the pause.
			sk.restoreBacklog(&bl)
		}
		// The caps on connections act here, before a byte is read: a
		// refused connection costs an accept and a close.
		lc, err := sk.srv.limiter.Accept(c)
		if err != nil {
			continue
		}
		// The handshake's place (a slot or a place in the queue) is
		// taken here, before its goroutine starts, so that the limiter
		// is full as soon as the accepted connections fill it and the
		// loop pauses (waitForRoom); a full queue refuses here, without
		// a goroutine that would crowd Go's run queue ahead of
		// established connections.
		// A connection whose client keeps its handshake waiting may be
		// evicted while handshakes queue (connlimit's evict.go).
		watch := newSocketWatch(lc, c)
		ticket, err := sk.srv.limiter.ReserveWatchedHandshake(sk.handshakeClient(c), watch)
		if err != nil {
			lc.Close()
			// A full queue: another listener's loop or QUIC filled it.
			// A client over its own cap leaves room for the others.
			full = errors.Is(err, connlimit.ErrHandshakeQueue)
			continue
		}
		full = ticket.LeftFull()
		go sk.srv.handleConn(sk, lc, ticket, watch)
	}
}

// handshakeClient is the address a connection's handshake slot or queue
// place counts against (limits.handshakes_per_client): its peer's, but
// none (nil) for a load balancer the listener trusts for PROXY headers
// (proxy_protocol_in), which carries many clients whose addresses are
// known only once the header is read, after the reservation.
func (sk *socket) handshakeClient(c net.Conn) net.Addr {
	if g := sk.srv.current.Load(); g != nil {
		if l := g.bySocket[sk]; l != nil && trustedProxy(c.RemoteAddr(), l.ProxyIn) {
			return nil
		}
	}
	return c.RemoteAddr()
}

// waitForRoom pauses an accept loop while every handshake slot is taken
// and the handshake queue is full, so that a flood's excess is refused by
// the kernel instead of accepted and closed; it reports false when the
// socket was closed meanwhile.
//
// Why: accepting a connection only to close it costs the front an accept,
// a close (whose FIN or reset the kernel sends inside the call) and a
// wake-up, on the same core as the established connections. Under a 5x
// flood that was most of the front's core, and the connections the
// handshake queue held had mostly been given up by their clients when
// their turn came (docs/BENCHMARKS.md, "Overload", sets G and H).
// Pausing alone is not enough: the kernel's accept queue (the listen
// backlog, somaxconn: 4096) goes on taking connections, which are stale
// by the time the loop resumes. So the backlog shrinks to pausedBacklog
// while the loop waits (listen(2) on a listening socket sets its backlog
// again), the kernel drops the SYNs beyond it (counted as
// TcpExtListenDrops in /proc/net/netstat; the client retries after its
// SYN timeout, 1 s on Linux), and it grows back at the first connection
// accepted backlogHold or more after the last pause: under a sustained flood every freed slot
// ends a pause and the next connection starts another, and restoring the
// backlog in between would cost two listen(2) calls per handshake and let
// the kernel queue beyond pausedBacklog meanwhile.
func (sk *socket) waitForRoom(bl *backlogState) bool {
	if !bl.shrunk {
		bl.shrunk = setBacklog(sk.ln, pausedBacklog) == nil
	}
	room := sk.srv.limiter.WaitForRoom(sk.stopped)
	bl.lastPause = time.Now()
	return room
}

// backlogState is an accept loop's record of its listen backlog.
type backlogState struct {
	shrunk    bool      // the backlog is pausedBacklog
	lastPause time.Time // when the loop last came out of a pause
}

// restoreBacklog sets the backlog back to somaxconn; on failure it stays
// shrunk and is tried again after another backlogHold.
func (sk *socket) restoreBacklog(bl *backlogState) {
	if err := setBacklog(sk.ln, listenBacklog()); err != nil {
		sk.srv.log.Warn("failed to restore the listen backlog after a pause", "address", sk.key, "err", err)
		bl.lastPause = time.Now()
		return
	}
	bl.shrunk = false
}

// backlogHold is how long an accept loop keeps its backlog shrunk after
// its last pause.
const backlogHold = time.Second

// pausedBacklog is the listen backlog while an accept loop waits for
// handshake room: the connections it holds are accepted first when the
// loop resumes, so it is small enough that they are still fresh (at
// ~2,000 handshakes a second per core, 16 wait ~8 ms).
const pausedBacklog = 16

// acceptBurst is how many connections an accept loop takes in a row
// while handshakes queue, before it lets the network poller run: ~150 µs
// of accepting and refusing.
const acceptBurst = 16

// handleConn is one accepted connection: handshake, record, hand-off.
// ticket is its place in the limiter (a handshake slot or a place in the
// queue), taken by the accept loop, and watch what the limiter asks of
// it.
func (s *Server) handleConn(sk *socket, raw net.Conn, ticket connlimit.HandshakeTicket, watch *socketWatch) {
	g := s.current.Load()
	var l *listenerRuntime
	if g != nil {
		l = g.bySocket[sk]
	}
	if l == nil {
		// The socket belongs to a config still obtaining its ACME
		// certificates (the CA's TLS-ALPN-01 validation must be answered
		// here), or a reload just removed its listener.
		ticket.Cancel()
		s.acme.answerChallenge(raw, config.DefaultHandshakeTimeout)
		return
	}
	conn := raw
	var pin *proxyInConn
	if len(l.ProxyIn) > 0 {
		// The PROXY reader buffers what it reads: the socket's waiting
		// bytes are not the ClientHello's start from now on (socketWatch).
		watch.read.Store(true)
		pin = wrapProxyIn(raw, l.ProxyIn, g.plan.Timeouts.Handshake)
		conn = pin
	}
	deadline := s.now().Add(g.plan.Timeouts.Handshake)

	// The deadline bounds clients that stop mid-handshake or send nothing
	// (or, behind a load balancer, no PROXY header). It is set through the
	// PROXY reader, which restores it after the header. A handshake slot
	// is waited for under the same deadline: a flood of new handshakes
	// queues, or is closed, before it costs any cryptography. Then each
	// burst of its CPU waits for a slot of the crypto gate (edgeConn.Read),
	// so that handshakes in progress compute a few at a time and
	// established connections do not wait behind hundreds of them in Go's
	// run queue (connlimit.CryptoGate).
	conn.SetDeadline(deadline)
	if pin != nil && !ticket.HasClient() {
		// A trusted balancer's connection was not counted against a
		// client at accept (socket.handshakeClient): its client is in
		// the PROXY header, read here, before its turn for a slot,
		// under the handshake deadline, so that one client behind the
		// balancer holds at most limits.handshakes_per_client places.
		// A missing or refused header leaves the balancer's address,
		// and the handshake's first read then fails with it. A header
		// that stalls is a stalled client's (socketWatch).
		watch.reading()
		client := pin.RemoteAddr()
		watch.readDone()
		if client.String() != raw.RemoteAddr().String() {
			if err := ticket.SetClient(client); err != nil {
				ticket.Cancel()
				raw.Close()
				return
			}
		}
	}
	slot, err := ticket.Wait(deadline)
	if err != nil {
		raw.Close()
		return
	}
	// Made only now: a queued connection holds nothing of crypto/tls's
	// while it waits, so that a full queue is a small heap to collect.
	ec := &edgeConn{CaptureConn: pqtls.NewCaptureConn(conn, 0), listener: l, proxyIn: pin, limiter: s.limiter, deadline: deadline, socket: watch.rc, watch: watch}
	tc := tls.Server(ec, s.tlsBase)
	if ticket.Queued() && ec.checkPeer() != nil {
		// Its client gave up while it waited, as a flood's attempts do
		// long before their turn: closed without reading its
		// ClientHello, the cheapest way out of the queue, and counted as
		// the key exchange's own check would count it.
		slot()
		s.observe(s.handshakeEvent(ec, tc, errClientLeft, 0))
		raw.Close()
		return
	}
	reserveHandshakeStack(0) // before crypto/tls, not in the middle of ML-KEM (stack.go)
	start := time.Now()
	ec.handshaking = true
	err = tc.Handshake()
	ec.handshaking = false
	took := time.Since(start)
	slot()
	conn.SetDeadline(time.Time{})
	if err != nil && ticket.Evicted() {
		// Closed to make room, its client silent or stalled: not a
		// handshake, and counted by the limiter (reasons "silent" and
		// "stalled").
		ec.endCrypto()
		tc.Close()
		return
	}

	if err == nil && tc.ConnectionState().NegotiatedProtocol == acmeALPN {
		// A CA's TLS-ALPN-01 validation: the handshake was all of it
		// (RFC 8737 section 3), and it is not a client's connection.
		ec.endCrypto()
		tc.Close()
		return
	}
	ev := s.handshakeEvent(ec, tc, err, took)
	s.observe(ev)
	// The handshake's last burst of CPU, from the client's Finished (or
	// the failure) to its record, ends here.
	ec.endCrypto()
	if err != nil {
		if ev.Reason == reasonNotTLS {
			answerPlainHTTP(conn, ec.prefix, err, deadline)
		}
		tc.Close()
		return
	}
	hello, _ := ec.Release()
	ec.info = newConnInfo(ev, hello, ec.cert, conn.RemoteAddr())
	s.handOff(sk, tc, ec.info)
}

// newConnInfo is what a connection keeps of its handshake for its life,
// once the sinks have seen the event, in one allocation: the event's
// facts, and a copy of its record with hello, the ClientHello detached
// from the bytes it was captured in (CaptureConn.Release over TCP,
// ClientHello.Detached over QUIC), so that those can be collected. The
// inspect page and the upstream headers read only parsed fields; the
// captured records (1.5–2.1 KB for a browser's post-quantum hello) would
// otherwise stay with every idle keep-alive connection. The event's own
// record is left as the sinks saw it.
func newConnInfo(ev *HandshakeEvent, hello *pqtls.ClientHello, cert *tls.Certificate, remote net.Addr) *connInfo {
	ci := &connInfo{site: ev.Site, leaf: leafOf(cert), facts: factsOf(ev.Handshake), remote: remote, kept: *ev.Handshake}
	ci.kept.Client = hello
	ci.handshake = &ci.kept
	return ci
}

// configForClient is the GetConfigForClient of every listener: it resolves
// the site of the server name on the connection's listener and returns
// that site's config for the listener.
func (s *Server) configForClient(info *tls.ClientHelloInfo) (*tls.Config, error) {
	ec, ok := info.Conn.(*edgeConn)
	if !ok {
		return nil, fmt.Errorf("internal error: connection is %T, not an edge connection", info.Conn)
	}
	l := ec.listener
	if c := l.gen.acme.challengeConfig(info); c != nil {
		// A CA validating an ACME name: answered whatever the SNI's site
		// and its policy (acme.go).
		return c, nil
	}
	site, _ := l.Resolver.Resolve(info.ServerName)
	if site == nil {
		ec.nameErr = &unknownNameError{name: info.ServerName, listener: l.Name}
		// RFC 6066 section 3: unrecognized_name, written here before
		// any cryptography (crypto/tls sends it only after the key
		// exchange, for a config without certificates: unrecognizedName).
		// crypto/tls's internal_error for the error follows; the client
		// stops at the first alert.
		ec.Write(unrecognizedNameAlert)
		return nil, ec.nameErr
	}
	rt := l.site(site)
	ec.site = rt
	if err := ec.beginCrypto(); err != nil {
		return nil, err
	}
	// The key exchange and signature come next, for a whole ClientHello:
	// not for a client that has left (checkPeer).
	if err := ec.checkPeer(); err != nil {
		return nil, err
	}
	return l.tlsConfigs[rt], nil
}

// unknownNameError refuses a server name on a strict_sni listener.
type unknownNameError struct{ name, listener string }

// unrecognizedName is the config a strict_sni listener answers a name no
// site serves with over QUIC: it has no certificate, so crypto/tls sends
// the unrecognized_name alert (RFC 6066 section 3: 112; CRYPTO_ERROR
// 0x170, RFC 9001 section 4.8) where an error from GetConfigForClient
// would send internal_error, at the cost of the key exchange, which
// crypto/tls does first (~130 µs). The connection keeps the reason
// (nameErr). Never modified.
var unrecognizedName = &tls.Config{}

// unrecognizedNameAlert is the record a strict_sni listener writes over
// TCP for a name no site serves: a fatal unrecognized_name alert (RFC 8446
// section 6; 112, RFC 6066 section 3), in a TLS 1.0 record as crypto/tls
// writes before a version is agreed.
var unrecognizedNameAlert = []byte{21, 3, 1, 0, 2, 2, 112}

func (e *unknownNameError) Error() string {
	return fmt.Sprintf("no site serves %q on listener %q (strict_sni)", e.name, e.listener)
}

// handOff gives a handshaken connection to the current generation's
// listener for its socket. A generation retired between the handshake and
// the hand-off takes no connection; the one current by then does.
func (s *Server) handOff(sk *socket, tc *tls.Conn, ci *connInfo) {
	for range 3 {
		g := s.current.Load()
		l := g.bySocket[sk]
		if l == nil {
			break // a reload removed the listener meanwhile
		}
		if l.take(tc, ci) {
			return
		}
	}
	tc.Close()
}

// take serves tc in l's generation unless the generation is retired; it
// reports whether it took the connection.
func (l *listenerRuntime) take(tc *tls.Conn, ci *connInfo) bool {
	g := l.gen
	g.handoff.RLock()
	if g.retired {
		g.handoff.RUnlock()
		return false
	}
	if l.stream != nil {
		g.streams.Add(1)
		g.handoff.RUnlock()
		defer g.streams.Done()
		l.serveStream(tc, ci)
		return true
	}
	defer g.handoff.RUnlock()
	// The HTTP server accepts from its queue until the generation is
	// retired, which waits for this read lock: deliver cannot block for
	// long.
	c := l.guard(tc)
	l.conns.expect(c)
	if !l.queue.deliver(c) {
		l.conns.forget(c)
		return false
	}
	return true
}

// connContext gives each HTTP request on a connection what the handshake
// decided, and the connection's page view.
func connContext(ctx context.Context, c net.Conn) context.Context {
	tc, ok := tlsConnOf(c)
	if !ok {
		return ctx
	}
	ec, ok := tc.NetConn().(*edgeConn)
	if !ok || ec.info == nil {
		return ctx
	}
	ctx = context.WithValue(ctx, connInfoKey{}, ec.info)
	if g, ok := h2guard.Unwrap(c); ok {
		ctx = context.WithValue(ctx, h2GuardKey{}, g)
	}
	return proxy.WithHandshakeFacts(ctx, ec.info.facts)
}

type connInfoKey struct{}

// h2GuardKey holds the *h2guard.Conn of an HTTP/2 request's connection,
// for the router's refusal budget.
type h2GuardKey struct{}

func connInfoFrom(ctx context.Context) *connInfo {
	ci, _ := ctx.Value(connInfoKey{}).(*connInfo)
	return ci
}

// withPage stores the connection's page view for the built-in pages.
func withPage(ctx context.Context, site *siteRuntime, ci *connInfo) context.Context {
	return pages.WithConn(ctx, site.pageConn(ci))
}

func factsOf(h *pqtls.Handshake) proxy.HandshakeFacts {
	return proxy.HandshakeFacts{
		Group:     h.GroupName(),
		Signature: h.SignatureName(),
		Version:   pqtls.VersionName(h.Version),
		Cipher:    pqtls.CipherSuiteName(h.CipherSuite),
		PQ:        h.PostQuantum(),
		ALPN:      h.ALPN, ServerName: h.ServerName,
	}
}

func leafOf(cert *tls.Certificate) *x509.Certificate {
	if cert == nil {
		return nil
	}
	if cert.Leaf != nil {
		return cert.Leaf
	}
	if len(cert.Certificate) > 0 {
		if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
			return leaf
		}
	}
	return nil
}
