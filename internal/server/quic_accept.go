package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/pqedge/pqedge/internal/connlimit"
	"github.com/pqedge/pqedge/internal/plan"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// A QUIC connection's life in pqedge, beside a TCP one's (accept.go):
//
//	first Initial    quicConnContext: the listener of the current
//	                 generation, refusals before any cryptography (an
//	                 Initial nothing can open, the connection caps, no
//	                 handshake place: CONNECTION_REFUSED), the handshake
//	                 place, the connection's state in its context
//	ClientHello      quicConfigForClient: the wait for a handshake slot,
//	                 the recorded ClientHello, the site by SNI; then the
//	                 site's getCertificate as over TCP
//	handshake end    handleQUIC (accepted) or quicConnEnded (failed): one
//	                 HandshakeEvent, Transport "quic"
//	hand-off         the current generation's HTTP/3 (quicListener.take,
//	                 then serve: pqedge's stream accept loops, quic_serve.go)

// quicConn is what pqedge knows of one QUIC connection from its first
// Initial to its hand-off: the part of edgeConn that does not need a
// net.Conn. It travels in the connection's context (quic-go passes it to
// crypto/tls as ClientHelloInfo.Context). The TLS callbacks write their
// fields on the connection's handshake goroutine; they are read once the
// handshake has ended (quic-go's accept queue or its context's
// cancellation orders the two).
type quicConn struct {
	sock     *quicSocket
	listener *listenerRuntime // of the generation current at the first Initial
	remote   net.Addr
	start    time.Time
	deadline time.Time // the handshake's: start + timeouts.handshake

	// admission is the connection's place in the limiter, freed when it
	// ends; counted against remote's client once the address is proven.
	admission *connlimit.Admission

	mu sync.Mutex // guards ticket, slot and over
	// ticket is the handshake place taken at the first Initial, until
	// the ClientHello waits on it (takeSlot) or the connection ends;
	// counted against remote's client (limits.handshakes_per_client)
	// only if that Initial proved the address (a Retry or NEW_TOKEN
	// token, RFC 9000 section 8.1).
	ticket *connlimit.HandshakeTicket
	slot   func() // the handshake slot while held
	over   bool   // the handshake ended: a slot handed over now is freed at once

	hello   *pqtls.ClientHello
	site    *siteRuntime
	cert    *tls.Certificate
	sig     tls.SignatureScheme
	certErr error // why no certificate fitted the client (Selector.Pick's error)
	nameErr error // the server name a strict_sni listener refused (unrecognizedName)
	noSlot  bool  // no handshake slot in time: the limiter counted it

	ended atomic.Bool // the handshake's outcome is recorded
	info  *connInfo   // set before the hand-off
	idle  *quicIdle   // set before the hand-off: timeouts.idle between requests
	// budget is set before the hand-off: cancelled and refused requests
	// (nil: limits.h2_resets = 0).
	budget *h3Budget
}

type quicConnKey struct{}

func quicConnFrom(ctx context.Context) *quicConn {
	qc, _ := ctx.Value(quicConnKey{}).(*quicConn)
	return qc
}

var errNoQUICListener = errors.New("no listener serves HTTP/3 on this address now")

// quicConnContext is a QUIC transport's ConnContext: called on its
// packet-handling goroutine when an Initial opens a new connection, before
// quic-go has decrypted anything. What it refuses costs quic-go one
// CONNECTION_REFUSED packet.
func (s *Server) quicConnContext(sk *socket) func(context.Context, *quic.ClientInfo) (context.Context, error) {
	q := sk.quic
	return func(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
		var l *listenerRuntime
		if g := s.current.Load(); g != nil {
			l = g.bySocket[sk]
		}
		if l == nil || l.quic == nil {
			s.metrics.quic.refused.WithLabelValues(quicRefusedNoListener).Inc()
			return nil, errNoQUICListener
		}
		if q.tracker.Unreadable(ci.RemoteAddr) {
			// The tracker saw this Initial first and could not open it.
			s.metrics.quic.refused.WithLabelValues(quicRefusedUnreadable).Inc()
			return nil, errors.New("the first Initial cannot be opened")
		}
		// An Initial's source address is counted against its client
		// (limits.connections_per_client) only when proven: by a Retry
		// or NEW_TOKEN token now, otherwise by the handshake (handleQUIC).
		// Forged Initials would otherwise use up another address's
		// connections, over TCP too (RFC 9000 section 8).
		var client net.Addr
		if ci.AddrVerified {
			client = ci.RemoteAddr
		}
		if err := q.refusals.refused(q.tracker, ci.RemoteAddr); err != nil {
			return nil, err // a later Initial of an attempt refused below, counted then
		}
		adm, err := s.limiter.Admit(client) // counted in pqedge_connections_refused_total
		if err != nil {
			q.refusals.note(q.tracker, ci.RemoteAddr, err)
			return nil, err
		}
		// The handshake's place (a slot or a place in the queue) is
		// taken here, as a TCP accept loop takes it at accept: refused
		// here (every place taken, or the client's share of them), the
		// client gets CONNECTION_REFUSED (RFC 9000 section 20.1), a
		// stateless packet, where a refusal in the TLS callbacks would
		// cost a connection and read as a TLS internal_error
		// (CRYPTO_ERROR 0x150). quic-go sends no reason phrase with
		// either (docs/OPERATIONS.md, "HTTP/3 (QUIC)"). Counted in
		// pqedge_connections_refused_total.
		ticket, err := s.limiter.ReserveHandshake(client)
		if err != nil {
			adm.Release()
			q.refusals.note(q.tracker, ci.RemoteAddr, err)
			return nil, err
		}
		now := time.Now()
		qc := &quicConn{sock: q, listener: l, remote: ci.RemoteAddr, start: now,
			deadline: now.Add(l.gen.plan.Timeouts.Handshake), admission: adm, ticket: &ticket}
		context.AfterFunc(ctx, func() { s.quicConnEnded(qc, context.Cause(ctx)) })
		return context.WithValue(ctx, quicConnKey{}, qc), nil
	}
}

// quicConfigForClient is the GetConfigForClient of every QUIC connection:
// a handshake slot first (its place was taken at the first Initial; the
// slot is waited for under the handshake deadline, as a TCP handshake
// does), its turn at the crypto gate, then the ClientHello
// as the tracker recorded it,
// then the site by SNI on the connection's listener, whose QUIC config it
// returns.
func (s *Server) quicConfigForClient(info *tls.ClientHelloInfo) (*tls.Config, error) {
	qc := quicConnFrom(info.Context())
	if qc == nil {
		return nil, errors.New("internal error: a QUIC handshake without its connection state")
	}
	if err := qc.takeSlot(info.Context()); err != nil {
		return nil, err
	}
	// The crypto gate as a turnstile: the handshake's key exchange and
	// signature follow on this goroutine, so it starts them in the gate's
	// order and, while the gate paces under a flood, only after the
	// network poller ran (connlimit.CryptoGate). It does not hold the slot
	// to the signature, as a TCP handshake does between two reads: over
	// QUIC nothing marks the end of the flight, and a HelloRetryRequest
	// would keep the slot across the client's round trip.
	if err := s.limiter.AcquireCrypto(qc.deadline); err != nil {
		return nil, err
	}
	s.limiter.ReleaseCrypto()
	// quic-go has read every datagram of the ClientHello before crypto/tls
	// asks, and the tracker saw each before quic-go did. Recording never
	// fails a handshake: without it the event has no ClientHello.
	qc.hello, _ = qc.sock.tracker.ClientHello(qc.remote)
	l := qc.listener
	site, _ := l.Resolver.Resolve(info.ServerName)
	if site == nil {
		qc.nameErr = &unknownNameError{name: info.ServerName, listener: l.Name}
		return unrecognizedName, nil
	}
	rt := l.site(site)
	qc.site = rt
	return l.quic.tlsConfigs[rt], nil
}

// takeSlot waits for the handshake slot of the connection's place until
// the handshake deadline or the connection's end. It blocks only this
// connection's handshake goroutine.
//
// The place counts against the client address only if the address was
// proven at the first Initial (quicConnContext): an Initial's source
// address is not proven and costs nothing to forge (RFC 9000 section 8),
// so counted against it, two datagrams sent in another address's name
// would take a place of that address's handshakes, over TCP too.
// Unproven, it counts only in the totals; once handshakes queue, every
// new client must prove its address first (VerifySourceAddress) and is
// counted against it.
func (qc *quicConn) takeSlot(ctx context.Context) error {
	qc.mu.Lock()
	t := qc.ticket
	qc.ticket = nil
	qc.mu.Unlock()
	if t == nil {
		return errors.New("no handshake place: the connection ended")
	}
	ctx, cancel := context.WithDeadline(ctx, qc.deadline)
	defer cancel()
	slot, err := t.WaitContext(ctx)
	if err != nil {
		qc.noSlot = true
		return fmt.Errorf("no handshake slot: %w", err)
	}
	qc.mu.Lock()
	if qc.over {
		qc.mu.Unlock()
		slot()
		return errors.New("no handshake slot: the connection ended")
	}
	qc.slot = slot
	qc.mu.Unlock()
	return nil
}

// endHandshake frees the handshake slot, or the place not waited on yet;
// nothing is taken after it.
func (qc *quicConn) endHandshake() {
	qc.mu.Lock()
	t, slot := qc.ticket, qc.slot
	qc.ticket, qc.slot, qc.over = nil, nil, true
	qc.mu.Unlock()
	if t != nil {
		t.Cancel()
	}
	if slot != nil {
		slot()
	}
}

// handshakeState is what a site's certificate callback records about the
// handshake it serves: an edgeConn over TCP, a quicConn over QUIC.
type handshakeState interface {
	clientHello() *pqtls.ClientHello
	noteCertFailure(err error)
	// recordingCertificate wraps the chosen chain's signer to record the
	// scheme used, or says why the handshake must end instead.
	recordingCertificate(*tls.Certificate) (*tls.Certificate, error)
}

var (
	_ handshakeState = (*edgeConn)(nil)
	_ handshakeState = (*quicConn)(nil)
)

// handshakeStateOf finds the state of the handshake info belongs to; nil
// for a connection pqedge did not accept itself.
func handshakeStateOf(info *tls.ClientHelloInfo) handshakeState {
	if ec, ok := info.Conn.(*edgeConn); ok && ec != nil {
		return ec
	}
	if qc := quicConnFrom(info.Context()); qc != nil {
		return qc
	}
	return nil
}

func (qc *quicConn) clientHello() *pqtls.ClientHello { return qc.hello }
func (qc *quicConn) noteCertFailure(err error)       { qc.certErr = err }

func (qc *quicConn) recordingCertificate(cert *tls.Certificate) (*tls.Certificate, error) {
	qc.cert = cert
	return recording(cert, &qc.sig), nil
}

// handleQUIC is one connection whose handshake completed: its event, then
// the hand-off to the current generation's HTTP/3 server.
func (s *Server) handleQUIC(sk *socket, conn *quic.Conn) {
	q := sk.quic
	qc := quicConnFrom(conn.Context())
	if qc == nil || !qc.ended.CompareAndSwap(false, true) {
		// Not ours, or it ended (and was recorded) while queued.
		conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
		return
	}
	qc.endHandshake()
	// The handshake proved the client's address (RFC 9000 section 8.1):
	// from now on the connection counts against its client's cap, which
	// refuses it when the client has its share over TCP and QUIC already.
	if err := qc.admission.SetClient(qc.remote); err != nil {
		q.tracker.Forget(qc.remote)
		conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad), err.Error())
		return
	}
	cs := conn.ConnectionState().TLS
	ev := s.quicHandshakeEvent(qc, &cs, nil)
	s.observe(ev)
	q.tracker.Forget(qc.remote) // its slot in the tracker is free at once
	if qc.hello != nil {
		// The message bytes (the tracker's copy of the Initials' CRYPTO
		// data, ~1.5 KB for a hybrid key share) go; the connection keeps
		// the parsed fields.
		qc.hello = qc.hello.Detached()
	}
	qc.info = newConnInfo(ev, qc.hello, qc.cert, qc.remote)
	if s.opts.onQUICHandOff != nil {
		s.opts.onQUICHandOff(conn)
	}
	for range 3 {
		g := s.current.Load()
		l := g.bySocket[sk]
		if l == nil || l.quic == nil {
			break // a reload removed the listener, or its HTTP/3, meanwhile
		}
		if qc.idle == nil {
			// Written before take starts the goroutine that reads it.
			qc.idle = watchQUICIdle(conn, g.plan.Timeouts.Idle)
			name := l.Name
			qc.budget = newH3Budget(conn, g.plan.Limits.H2Resets, g.plan.Limits.H2ResetWindow, func(reason string) {
				s.metrics.h3Abuse.WithLabelValues(name, reason).Inc()
			})
		}
		if l.quic.take(conn) {
			return
		}
	}
	conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
}

// quicConnEnded runs when a connection's context ends: its slot in the
// limiter is freed and, if its handshake never completed, the failure is
// the handshake's event (unless it got no handshake slot: the limiter
// counted that, as for TCP).
func (s *Server) quicConnEnded(qc *quicConn, cause error) {
	defer qc.admission.Release()
	if !qc.ended.CompareAndSwap(false, true) {
		return
	}
	qc.endHandshake()
	if !qc.noSlot {
		s.observe(s.quicHandshakeEvent(qc, nil, cause))
	}
	qc.sock.tracker.Forget(qc.remote)
}

// quicHandshakeEvent builds the event of a QUIC handshake: completed with
// cs, or failed with err.
func (s *Server) quicHandshakeEvent(qc *quicConn, cs *tls.ConnectionState, err error) *HandshakeEvent {
	l := qc.listener
	hello := qc.hello
	if hello == nil && err != nil {
		// It failed before crypto/tls asked for a config: what the
		// tracker has may still be whole.
		hello, _ = qc.sock.tracker.ClientHello(qc.remote)
	}
	ev := &HandshakeEvent{Time: s.now(), Listener: l.Name, Transport: pqtls.TransportQUIC.String(), Hello: hello,
		Family: familyOf(hello), remote: qc.remote}
	if qc.site != nil {
		ev.Site = qc.site.Name
	}
	if err != nil {
		var site *plan.Site
		if qc.site != nil {
			site = qc.site.Site
		}
		ev.Err, ev.Reason = err, classifyQUICFailure(err, hello, site, qc.certErr != nil)
		if qc.certErr != nil {
			ev.Err = qc.certErr
		}
		if qc.nameErr != nil {
			ev.Err, ev.Reason = qc.nameErr, reasonUnknownName
		}
		return ev
	}
	if hello == nil {
		s.metrics.quic.unrecorded.Inc()
	}
	ev.record = pqtls.NewHandshake(*cs, qc.sig, hello, time.Since(qc.start))
	ev.record.Transport = pqtls.TransportQUIC
	if cs.DidResume {
		ev.record.Signature = 0 // nothing was signed
		if hello != nil {
			_, ev.Ticket = s.tickets.Describe(hello.PSKIdentity)
		}
	}
	ev.Handshake = &ev.record
	return ev
}

// classifyQUICFailure puts a failed QUIC handshake in the classes of TCP
// ones. The client's own CONNECTION_CLOSE tells first: a TLS alert about
// our certificate (RFC 9001 Section 4.8 carries alerts as CRYPTO_ERROR
// 0x100+alert), or any other close, which is the client leaving.
func classifyQUICFailure(err error, hello *pqtls.ClientHello, site *plan.Site, certFailed bool) string {
	var te *quic.TransportError
	var ae *quic.ApplicationError
	switch {
	case errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError() && certificateAlert(uint8(te.ErrorCode-0x100)):
		return reasonCertificate
	case errors.As(err, &te) && te.Remote, errors.As(err, &ae) && ae.Remote:
		return reasonClientClosed
	case errors.As(err, &te) && te.ErrorCode.IsCryptoError() && tls.AlertError(te.ErrorCode-0x100) == alertDecodeError && site == nil:
		return reasonMalformed // as over TCP (classifyFailure)
	}
	return classifyFailure(err, hello, nil, site, certFailed)
}

// certificateAlert reports the TLS alerts by which a client rejects the
// server's certificate or its signature (RFC 8446 Section 6.2).
func certificateAlert(a uint8) bool {
	switch a {
	case 42, 43, 44, 45, 46, 48, 51: // bad, unsupported, revoked, expired, unknown certificate; unknown_ca; decrypt_error
		return true
	}
	return false
}

// withConnInfo gives a request's context the handshake record of its
// connection, as connContext does for TCP.
func withConnInfo(ctx context.Context, ci *connInfo) context.Context {
	ctx = context.WithValue(ctx, connInfoKey{}, ci)
	return proxy.WithHandshakeFacts(ctx, ci.facts)
}
