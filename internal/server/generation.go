package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/certs/acme"
	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// Defaults for unset timeouts. Each bounds what a slow or hostile peer can
// hold: a goroutine, a socket, a slot in a pool.
const (
	defaultHandshakeTimeout = 10 * time.Second // clients that stop mid-handshake
	defaultReadHeader       = 10 * time.Second // slow-header (slowloris) clients
	defaultIdle             = 2 * time.Minute  // idle keep-alive connections
	defaultUpstreamDial     = 5 * time.Second  // blackholed upstreams
	defaultUpstreamHeader   = 60 * time.Second // upstreams that accept and never answer
	defaultStreamIdle       = 5 * time.Minute  // TCP streams with no traffic
	defaultShutdown         = 15 * time.Second // draining on SIGTERM or reload
)

// generation is everything built from one config. It is immutable once
// built, except for the certificate selectors, which rotate atomically.
type generation struct {
	cfg       *config.Config
	log       *slog.Logger
	metrics   *metrics
	sites     map[string]*siteRuntime
	listeners map[string]*listenerRuntime // by name
	bySocket  map[string]*listenerRuntime // by socketKey, for the accept path
	pools     map[string]*proxy.Pool
	proxies   []*proxy.HTTPProxy // every route's proxy, to close their idle connections
	compat    *compatSet         // the [compat] listeners; nil without one
	acme      *acmeGen           // its ACME sites (acme.go); nil for generations built outside a Server

	handshakeTimeout time.Duration
	shutdownTimeout  time.Duration
}

// siteRuntime is one site: its TLS config, certificates and routes.
type siteRuntime struct {
	name      string
	cfg       config.Site
	policy    pqtls.Policy
	selector  atomic.Pointer[certs.Selector]
	tlsConfig *tls.Config
	routes    []route // longest prefix first
	headers   proxy.HeaderNames

	// acme serves the classical chain of a certs = "acme" site; set before
	// the generation is current, then read-only.
	acme *acme.Manager

	// inputs fingerprints the certificate files the selector was built
	// from; failedInputs the last fingerprint that failed to load. Both are
	// only touched under Server.mu (build and refreshCerts).
	inputs, failedInputs string
}

type route struct {
	prefix  string
	handler http.Handler
	pool    string // "" for built-in handlers
}

// listenerRuntime is one listener of a generation.
type listenerRuntime struct {
	cfg    config.Listener
	sites  []*siteRuntime // https: the sites it serves, default first
	byName map[string]*siteRuntime
	suffix map[string]*siteRuntime // "*.example.com" sites, by "example.com"
	queue  *connQueue              // https: handshaken conns for the http.Server
	http   *http.Server
	stream *proxy.StreamProxy
	compat *compatListener // set on [compat] combination listeners only
}

// buildGeneration turns a validated config into a generation. certificates
// gives each site's selector. Nothing is started and no socket is opened.
func buildGeneration(cfg *config.Config, log *slog.Logger, m *metrics, sel func(config.Site) (*certs.Selector, error)) (_ *generation, err error) {
	g := &generation{
		cfg: cfg, log: log, metrics: m,
		sites:            map[string]*siteRuntime{},
		listeners:        map[string]*listenerRuntime{},
		bySocket:         map[string]*listenerRuntime{},
		pools:            map[string]*proxy.Pool{},
		handshakeTimeout: cfg.Timeouts.Handshake.Value(),
		shutdownTimeout:  cfg.Timeouts.Shutdown.Value(),
	}
	defer func() {
		if err != nil {
			g.closePools()
		}
	}()
	for _, pc := range cfg.Pool {
		p, err := g.newPool(pc)
		if err != nil {
			return nil, err
		}
		g.pools[pc.Name] = p
		// Every upstream starts usable; OnHealthChange reports changes only.
		for _, u := range p.Upstreams() {
			m.upstreamHealth(pc.Name, u.Addr, u.Healthy)
		}
	}
	for _, sc := range cfg.Site {
		s, err := g.newSite(sc, sel)
		if err != nil {
			return nil, err
		}
		g.sites[sc.Name] = s
	}
	for _, lc := range cfg.Listener {
		l, err := g.newListener(lc)
		if err != nil {
			return nil, err
		}
		g.listeners[lc.Name] = l
		g.bySocket[socketKey(lc)] = l
	}
	return g, nil
}

func (g *generation) newPool(pc config.Pool) (*proxy.Pool, error) {
	h := pc.Health
	interval := h.Interval.Value()
	if interval == 0 {
		interval = -1 // no active checks unless configured
	}
	return proxy.NewPool(pc.Name, proxy.PoolOptions{
		Addresses:   pc.Upstreams,
		DialTimeout: g.cfg.Timeouts.UpstreamDial.Value(),
		MaxFails:    h.EjectAfter,
		EjectFor:    h.EjectFor.Value(),
		Health: proxy.HealthOptions{
			Interval:           interval,
			Path:               h.Path,
			Timeout:            h.Timeout.Value(),
			HealthyThreshold:   h.Healthy,
			UnhealthyThreshold: h.Unhealth,
		},
		OnHealthChange: g.metrics.upstreamHealth,
		Logger:         g.log,
	})
}

func (g *generation) newSite(sc config.Site, sel func(config.Site) (*certs.Selector, error)) (*siteRuntime, error) {
	policy, err := pqtls.NewPolicy(sc.TLS.Policy, sc.TLS.Groups, sc.TLS.AllowClassicalOnly, sc.TLS.MinVersion)
	if err != nil {
		return nil, fmt.Errorf("site %q: %w", sc.Name, err)
	}
	selector, err := sel(sc)
	if err != nil {
		return nil, fmt.Errorf("site %q: %w", sc.Name, err)
	}
	s := &siteRuntime{
		name: sc.Name, cfg: sc, policy: policy,
		headers: proxy.HeaderNames{Group: sc.Headers.Group, PQ: sc.Headers.PQ, Signature: sc.Headers.Signature, Version: sc.Headers.Version, Cipher: sc.Headers.Cipher},
	}
	s.selector.Store(selector)
	s.inputs = certInputs(g.cfg, sc)
	s.tlsConfig = &tls.Config{
		GetCertificate: s.getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	policy.Apply(s.tlsConfig)
	proxies := map[string]*proxy.HTTPProxy{}
	for _, rc := range sc.Route {
		r := route{prefix: rc.Path, pool: rc.Pool}
		switch {
		case rc.Handler == "inspect":
			r.handler = &inspectHandler{}
		case rc.Handler == "compat":
			r.handler = &compatHandler{} // completed by Server.addCompat
		case rc.Pool != "":
			// Routes of a site to one pool share one proxy, so they share
			// its keep-alive connections to the upstreams.
			hp, ok := proxies[rc.Pool]
			if !ok {
				hp = proxy.NewHTTPProxy(g.pools[rc.Pool], proxy.HTTPOptions{
					ResponseHeaderTimeout: g.cfg.Timeouts.UpstreamHeader.Value(),
					Headers:               s.headers,
					Logger:                g.log,
				})
				proxies[rc.Pool] = hp
				g.proxies = append(g.proxies, hp)
			}
			r.handler = hp
		default:
			return nil, fmt.Errorf("site %q: route %q has no handler", sc.Name, rc.Path)
		}
		s.routes = append(s.routes, r)
	}
	slices.SortStableFunc(s.routes, func(a, b route) int { return len(b.prefix) - len(a.prefix) })
	return s, nil
}

// getCertificate picks the chain for a handshake from the site's selector,
// with the captured ClientHello (for certificate_authorities).
func (s *siteRuntime) getCertificate(info *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ec, _ := info.Conn.(*edgeConn)
	var hello *pqtls.ClientHello
	if ec != nil {
		hello, _ = ec.ClientHello()
	}
	sel := s.selector.Load()
	cert, err := sel.Pick(info, hello)
	if err != nil {
		return nil, err
	}
	if s.acme != nil && cert == sel.Classical {
		// The selector chose the classical chain; ACME's current one is
		// looked up per handshake so renewals need no rebuild.
		if cert, err = s.acmeCertificate(info); err != nil {
			return nil, err
		}
	}
	if ec != nil {
		ec.mu.Lock()
		ec.cert = cert
		ec.mu.Unlock()
	}
	return cert, nil
}

func (g *generation) newListener(lc config.Listener) (*listenerRuntime, error) {
	l := &listenerRuntime{cfg: lc}
	if lc.Kind == config.KindStream {
		// Its one site serves every server name (siteFor's default).
		l.serve([]*siteRuntime{g.sites[lc.Site]})
		version := map[string]int{"": 0, "v1": 1, "v2": 2}[lc.ProxyProtocol]
		sp, err := proxy.NewStreamProxy(g.pools[lc.Pool], proxy.StreamOptions{
			ProxyProtocol: version,
			IdleTimeout:   g.cfg.Timeouts.StreamIdle.Value(),
			Logger:        g.log.With("listener", lc.Name),
		})
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		l.stream = sp
		return l, nil
	}
	var sites []*siteRuntime
	for _, sc := range g.cfg.Site {
		if len(sc.Listeners) == 0 || slices.Contains(sc.Listeners, lc.Name) {
			sites = append(sites, g.sites[sc.Name])
		}
	}
	l.serve(sites)
	l.queue = newConnQueue()
	l.http = &http.Server{
		Handler:           &router{listener: l, gen: g},
		ReadHeaderTimeout: g.cfg.Timeouts.ReadHeader.Value(),
		IdleTimeout:       g.cfg.Timeouts.Idle.Value(),
		// The handshake is done before the conn reaches the http.Server;
		// TLSConfig only tells it to speak HTTP/2 where ALPN chose h2.
		TLSConfig:   &tls.Config{NextProtos: []string{"h2", "http/1.1"}},
		ConnContext: connContext,
		ErrorLog:    slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	return l, nil
}

// serve makes l serve sites, the first being the default, indexed by their
// server names (exact, and "*.example.com" wildcards by "example.com").
func (l *listenerRuntime) serve(sites []*siteRuntime) {
	l.sites = sites
	l.byName, l.suffix = map[string]*siteRuntime{}, map[string]*siteRuntime{}
	for _, s := range sites {
		for _, n := range s.cfg.ServerNames {
			n = strings.ToLower(n)
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				l.suffix[rest] = s
			} else {
				l.byName[n] = s
			}
		}
	}
}

// siteFor returns the site serving a server name on this listener: an exact
// name, then a wildcard one label deep, then the listener's first site (for
// clients without SNI, such as those connecting by IP).
func (l *listenerRuntime) siteFor(serverName string) *siteRuntime {
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	if s, ok := l.byName[name]; ok {
		return s
	}
	if _, rest, ok := strings.Cut(name, "."); ok {
		if s, ok := l.suffix[rest]; ok {
			return s
		}
	}
	if len(l.sites) == 0 {
		return nil
	}
	return l.sites[0]
}

// start serves the generation's listeners from their queues.
func (g *generation) start() {
	for _, l := range g.listeners {
		if l.http != nil {
			go l.http.Serve(l.queue)
		}
	}
}

// shutdown stops the generation: no new connections reach it, in-flight
// requests and streams get until ctx ends, then everything is closed.
func (g *generation) shutdown(ctx context.Context) {
	var wg sync.WaitGroup
	for _, l := range g.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.http != nil {
				if err := l.http.Shutdown(ctx); err != nil {
					l.http.Close()
				}
			}
			if l.stream != nil {
				l.stream.Shutdown(ctx)
			}
		}()
	}
	wg.Wait()
	g.closePools()
}

func (g *generation) closePools() {
	for _, p := range g.pools {
		p.Close()
	}
	// Keep-alive connections to upstreams would otherwise linger until their
	// idle timeout after a reload.
	for _, hp := range g.proxies {
		hp.CloseIdleConnections()
	}
}

// tlsConfigFor is the GetConfigForClient of every listener: it picks the site
// by SNI and remembers it on the connection.
func tlsConfigFor(info *tls.ClientHelloInfo) (*tls.Config, error) {
	ec, ok := info.Conn.(*edgeConn)
	if !ok {
		return nil, fmt.Errorf("internal error: connection is %T, not an edge connection", info.Conn)
	}
	if c := ec.gen.acme.challengeConfig(info); c != nil {
		// A CA validating an ACME name: answered whatever the SNI's site
		// and its policy (acme.go).
		return c, nil
	}
	site := ec.listener.siteFor(info.ServerName)
	if site == nil {
		return nil, fmt.Errorf("no site serves %q on listener %q", info.ServerName, ec.listener.cfg.Name)
	}
	ec.mu.Lock()
	ec.site = site
	ec.mu.Unlock()
	return site.tlsConfig, nil
}

// connQueue is a net.Listener fed by the accept loop with handshaken
// connections; closing it is how a generation stops taking new ones.
type connQueue struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// deliver hands c to the http.Server; false when the queue is closed (the
// generation is shutting down) and the caller must find another home for c.
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
