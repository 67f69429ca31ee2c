package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/connlimit"
	"github.com/pqedge/pqedge/internal/fleet"
	"github.com/pqedge/pqedge/internal/heapfloor"
	"github.com/pqedge/pqedge/internal/pages"
	"github.com/pqedge/pqedge/internal/tickets"
	"github.com/pqedge/pqedge/proxy"
)

// Options are the parts of a Server that its caller, or a test, controls.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// Now is the clock for certificate checks, ticket keys and handshake
	// deadlines; default time.Now.
	Now func() time.Time
	// CertCheckInterval is how often certificate files are checked for
	// changes and local certificates for renewal; default
	// defaultCertCheckInterval, negative disables the check.
	CertCheckInterval time.Duration
	// OnHandshake, if set, is called after every TLS handshake, failed or
	// not, from the connection's goroutine before any request on it is
	// served. It must not block. Tests use it to assert what pqedge itself
	// negotiated with a real client.
	OnHandshake func(HandshakeEvent)
	// TicketSource supplies session-ticket keys; nil means keys made in
	// this process (tickets.LocalSource). A fleet passes its shared store.
	TicketSource tickets.Source
	// Node names this server in its session tickets; default the host
	// name. In a fleet the config's node id names it.
	Node string
	// OpenAnycastDevice opens the device an [anycast] block announces on,
	// in the process's network namespace. It is called once, by the first
	// config with an [anycast] block, from that config's transaction; the
	// server closes the device when it stops. Nil means anycast.OpenDevice.
	// Tests pass a fake that needs no CAP_NET_ADMIN.
	OpenAnycastDevice func(name string) (AnycastDevice, error)
	// TicketRefresh is how often the Keeper asks its source for keys;
	// default tickets.DefaultRefresh.
	TicketRefresh time.Duration
	// FleetOptions, if set, adjusts the options of the fleet a [fleet]
	// table makes, after they are read from the table and its files and
	// before the Fleet is made (fleet.go): tests shorten the rotation and
	// the lock lease. It is called again, on a fresh copy, by each reload.
	FleetOptions func(*fleet.Options)
	// ACMERenewCheck is how often ACME certificates are checked for
	// renewal; default certmagic's (10 minutes).
	ACMERenewCheck time.Duration
	// HeapFloor, if set, is given each committed config's
	// limits.heap_floor. The collector's percentage is the process's, so
	// only the process's one server (pqedge run) passes it; tests leave
	// it nil.
	HeapFloor *heapfloor.Keeper

	// onQUICHandOff, if set, is called with each QUIC connection about to
	// be handed to the HTTP/3 server: tests follow its life.
	onQUICHandOff func(*quic.Conn)
}

// Server is a running pqedge.
type Server struct {
	log  *slog.Logger
	now  func() time.Time
	opts Options

	// Components: state that outlives a config generation (see doc.go).
	metrics   *metrics
	sockets   *socketSet
	health    *proxy.Registry
	limiter   *connlimit.Limiter // connection and handshake caps (limits.go)
	inflight  inflight           // requests in flight per client address (limits.requests_per_client)
	tickets   *tickets.Keeper
	fleet     *fleetMember // nil without [fleet]; set by New, never replaced (fleet.go)
	certs     *certStore
	acme      *acmeState
	adoption  *pages.Adoption
	compatLog *pages.CompatLog
	sinks     []handshakeSink

	// tlsBase is the config every connection starts with; the site's own
	// config is chosen from the ClientHello (configForClient).
	tlsBase *tls.Config

	ctx    context.Context // canceled once the server has stopped
	cancel context.CancelFunc

	// txnMu serialises transactions. It is held across prepare, which may
	// do network I/O (ACME), and is never taken by Shutdown: Shutdown
	// cancels the transaction through txnCancel instead.
	txnMu sync.Mutex

	current atomic.Pointer[generation] // the generation new connections go to
	ready   atomic.Bool                // false before the first commit and once draining
	started atomic.Bool                // New succeeded; never reset

	mu        sync.Mutex // guards the fields below; never held across network I/O
	live      []*generation
	txnCancel context.CancelFunc // cancels the transaction in prepare, if any
	stopping  bool
	admin     *adminListener
	retiring  sync.WaitGroup // generations draining in the background

	metricsMu      sync.Mutex // guards upstreamSeries; serialises syncUpstreamMetrics
	upstreamSeries map[seriesKey]bool

	// anycast is the route announcement component (anycast.go); nil until
	// a config with an [anycast] block commits.
	anycast            atomic.Pointer[anycastNode]
	anycastTransitions *prometheus.CounterVec
	// lameDuck is set when Shutdown begins (lameduck.go); endGrace, closed
	// by EndGrace, cuts its withdraw grace short.
	lameDuck  atomic.Pointer[lameDuck]
	endGrace  chan struct{}
	graceOnce sync.Once
}

var errStopping = errors.New("the server is shutting down")

// New starts the components, applies cfg as the first transaction and
// serves it. On error nothing is left open or running.
func New(cfg *config.Config, opts Options) (*Server, error) {
	s := &Server{log: opts.Logger, now: opts.Now, opts: opts, adoption: &pages.Adoption{}, compatLog: &pages.CompatLog{},
		upstreamSeries: map[seriesKey]bool{}, endGrace: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.tlsBase = &tls.Config{GetConfigForClient: s.configForClient}
	s.metrics = newMetrics()
	s.registerReadinessMetrics()
	s.sockets = newSocketSet(s)
	s.health = proxy.NewRegistry(proxy.RegistryOptions{OnChange: s.upstreamChanged, Logger: s.log})
	s.limiter = connlimit.New(connlimit.Options{}) // its caps come with each commit
	s.metrics.reg.MustRegister(newLimiterCollector(s.limiter))
	s.certs = newCertStore(s.log, s.metrics)
	s.acme = newACMEState(s.log, s.metrics.reg)
	s.acme.renewCheck = opts.ACMERenewCheck
	s.sinks = s.handshakeSinks()
	if err := s.startFleet(cfg); err != nil {
		s.stopComponents()
		return nil, err
	}
	if err := s.startTickets(); err != nil {
		s.stopComponents()
		return nil, err
	}
	if err := s.apply(s.ctx, cfg); err != nil {
		s.stopComponents()
		return nil, err
	}
	s.started.Store(true)
	s.ready.Store(true)
	s.reportAnycast() // ready: the prefixes may be announced now
	if every := cmpOr(opts.CertCheckInterval, defaultCertCheckInterval); every > 0 {
		go s.certLoop(every)
	}
	return s, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// startTickets starts the session-ticket Keeper with the configured source.
func (s *Server) startTickets() error {
	src, node := s.opts.TicketSource, s.opts.Node
	if s.fleet != nil {
		src, node = s.fleet.f.Tickets(), s.fleet.f.NodeID()
	}
	if src == nil {
		src = &tickets.LocalSource{}
	}
	if node == "" {
		node, _ = os.Hostname()
	}
	k, err := tickets.NewKeeper(s.ctx, tickets.KeeperOptions{Source: src, Node: node, Now: s.now, Logger: s.log,
		Refresh: s.opts.TicketRefresh, OnRefresh: s.metrics.ticketRefresh})
	if err != nil {
		return err
	}
	s.tickets = k
	go k.Run(s.ctx)
	return nil
}

// Reload applies cfg. If anything fails (a certificate does not load, an
// address cannot be bound, the CA refuses an order, Shutdown cancels it)
// the running config keeps serving and the error says why. Otherwise new
// connections go to the new config at once, sockets it still uses stay
// open, and the previous generation drains in the background. ctx bounds
// the transaction.
func (s *Server) Reload(ctx context.Context, cfg *config.Config) error {
	if err := s.apply(ctx, cfg); err != nil {
		s.metrics.reloads.WithLabelValues("invalid").Inc()
		return err
	}
	s.metrics.reloads.WithLabelValues("ok").Inc()
	s.log.Info("config reloaded", "file", cfg.File)
	return nil
}

// ReloadFile loads the config at path and applies it, and returns it. A
// file that does not load (syntax, unknown key, invalid value) is refused
// and counted like any other failed reload; its error is config.Problems.
func (s *Server) ReloadFile(ctx context.Context, path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		s.metrics.reloads.WithLabelValues("invalid").Inc()
		return nil, err
	}
	return cfg, s.Reload(ctx, cfg)
}

// Shutdown stops the server as a lame duck (lameduck.go): it turns /readyz
// off, cancels a transaction in progress and withdraws every anycast
// prefix; keeps accepting and serving for timeouts.withdraw_grace (cut
// short by ctx or EndGrace); then stops accepting, lets in-flight requests,
// streams and upgraded connections finish until ctx ends, closes what is
// left and stops the components. It returns within moments of ctx ending.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	s.ready.Store(false)
	ld := s.beginLameDuck()
	if s.txnCancel != nil {
		s.txnCancel()
	}
	s.mu.Unlock()

	s.withdrawAndWait(ctx, ld)
	s.sockets.closeAll()
	s.log.Info("stopped accepting; draining")
	// Taken after the grace: no generation is added once stopping is set,
	// and those that finished draining meanwhile are gone.
	live := s.liveGenerations()
	for _, g := range live {
		s.retire(g, ctx)
	}
	s.retiring.Wait()
	// A transaction canceled above may still be aborting: wait for it, so
	// nothing it opened outlives Shutdown.
	s.txnMu.Lock()
	s.txnMu.Unlock()
	s.stopComponents()
	var err error
	if a := s.takeAdmin(); a != nil {
		err = a.shutdown(ctx)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("drain deadline passed; remaining connections were closed: %w", ctx.Err())
	}
	return err
}

// stopComponents stops what New started.
func (s *Server) stopComponents() {
	s.cancel()
	s.acme.closeAll()
	s.health.Close()
	s.closeAnycast()
	s.closeFleet()
}

func (s *Server) takeAdmin() *adminListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.admin
	s.admin = nil
	return a
}

// ShutdownTimeout is how long Shutdown should be given: the current
// config's timeouts.shutdown, which includes timeouts.withdraw_grace.
func (s *Server) ShutdownTimeout() time.Duration {
	return s.current.Load().plan.Timeouts.Shutdown
}

// ListenerAddr returns the bound address of a listener of the current
// config (useful with port 0), or nil.
func (s *Server) ListenerAddr(name string) net.Addr {
	l := s.current.Load().plan.Listener(name)
	if l == nil {
		return nil
	}
	return s.sockets.addr(l.SocketKey)
}

// AdminAddr returns the bound admin address, or nil without one.
func (s *Server) AdminAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		return nil
	}
	return s.admin.ln.Addr()
}

// liveGenerations returns the current generation and those still draining.
func (s *Server) liveGenerations() []*generation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.live)
}
