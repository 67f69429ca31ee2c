package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// socket is one listening socket. It lives across reloads as long as a
// listener of the current config has its address.
type socket struct {
	address string // as configured; the key across generations
	ln      net.Listener
	srv     *Server
	done    chan struct{} // closed when the accept loop has returned
	// plain serves an ACME HTTP-01 listener (acme.go) instead of TLS.
	plain *http.Server
	once  sync.Once // start runs the accept loop once
}

// start runs the accept loop in its own goroutine, once: sockets of a config
// with ACME sites start before the config is current (see startACME).
func (s *socket) start() {
	s.once.Do(func() { go s.acceptLoop() })
}

// acceptLoop accepts until the socket is closed. Each connection's handshake
// runs in its own goroutine, so a client that stalls mid-handshake holds
// only its own goroutine, until the handshake timeout.
func (s *socket) acceptLoop() {
	defer close(s.done)
	if s.plain != nil {
		s.servePlain()
		return
	}
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait instead of
			// spinning, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.srv.log.Warn("accept failed", "address", s.address, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go s.srv.handleConn(s.address, c)
	}
}

// baseTLS is the config every connection starts with: the site's own config
// is chosen from the ClientHello.
var baseTLS = &tls.Config{GetConfigForClient: tlsConfigFor}

// handleConn runs the TLS handshake of one accepted connection, records it,
// and hands the connection to its listener's HTTP server or stream proxy.
func (srv *Server) handleConn(address string, raw net.Conn) {
	gen := srv.current.Load()
	var l *listenerRuntime
	if gen != nil {
		l = gen.listenerAt(address)
	}
	if l == nil {
		// The listener was removed by a reload in between, or belongs to
		// a config still obtaining its ACME certificates, which needs the
		// CA's TLS-ALPN-01 validation answered here.
		srv.acme.answerChallenge(raw)
		return
	}
	ec := &edgeConn{CaptureConn: pqtls.NewCaptureConn(raw, 0), gen: gen, listener: l}
	tc := tls.Server(ec, baseTLS)

	// The deadline bounds clients that stop mid-handshake or send nothing.
	raw.SetDeadline(srv.now().Add(gen.handshakeTimeout))
	start := time.Now()
	err := tc.Handshake()
	took := time.Since(start)
	raw.SetDeadline(time.Time{})

	hello, _ := ec.ClientHello()
	family := familyOf(hello)
	if err != nil {
		reason := failureKind(err)
		srv.metrics.handshakeFailed(l.cfg.Name, reason, family)
		srv.observeHandshake(l, ec, nil, hello, family, reason, err)
		srv.log.Debug("handshake failed", "listener", l.cfg.Name, "remote", raw.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	cs := tc.ConnectionState()
	if isChallenge(&cs) {
		// A CA's TLS-ALPN-01 validation: the handshake was all of it
		// (RFC 8737 section 3), and it is not a client's connection.
		tc.Close()
		return
	}
	site, cert := ec.chosen()
	rec := pqtls.NewHandshake(cs, leafKey(cert), hello, took)
	ec.mu.Lock()
	ec.record = &rec
	ec.mu.Unlock()
	srv.metrics.handshakeDone(l.cfg.Name, site, &rec, family)
	srv.observeHandshake(l, ec, &rec, hello, family, "", nil)

	if l.stream != nil {
		// A reload during the handshake retired l's stream proxy; the
		// generation now current takes the stream instead.
		if cur := srv.current.Load().listenerAt(address); cur != nil && cur.stream != nil {
			l = cur
		}
		srv.serveStream(l, tc, &rec)
		return
	}
	// A reload may have closed this generation's queue since the handshake
	// began: the connection then goes to the generation now current.
	for range 3 {
		if l.queue.deliver(tc) {
			return
		}
		if l = srv.current.Load().listenerAt(address); l == nil || l.queue == nil {
			break
		}
	}
	tc.Close()
}

func (srv *Server) serveStream(l *listenerRuntime, tc *tls.Conn, rec *pqtls.Handshake) {
	srv.metrics.streamsActive.Inc()
	defer srv.metrics.streamsActive.Dec()
	ctx := proxy.WithHandshakeFacts(srv.ctx, factsOf(rec))
	l.stream.ServeConn(ctx, tc)
}

// failureKind classifies a failed handshake for metrics.
func failureKind(err error) string {
	var rhe tls.RecordHeaderError
	var ne net.Error
	msg := err.Error()
	switch {
	case errors.As(err, &rhe):
		return "not_tls"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "client_closed"
	case strings.Contains(msg, "no ECDHE curve"), strings.Contains(msg, "no mutually supported group"), strings.Contains(msg, "no key exchange"):
		return "no_common_group"
	case strings.Contains(msg, "protocol version"), strings.Contains(msg, "unsupported versions"):
		return "version"
	case strings.Contains(msg, "certificate"), strings.Contains(msg, "signature"):
		return "certificate"
	}
	return "other"
}

// connContext gives each HTTP request on a connection the connection's
// handshake record and facts.
func connContext(ctx context.Context, c net.Conn) context.Context {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ctx
	}
	ec, ok := tc.NetConn().(*edgeConn)
	if !ok {
		return ctx
	}
	ec.mu.Lock()
	rec, site := ec.record, ec.site
	ec.mu.Unlock()
	if rec == nil {
		return ctx
	}
	ctx = context.WithValue(ctx, connInfoKey{}, &connInfo{handshake: rec, site: site, remote: c.RemoteAddr()})
	return proxy.WithHandshakeFacts(ctx, factsOf(rec))
}

type connInfoKey struct{}

// connInfo is what a request knows of its connection.
type connInfo struct {
	handshake *pqtls.Handshake
	site      *siteRuntime // the site SNI chose at handshake time
	remote    net.Addr
}

func connInfoFrom(ctx context.Context) *connInfo {
	ci, _ := ctx.Value(connInfoKey{}).(*connInfo)
	return ci
}

func factsOf(h *pqtls.Handshake) proxy.HandshakeFacts {
	return proxy.HandshakeFacts{
		Group:     h.GroupName(),
		Signature: h.SignatureName(),
		Version:   pqtls.VersionName(h.Version),
		Cipher:    tls.CipherSuiteName(h.CipherSuite),
		PQ:        h.PostQuantum(),
	}
}

// listenerAt returns the generation's listener whose socket key (see
// socketKey) is address.
func (g *generation) listenerAt(address string) *listenerRuntime {
	return g.bySocket[address]
}
