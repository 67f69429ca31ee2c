package server

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/pages"
	"github.com/pqedge/pqedge/internal/plan"
	"github.com/pqedge/pqedge/internal/tickets"
	"github.com/pqedge/pqedge/pqtls"
)

// HandshakeEvent is one TLS handshake, completed or failed. It is built
// once per handshake, on the connection's goroutine, and handed to every
// sink (metrics, adoption counters, the compat log, Options.OnHandshake);
// the requests and streams of the connection get their facts from the same
// record. Sinks must not keep it past their call, nor modify it.
type HandshakeEvent struct {
	Time      time.Time
	Listener  string
	Transport string // "tcp" or "quic" (HTTP/3 listeners)
	Site      string // "" when the handshake failed before a site was chosen
	// Compat is true on the [compat] combination listeners.
	Compat bool
	// Handshake is the record of a completed handshake; nil when it failed.
	Handshake *pqtls.Handshake
	// Hello is the client's ClientHello, nil when it was not captured.
	Hello *pqtls.ClientHello
	// Family is the client family of the ClientHello ("unknown" without
	// one).
	Family string
	// Err is why the handshake failed, and Reason its class, the metrics
	// label (see the reason* constants).
	Err    error
	Reason string
	// Ticket says whose session ticket a resumed handshake used.
	Ticket tickets.Origin
	remote net.Addr
	combo  *siteRuntime // the compat combination's site, on a compat listener
	// record is what Handshake points to: held in the event so that the
	// two are one allocation per handshake.
	record pqtls.Handshake
}

// Remote is the client's address, "ip:port".
func (ev *HandshakeEvent) Remote() string {
	if ev.remote == nil {
		return ""
	}
	return ev.remote.String()
}

// Failure classes of handshakes, the reason label of
// pqedge_handshake_failures_total.
const (
	reasonNotTLS        = "not_tls"         // the first bytes were not a TLS record, or the first record was no ClientHello, or a handshake record beginning with another message (plain HTTP gets a 400)
	reasonTimeout       = "timeout"         // the client stalled past timeouts.handshake
	reasonClientClosed  = "client_closed"   // the client closed or reset mid-handshake
	reasonClientLeft    = "client_left"     // the client reset or closed while its handshake waited (in the queue, or after its ClientHello), before any cryptography (errClientLeft)
	reasonNoCommonGroup = "no_common_group" // no group of the client's is in the site's policy (pq-only refusing a classical client)
	reasonVersion       = "version"         // no TLS version in common (min_version)
	reasonCertificate   = "certificate"     // no chain fits the client's signature algorithms, or the client rejected ours
	reasonUnknownName   = "unknown_name"    // a strict_sni listener does not serve the name
	reasonProxyProtocol = "proxy_protocol"  // a PROXY header missing from a trusted load balancer, malformed, or sent by anyone else (also to a listener without proxy_protocol_in)
	reasonMalformed     = "malformed_hello" // crypto/tls refused to decode the ClientHello (decode_error): a server name with a trailing dot, a repeated extension
	reasonOther         = "other"
)

// handshakeEvent builds the event of a handshake that ended with err.
func (s *Server) handshakeEvent(ec *edgeConn, tc *tls.Conn, err error, took time.Duration) *HandshakeEvent {
	l := ec.listener
	hello := ec.hello()
	ev := &HandshakeEvent{Time: s.now(), Listener: l.Name, Transport: "tcp", Compat: l.Compat != nil, Hello: hello,
		Family: familyOf(hello), remote: ec.RemoteAddr(), combo: l.combo}
	if ec.site != nil {
		ev.Site = ec.site.Name
	}
	if err != nil {
		ev.Err = err
		var site *plan.Site
		if ec.site != nil {
			site = ec.site.Site
		}
		ev.Reason = classifyFailure(err, hello, ec.knownStart(err), site, ec.certErr != nil)
		if ev.Reason == reasonProxyProtocol && ec.proxyIn == nil {
			ev.Err = errUnexpectedProxyHeader
		}
		if ec.certErr != nil {
			ev.Err = ec.certErr // crypto/tls's own error names only the refusal's key type
		}
		if ec.nameErr != nil {
			ev.Reason, ev.Err = reasonUnknownName, ec.nameErr
		}
		if ec.proxyIn != nil && ec.proxyIn.headerErr != nil {
			ev.Reason, ev.Err = reasonProxyProtocol, ec.proxyIn.headerErr
		}
		return ev
	}
	cs := tc.ConnectionState()
	ev.record = pqtls.NewHandshake(cs, ec.sig, hello, took)
	if cs.DidResume {
		ev.record.Signature = 0 // nothing was signed; a stale value must not leak in
		if hello != nil {
			_, ev.Ticket = s.tickets.Describe(hello.PSKIdentity)
		}
	}
	ev.Handshake = &ev.record
	return ev
}

// observe hands an event to every sink.
func (s *Server) observe(ev *HandshakeEvent) {
	for _, sink := range s.sinks {
		sink.handshake(ev)
	}
}

// handshakeSink receives every handshake event, on the connection's
// goroutine, before the connection serves anything. It must not block.
type handshakeSink interface {
	handshake(*HandshakeEvent)
}

// sinkFunc adapts a function to a handshakeSink.
type sinkFunc func(*HandshakeEvent)

func (f sinkFunc) handshake(ev *HandshakeEvent) { f(ev) }

// handshakeSinks is the server's list of sinks, in order.
func (s *Server) handshakeSinks() []handshakeSink {
	sinks := []handshakeSink{
		s.metrics,
		sinkFunc(s.countAdoption),
		sinkFunc(s.rememberCompat),
		sinkFunc(s.logFailure),
	}
	if s.opts.OnHandshake != nil {
		hook := s.opts.OnHandshake
		sinks = append(sinks, sinkFunc(func(ev *HandshakeEvent) { hook(*ev) }))
	}
	return sinks
}

// countAdoption feeds the /adoption counters. Compat probes force one group
// each and pqedge's own probe and bench traffic is not a visitor: counting
// them would make the share describe the tools, not the visitors.
func (s *Server) countAdoption(ev *HandshakeEvent) {
	if ev.Handshake == nil || ev.Compat || ev.Family == pqtls.FamilyPQEdge {
		return
	}
	s.adoption.Record(ev.Time, ev.Family, ev.Handshake.PostQuantum())
}

// rememberCompat keeps the handshakes of the compat listeners for the
// compat page, which tells a visitor why a probe failed.
func (s *Server) rememberCompat(ev *HandshakeEvent) {
	if !ev.Compat {
		return
	}
	seen := pages.CompatSeen{OK: ev.Handshake != nil, Reason: ev.Reason}
	if ev.Handshake != nil {
		seen.Group, seen.Signature = ev.Handshake.GroupName(), ev.Handshake.SignatureName()
	}
	if h, c := ev.Hello, ev.combo; h != nil && c != nil {
		seen.OfferedGroup = slices.ContainsFunc(h.Groups, func(g tls.CurveID) bool { return slices.Contains(c.Policy.Groups, g) })
		sel := c.certs.selector()
		for _, cert := range []*tls.Certificate{sel.Classical, sel.PQ} {
			if cert == nil || cert.Leaf == nil {
				continue
			}
			if key, err := certs.DescribeKey(cert.Leaf.PublicKey); err == nil && slices.Contains(h.SignatureAlgorithms, key.Scheme) {
				seen.OfferedSignature = true
			}
		}
	}
	s.compatLog.Remember(ev.Listener, ev.Remote(), ev.Time, seen)
}

func (s *Server) logFailure(ev *HandshakeEvent) {
	if ev.Err != nil {
		s.log.Debug("handshake failed", "listener", ev.Listener, "remote", ev.Remote(), "reason", ev.Reason, "err", ev.Err)
	}
}

func familyOf(hello *pqtls.ClientHello) string {
	if hello == nil {
		return "unknown"
	}
	return hello.Family()
}

// errUnexpectedProxyHeader is the failure of a connection that began with
// a PROXY protocol header on a listener that reads none.
var errUnexpectedProxyHeader = errors.New("a PROXY protocol header on a listener without proxy_protocol_in: list the load balancer's network there, or stop it sending one")

// classifyFailure puts a failed handshake in one class. What the client
// offered decides where it can (no group or version in common with the
// site's policy), so the class does not hang on crypto/tls's error text;
// the text is the fallback for the rest. first is what is known of the
// connection's first bytes (edgeConn.knownStart): those kept when they
// were not a TLS handshake record, or the header of the handshake record
// they began and its first message's type, as far as they came; nil over
// QUIC.
func classifyFailure(err error, hello *pqtls.ClientHello, first []byte, site *plan.Site, certFailed bool) string {
	var rhe tls.RecordHeaderError
	var ne net.Error
	var une *unknownNameError
	switch {
	case errors.As(err, &rhe) && looksLikeProxyHeader(first):
		return reasonProxyProtocol
	case errors.As(err, &rhe):
		return reasonNotTLS
	case errors.Is(err, errClientLeft):
		return reasonClientLeft
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return reasonTimeout
	case hello == nil && len(first) > 0 && first[0] == recordTypeAlert:
		// An alert before any ClientHello, which crypto/tls reads
		// (and ends the handshake on, or skips up to 16 warnings):
		// whatever it says, ours was never sent.
		return reasonNotTLS
	case hello == nil && beginsOtherMessage(first):
		return reasonNotTLS
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return reasonClientClosed
	case errors.As(err, &une):
		return reasonUnknownName
	case site == nil && sentAlert(err, alertDecodeError):
		// No site chosen yet: the message crypto/tls could not decode
		// is the ClientHello, refused before GetConfigForClient, in
		// default and strict_sni mode alike. RFC 6066 section 3 has no
		// trailing dot in a host_name, and crypto/tls refuses one
		// (handshake_messages.go); so does it a repeated extension (RFC
		// 8446 section 4.2) or one whose length is wrong.
		return reasonMalformed
	}
	// Version and group come before the certificate: a TLS 1.2 server
	// picks the certificate before the key exchange, so a client with no
	// group in common also fails the certificate when the leaf's curve
	// is not among its groups (RFC 8422 Section 5.1), but its group is
	// what an operator can change.
	if hello != nil && site != nil {
		if !offersVersion(hello, site.Policy.MinVersion) {
			return reasonVersion
		}
		if !slices.ContainsFunc(hello.Groups, func(g tls.CurveID) bool { return slices.Contains(site.Policy.Groups, g) }) {
			return reasonNoCommonGroup
		}
	}
	if certFailed {
		return reasonCertificate
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no ECDHE curve"), strings.Contains(msg, "no mutually supported group"), strings.Contains(msg, "no key exchange"):
		return reasonNoCommonGroup
	case strings.Contains(msg, "protocol version"), strings.Contains(msg, "unsupported versions"):
		return reasonVersion
	case strings.Contains(msg, "certificate"), strings.Contains(msg, "signature"):
		// Includes the client's own alerts: "remote error: tls: bad
		// certificate", "unknown certificate authority".
		return reasonCertificate
	}
	return reasonOther
}

// alertDecodeError is the decode_error alert (RFC 8446 section 6.2),
// which crypto/tls sends for a message it cannot parse.
const alertDecodeError = tls.AlertError(50)

// sentAlert reports whether err is crypto/tls's for the fatal alert a,
// which it sent: a net.OpError "local error" over crypto/tls's unexported
// alert type, whose text is a's (crypto/tls's sendAlertLocked).
func sentAlert(err error, a tls.AlertError) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "local error" && oe.Err != nil && oe.Err.Error() == a.Error()
}

// offersVersion reports whether a ClientHello offers a version at or above
// min (0: any).
func offersVersion(hello *pqtls.ClientHello, min uint16) bool {
	if min == 0 {
		return true
	}
	if len(hello.SupportedVersions) > 0 {
		return slices.ContainsFunc(hello.SupportedVersions, func(v uint16) bool { return v >= min && !pqtls.IsGREASE(v) })
	}
	// Without supported_versions the legacy field is the client's highest
	// (RFC 8446 section 4.2.1).
	return hello.LegacyVersion >= min
}
