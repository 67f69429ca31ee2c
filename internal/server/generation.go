package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/certs/acme"
	"github.com/pqedge/pqedge/internal/pages"
	"github.com/pqedge/pqedge/internal/plan"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// generation is what one config runs: its plan plus the runtime objects
// built from it (TLS configs, pools, proxies, HTTP servers). Nothing in it
// changes once the transaction that built it committed; what must change
// while it serves (certificates, upstream health, ticket keys) lives in the
// server's components, which its parts point to.
type generation struct {
	plan *plan.Plan
	srv  *Server // the server that built it, for its components
	log  *slog.Logger

	sites     map[string]*siteRuntime     // by name
	listeners map[string]*listenerRuntime // by socket key
	// bySocket is the listener each socket of the plan (TCP, and UDP for
	// HTTP/3) serves: how an accept loop finds its listener, since a
	// reload may name a socket under another key (socketSet.open).
	bySocket map[*socket]*listenerRuntime

	pools   map[string]*proxy.Pool
	proxies []*proxy.HTTPProxy // one per site and pool, to close idle upstream connections
	acme    *acmeGen           // nil without ACME sites

	// handoff orders hand-offs against retirement: a hand-off holds the
	// read lock while it gives a connection to this generation, retire
	// takes the write lock to set retired. So once retired is set, no
	// connection reaches the generation any more, and every one it got
	// was taken before its servers began to drain.
	handoff sync.RWMutex
	retired bool

	retireOnce  sync.Once
	cancelDrain func() // ends the drain early (Shutdown's deadline); set by retireOnce

	streams  sync.WaitGroup // stream connections being served
	upgraded sync.WaitGroup // hijacked HTTP connections (WebSockets)
}

// siteRuntime is one site of a generation.
type siteRuntime struct {
	*plan.Site
	tls    *tls.Config
	certs  *certEntry    // its chains, kept current by the certificate store
	acme   *acme.Manager // the classical chain of a certs = "acme" site
	routes []http.Handler
	server *Server
	series *requestSeries // its per-request metrics
}

// listenerRuntime is one listener of a generation.
type listenerRuntime struct {
	*plan.Listener
	gen *generation
	// noSite counts the requests no site served (refused before routing,
	// 421).
	noSite *requestSeries
	// combo is the site runtime of a compat matrix listener: one group, one
	// certificate. nil for other listeners.
	combo *siteRuntime
	// tlsConfigs are the TLS configs of its sites, by site: the site's
	// policy, certificates and tickets with the listener's ALPN.
	tlsConfigs map[*siteRuntime]*tls.Config

	// https
	queue *connQueue
	http  *http.Server
	conns *connTracker

	// stream
	stream *proxy.StreamProxy

	// quic is the HTTP/3 side of an https listener with http3 (quic.go);
	// nil without.
	quic *quicListener
}

// site returns the runtime of a plan site on this listener.
func (l *listenerRuntime) site(s *plan.Site) *siteRuntime {
	if s == nil {
		return nil
	}
	if l.combo != nil {
		return l.combo
	}
	return l.gen.sites[s.Name]
}

// start serves the generation's https listeners from their queues.
func (g *generation) start() {
	for _, l := range g.listeners {
		if l.http != nil {
			go l.http.Serve(l.queue)
		}
	}
}

// closePools releases the generation's pools (their upstreams' health stays
// in the registry for other generations) and closes idle keep-alive
// connections to upstreams, which would otherwise linger after a reload.
func (g *generation) closePools() {
	for _, p := range g.pools {
		p.Close()
	}
	for _, hp := range g.proxies {
		hp.CloseIdleConnections()
	}
}

// getCertificate picks the chain for a handshake: the site's selector
// chooses classical or ML-DSA with the captured ClientHello (for
// signature_algorithms and certificate_authorities), an ACME site's
// classical chain comes from its Manager, and the chain handed to crypto/tls
// signs through a recorder, so the handshake record reports the scheme
// really used.
func (s *siteRuntime) getCertificate(info *tls.ClientHelloInfo) (*tls.Certificate, error) {
	hs := handshakeStateOf(info) // over TCP or QUIC
	var hello *pqtls.ClientHello
	if hs != nil {
		hello = hs.clientHello()
	}
	sel := s.certs.selector()
	if s.acme != nil {
		// An ACME site's classical chain is its Manager's current one,
		// looked up per handshake so renewals need no rebuild; the
		// selector judges that chain like any other.
		view := *sel
		view.Classical, view.ClassicalFor = nil, s.acme.GetCertificate
		sel = &view
	}
	cert, err := sel.Pick(info, hello)
	if err != nil {
		err = fmt.Errorf("site %q: %w", s.Name, err)
		if hs != nil {
			hs.noteCertFailure(err)
		}
		if errors.Is(err, certs.ErrNoVerifiableChain) {
			// The client's choice, not a fault: handshake_failure, not
			// the internal_error crypto/tls sends for an error here.
			return certs.RefusalCertificate(), nil
		}
		return nil, err
	}
	if hs == nil {
		return cert, nil
	}
	return hs.recordingCertificate(cert)
}

// pageConn is what the built-in pages show of a request's connection.
func (s *siteRuntime) pageConn(ci *connInfo) *pages.Conn {
	c := &pages.Conn{Handshake: ci.handshake, Policy: s.Policy}
	if s.Policy.WarnClassical && !ci.handshake.PostQuantum() {
		c.Warning = pqWarning(ci.handshake)
	}
	return c
}

// pqWarning is the PQEdge-PQ-Warning text for a classical connection.
func pqWarning(h interface{ GroupName() string }) string {
	return "this connection uses classical key exchange (" + h.GroupName() + "); it is not protected against harvest-now-decrypt-later. Update your browser or client."
}

// selectorFor is the selector of a compat combination: its one certificate,
// served to every client (a client that cannot use it fails the handshake,
// which is what the probe is for).
func selectorFor(leaf *tls.Certificate, pq bool) *certs.Selector {
	if pq {
		return &certs.Selector{PQ: leaf, Mode: certs.PQAlways}
	}
	return &certs.Selector{Classical: leaf, Mode: certs.PQOff}
}
