package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
)

// Options are the parts of a Server that tests control.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// Now is the clock for certificate checks and deadlines; default time.Now.
	Now func() time.Time
	// CertCheckInterval is how often certificate files are checked for
	// changes; default 30s, negative disables the check.
	CertCheckInterval time.Duration
	// OnHandshake, if set, is called after every TLS handshake, failed or
	// not, from the connection's goroutine before any request on it is
	// served. It must not block. Tests use it to assert what pqedge itself
	// negotiated with a real client.
	OnHandshake func(HandshakeEvent)
}

// Server is a running pqedge.
type Server struct {
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	// adoption counts handshakes per minute for the /adoption admin page.
	adoption    *adoption
	onHandshake func(HandshakeEvent)
	acme        *acmeState      // ACME Managers, across generations (acme.go)
	ctx         context.Context // canceled when the server has shut down
	cancel      context.CancelFunc

	current atomic.Pointer[generation] // the generation new connections go to
	ready   atomic.Bool                // false before start and while draining

	mu       sync.Mutex // guards the fields below; serialises Reload and Shutdown
	sockets  map[string]*socket
	admin    *http.Server
	adminLn  net.Listener
	adminAt  string         // configured admin address
	retiring sync.WaitGroup // old generations still draining
	stopped  bool
}

// New builds the config's generation, opens its sockets and starts serving.
// On error nothing is left open.
func New(cfg *config.Config, opts Options) (*Server, error) {
	s := &Server{log: opts.Logger, now: opts.Now, metrics: newMetrics(), sockets: map[string]*socket{},
		adoption: newAdoption(), onHandshake: opts.OnHandshake}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.acme = newACMEState(s.log, s.metrics.reg)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	gen, err := s.build(cfg)
	if err != nil {
		return nil, err
	}
	opened, err := s.openSockets(gen)
	if err != nil {
		gen.closePools()
		return nil, err
	}
	if err := s.startACME(gen, opened); err != nil {
		closeSockets(opened)
		gen.closePools()
		return nil, err
	}
	if err := s.setAdmin(cfg.Admin.Listen); err != nil {
		closeSockets(opened)
		gen.closePools()
		s.acme.abandon(gen)
		return nil, err
	}
	gen.start()
	s.current.Store(gen)
	s.acme.commit(gen)
	for _, sk := range opened {
		sk.start()
	}
	s.ready.Store(true)
	every := opts.CertCheckInterval
	if every == 0 {
		every = defaultCertCheckInterval
	}
	if every > 0 {
		go s.certLoop(every)
	}
	for _, sk := range opened {
		s.log.Info("listening", "address", sk.ln.Addr().String(), "configured", sk.address)
	}
	return s, nil
}

func (s *Server) build(cfg *config.Config) (*generation, error) {
	cs := &certSource{cfg: cfg, now: s.now()}
	gen, err := buildGeneration(cfg, s.log, s.metrics, cs.selector)
	if err != nil {
		return nil, err
	}
	if err := s.addCompat(gen, cs); err != nil {
		gen.closePools()
		return nil, err
	}
	gen.acme = s.acme.plan(gen)
	for name, site := range gen.sites {
		s.setExpiry(name, site.selector.Load())
	}
	if cs.local != nil && len(cs.local.Issued) > 0 {
		s.log.Info("issued local development certificates", "dir", cs.local.Dir, "files", cs.local.Issued,
			"hint", "trust the local CA with `pqedge certs trust "+cs.local.Dir+"`")
	}
	return gen, nil
}

func (s *Server) setExpiry(site string, sel *certs.Selector) {
	if d, ok := expiryDays(sel.Classical, s.now()); ok {
		s.metrics.certExpiryDays.WithLabelValues(site, "classical").Set(d)
	}
	if d, ok := expiryDays(sel.PQ, s.now()); ok {
		s.metrics.certExpiryDays.WithLabelValues(site, "pq").Set(d)
	}
}

// openSockets binds the addresses of gen that are not bound yet and returns
// the new sockets (not yet accepting).
func (s *Server) openSockets(gen *generation) ([]*socket, error) {
	var opened []*socket
	for _, l := range gen.cfg.Listener {
		key := socketKey(l)
		if _, ok := s.sockets[key]; ok {
			continue
		}
		ln, err := net.Listen("tcp", bindAddress(l.Address))
		if err != nil {
			closeSockets(opened)
			return nil, fmt.Errorf("failed to listen on %s for listener %q: %w", l.Address, l.Name, err)
		}
		opened = append(opened, &socket{address: key, ln: ln, srv: s, done: make(chan struct{})})
	}
	plain, err := s.openPlain(gen)
	if err != nil {
		closeSockets(opened)
		return nil, err
	}
	opened = append(opened, plain...)
	for _, sk := range opened {
		s.sockets[sk.address] = sk
	}
	return opened, nil
}

// socketKey identifies a listener's socket across reloads: its configured
// address, so a reload keeps the socket of an unchanged address open. Port 0
// ("any free port") is not one address but one per listener, so there the
// listener's name is part of the key.
func socketKey(l config.Listener) string {
	if _, port, err := net.SplitHostPort(l.Address); err == nil && port == "0" {
		return l.Address + "#" + l.Name
	}
	return l.Address
}

// bindAddress is the address to listen on for a socket key: what precedes
// "#" (see socketKey).
func bindAddress(address string) string {
	a, _, _ := strings.Cut(address, "#")
	return a
}

func closeSockets(socks []*socket) {
	for _, sk := range socks {
		sk.ln.Close()
	}
}

// Reload swaps in a new config. It builds everything first: if the config
// cannot be served (a certificate fails to load, an address cannot be
// bound), the old config keeps serving and the error says why. Otherwise new
// connections go to the new config at once, sockets it still uses stay
// open, and the old generation drains in the background.
func (s *Server) Reload(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("failed to reload: the server is shutting down")
	}
	gen, err := s.build(cfg)
	if err != nil {
		s.metrics.reloads.WithLabelValues("invalid").Inc()
		return err
	}
	opened, err := s.openSockets(gen)
	if err != nil {
		gen.closePools()
		s.metrics.reloads.WithLabelValues("invalid").Inc()
		return err
	}
	if err := s.startACME(gen, opened); err != nil {
		for _, sk := range opened {
			delete(s.sockets, sk.address)
		}
		closeSockets(opened)
		gen.closePools()
		s.metrics.reloads.WithLabelValues("invalid").Inc()
		return err
	}
	if err := s.setAdmin(cfg.Admin.Listen); err != nil {
		for _, sk := range opened {
			delete(s.sockets, sk.address)
		}
		closeSockets(opened)
		gen.closePools()
		s.acme.abandon(gen)
		s.metrics.reloads.WithLabelValues("invalid").Inc()
		return err
	}
	gen.start()
	old := s.current.Swap(gen)
	s.acme.commit(gen)
	s.metrics.forgetUpstreams(old, gen)
	for _, sk := range opened {
		sk.start()
	}
	// Sockets the new config no longer names stop accepting; connections
	// they already accepted finish in the old generation.
	for addr, sk := range s.sockets {
		if gen.listenerAt(addr) == nil && !gen.acme.servesPlain(addr) {
			sk.ln.Close()
			delete(s.sockets, addr)
		}
	}
	s.retiring.Add(1)
	go func() {
		defer s.retiring.Done()
		ctx, cancel := context.WithTimeout(context.Background(), old.shutdownTimeout)
		defer cancel()
		old.shutdown(ctx)
	}()
	s.metrics.reloads.WithLabelValues("ok").Inc()
	s.log.Info("config reloaded", "file", cfg.File)
	return nil
}

// Shutdown stops accepting, lets in-flight requests and streams finish until
// ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.ready.Store(false)
	for _, sk := range s.sockets {
		sk.ln.Close()
	}
	for _, sk := range s.sockets {
		<-sk.done
	}
	s.mu.Unlock()

	s.current.Load().shutdown(ctx)
	s.retiring.Wait()
	s.cancel()
	s.acme.closeAll()
	var err error
	if s.admin != nil {
		err = s.admin.Shutdown(ctx)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("drain deadline passed; remaining connections were closed: %w", ctx.Err())
	}
	return err
}

// ShutdownTimeout is how long Shutdown should be given: the current
// config's timeouts.shutdown, or its default.
func (s *Server) ShutdownTimeout() time.Duration {
	return s.current.Load().shutdownTimeout
}

// ListenerAddr returns the bound address of a listener of the current config
// (useful with port 0), or nil.
func (s *Server) ListenerAddr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.current.Load().listeners[name]
	if !ok {
		return nil
	}
	if sk, ok := s.sockets[socketKey(l.cfg)]; ok {
		return sk.ln.Addr()
	}
	return nil
}

// AdminAddr returns the bound admin address, or nil without one.
func (s *Server) AdminAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}
