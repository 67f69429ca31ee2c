// Package plan turns a validated, effective config into an immutable plan
// of what the server runs: its sites with their TLS policies and routes,
// its listeners with the sites each serves and how server names resolve on
// them, its pools, the compat matrix and the ACME sites. Building a plan
// does no I/O: no socket, no file, no certificate. The server's reload
// transaction builds a generation from a plan, loading certificates and
// opening sockets for it.
//
// Nothing may modify a Plan once Build returned it; every generation that
// was built from it reads it concurrently.
package plan

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// Plan is everything one config runs.
type Plan struct {
	// Config is the effective config the plan was built from.
	Config *config.Config

	Sites     []*Site // config order
	Listeners []*Listener
	Pools     []*Pool
	// Compat is the compatibility matrix; nil without [compat].
	Compat *Compat
	// ACME lists the sites with certs = "acme", config order.
	ACME []*ACMESite

	Timeouts  Timeouts
	Limits    Limits
	AccessLog bool
	Admin     string // admin listener address; "" for none

	sites map[string]*Site
	pools map[string]*Pool
}

// Timeouts are the config's timeouts, as durations.
type Timeouts struct {
	Handshake, ReadHeader, Idle, UpstreamDial, UpstreamHeader, StreamIdle, Shutdown time.Duration
	// WithdrawGrace is the first part of Shutdown on SIGTERM: not ready,
	// still accepting.
	WithdrawGrace time.Duration
	// RequestBody, ResponseWrite and UpstreamIdle bound a request's body
	// stall, each write to the client, and a stalled upstream.
	RequestBody, ResponseWrite, UpstreamIdle time.Duration
	// HandshakeIdle is how long a client may keep its handshake waiting
	// (silent, or stalled mid-ClientHello) before it is evicted while
	// other handshakes wait (connlimit.Options.IdleGrace).
	HandshakeIdle time.Duration
}

// Limits are the config's [limits]. A count of 0 means no cap.
type Limits struct {
	RequestHeader        int   // bytes of a request head (HTTP/1.1 and HTTP/2)
	ResponseHeader       int64 // bytes of an upstream response head
	RequestHeaderFields  int   // fields of a request's header (or trailer) section
	ResponseHeaderFields int   // fields of an upstream response's header (or trailer) section
	RequestBodyMinRate   int64 // bytes per second; 0: no floor
	Handshakes           int   // TLS handshakes in progress
	HandshakeQueue       int   // connections waiting for a handshake slot
	// HandshakeCPU: the share of the CPUs a flood's handshakes may take
	// while handshakes queue; 1: no budget.
	HandshakeCPU         float64
	Connections          int // open client connections
	ConnectionsPerClient int // per client address (IPv4, IPv6 /64)
	HandshakesPerClient  int // handshake slots and queue places per client address
	RequestsPerClient    int // requests in flight per client address (IPv4, IPv6 /64)
	H2Resets             int // cheap-to-send frames per H2ResetWindow; 0: no check
	H2ResetWindow        time.Duration
	HeapFloor            int64 // bytes; 0: GOGC alone (internal/heapfloor)
}

// Site is one [[site]].
type Site struct {
	Name   string
	Config config.Site
	Policy pqtls.Policy
	// Routes are longest prefix first.
	Routes  []Route
	Headers proxy.HeaderNames
	// Tickets turns session resumption on; TicketScope names the sites
	// whose tickets resume here.
	Tickets     bool
	TicketScope string
	// PQMode is when the ML-DSA chain is served; Signer who signs with it.
	PQMode certs.PQMode
	Signer certs.SignerKind
	ACME   bool // certs = "acme"
	Compat bool // the [compat] site
	// AllowUnderscoreHeaders passes client header names containing "_".
	AllowUnderscoreHeaders bool
}

// Route sends requests under a path prefix to a pool or a built-in page.
type Route struct {
	Prefix  string
	Pool    string // "" for a built-in handler
	Handler string // "inspect" or "compat" when Pool is ""
	// AllowEncodedSlashes lets paths with %2F or %5C through to the pool.
	AllowEncodedSlashes bool
	// KeepEmptySegments forwards "//" in paths to the pool unmerged
	// (merge_slashes = false).
	KeepEmptySegments bool
}

// Match returns the route for a path: the longest prefix; nil for none.
func (s *Site) Match(path string) *Route {
	for i := range s.Routes {
		if strings.HasPrefix(path, s.Routes[i].Prefix) {
			return &s.Routes[i]
		}
	}
	return nil
}

// ServesName reports whether name is one of the site's server names,
// exactly or through a wildcard one label deep.
func (s *Site) ServesName(name string) bool {
	name = normalName(name)
	for _, n := range s.Config.ServerNames {
		n = strings.ToLower(n)
		if n == name {
			return true
		}
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			if _, after, ok := strings.Cut(name, "."); ok && after == rest {
				return true
			}
		}
	}
	return false
}

// Listener kinds a plan has.
const (
	KindHTTPS  = config.KindHTTPS
	KindStream = config.KindStream
)

// Listener is one listening address and what it serves.
type Listener struct {
	Name    string
	Address string // as configured, host:port
	// SocketKey identifies the listener's socket across reloads: the
	// address, so a reload keeps an unchanged address's socket open; for
	// port 0 ("any free port", one socket per listener) the name too.
	SocketKey string
	Kind      string
	// Resolver picks the site of a server name; for a stream listener it
	// resolves every name to its one site.
	Resolver *Resolver
	// ALPN is what the listener negotiates: h2 and http/1.1 for https,
	// the configured list for streams.
	ALPN []string

	// Stream listeners only.
	Pool          string
	ProxyProtocol int // 0, 1 or 2

	// ProxyIn are the networks whose connections start with a PROXY
	// protocol header (config proxy_protocol_in); empty for none.
	ProxyIn []netip.Prefix

	// ReusePort shares the address with other processes (SO_REUSEPORT,
	// config reuse_port).
	ReusePort bool

	// Compat is set on the compat matrix's listeners.
	Compat *Combination

	// QUICKey is the socket key of the listener's UDP socket (HTTP/3 on
	// the same address, config http3 = true); "" without HTTP/3. It keeps
	// its socket across reloads as SocketKey keeps the TCP one.
	QUICKey string
}

// QUICKeyPrefix starts the socket key of a listener's UDP socket: the TCP
// socket's key after it, so both bind the same address and port.
const QUICKeyPrefix = "udp/"

// Pool is one [[pool]], with its settings as proxy options (without the
// registry and logger, which are the server's, nor the origin TLS settings,
// which come from files: config.PoolTLS reads them from Config when the
// server builds the pool).
type Pool struct {
	Name    string
	Options proxy.PoolOptions
	Balance string
	// IdleConns is the keep-alive connections kept per upstream while
	// idle, for the HTTP proxies of the routes to the pool.
	IdleConns int
	Config    config.Pool
}

// ACMESite is a certs = "acme" site and where its challenges are answered.
type ACMESite struct {
	Site *Site
	// HTTPS is the socket key of the site's first https listener (the
	// TLS-ALPN-01 port); "" when it has none.
	HTTPS string
	// Plain is the address of its HTTP-01 listener; "" without HTTP-01.
	Plain string
}

// Compat is the compatibility matrix: one listener per combination.
type Compat struct {
	Site         *Site
	Combinations []*Combination
}

// Combination is one group and one certificate algorithm of the matrix.
type Combination struct {
	Group     tls.CurveID
	GroupName string
	Cert      certs.Alg
	PQGroup   bool
	PQCert    bool
	Listener  *Listener
}

// httpsALPN is what https listeners negotiate.
var httpsALPN = []string{"h2", "http/1.1"}

// Build makes the plan of a config that config.Parse returned (validated
// and effective). Its errors are internal inconsistencies config should
// have caught, with the key they are about.
func Build(cfg *config.Config) (*Plan, error) {
	p := &Plan{Config: cfg, sites: map[string]*Site{}, pools: map[string]*Pool{}, AccessLog: cfg.Log.AccessLog(), Admin: cfg.Admin.Listen}
	t := cfg.Timeouts
	p.Timeouts = Timeouts{
		Handshake: t.Handshake.Value(), ReadHeader: t.ReadHeader.Value(), Idle: t.Idle.Value(),
		UpstreamDial: t.UpstreamDial.Value(), UpstreamHeader: t.UpstreamHeader.Value(),
		StreamIdle: t.StreamIdle.Value(), Shutdown: t.Shutdown.Value(), WithdrawGrace: t.WithdrawGrace.Value(),
		RequestBody: t.RequestBody.Value(), ResponseWrite: t.ResponseWrite.Value(), UpstreamIdle: t.UpstreamIdle.Value(),
		HandshakeIdle: t.HandshakeIdle.Value(),
	}
	lim := cfg.Limits
	p.Limits = Limits{
		RequestHeader: int(lim.RequestHeader.Value()), ResponseHeader: lim.ResponseHeader.Value(),
		RequestHeaderFields: *lim.RequestHeaderFields, ResponseHeaderFields: *lim.ResponseHeaderFields,
		RequestBodyMinRate: *lim.RequestBodyMinRate, Handshakes: *lim.Handshakes, HandshakeQueue: *lim.HandshakeQueue,
		HandshakeCPU: *lim.HandshakeCPU,
		Connections:  *lim.Connections, ConnectionsPerClient: *lim.ConnectionsPerClient, HandshakesPerClient: *lim.HandshakesPerClient,
		RequestsPerClient: *lim.RequestsPerClient,
		H2Resets:          *lim.H2Resets, H2ResetWindow: lim.H2ResetWindow.Value(), HeapFloor: lim.HeapFloor.Value(),
	}
	for _, pc := range cfg.Pool {
		p.addPool(pc)
	}
	for _, sc := range cfg.Site {
		if err := p.addSite(sc); err != nil {
			return nil, err
		}
	}
	for _, lc := range cfg.Listener {
		if err := p.addListener(lc); err != nil {
			return nil, err
		}
	}
	if err := p.addCompat(cfg.Compat); err != nil {
		return nil, err
	}
	p.addACME()
	return p, nil
}

// Site returns the site named name, or nil.
func (p *Plan) Site(name string) *Site { return p.sites[name] }

// Pool returns the pool named name, or nil.
func (p *Plan) Pool(name string) *Pool { return p.pools[name] }

// Listener returns the listener named name, or nil.
func (p *Plan) Listener(name string) *Listener {
	for _, l := range p.Listeners {
		if l.Name == name {
			return l
		}
	}
	return nil
}

func (p *Plan) addPool(pc config.Pool) {
	h := pc.Health
	pl := &Pool{Name: pc.Name, Balance: pc.Balance, IdleConns: pc.IdleConns, Config: pc, Options: proxy.PoolOptions{
		Addresses:   pc.Upstreams,
		DialTimeout: p.Timeouts.UpstreamDial,
		MaxFails:    h.EjectAfter,
		EjectFor:    h.EjectFor.Value(),
		Health: proxy.HealthOptions{
			Interval:           h.Interval.Value(),
			Path:               h.Path,
			Timeout:            h.Timeout.Value(),
			HealthyThreshold:   h.Healthy,
			UnhealthyThreshold: h.Unhealth,
		},
	}}
	p.Pools = append(p.Pools, pl)
	p.pools[pc.Name] = pl
}

func (p *Plan) addSite(sc config.Site) error {
	policy, err := pqtls.NewPolicy(sc.TLS.Policy, sc.TLS.Groups, sc.TLS.AllowClassicalOnly, sc.TLS.MinVersion)
	if err != nil {
		return fmt.Errorf("site %q: %w", sc.Name, err)
	}
	mode, err := certs.ParsePQMode(sc.PQCerts)
	if err != nil {
		return fmt.Errorf("site %q: %w", sc.Name, err)
	}
	signer, err := certs.ParseSignerKind(sc.TLS.MLDSASigner)
	if err != nil {
		return fmt.Errorf("site %q: %w", sc.Name, err)
	}
	s := &Site{
		Name: sc.Name, Config: sc, Policy: policy, PQMode: mode, Signer: signer,
		Headers:                proxy.HeaderNames{Group: sc.Headers.Group, PQ: sc.Headers.PQ, Signature: sc.Headers.Signature, Version: sc.Headers.Version, Cipher: sc.Headers.Cipher},
		Tickets:                sc.TLS.TicketsOn(),
		TicketScope:            sc.TLS.TicketScope,
		ACME:                   sc.Certs == config.CertsACME,
		AllowUnderscoreHeaders: sc.AllowUnderscoreHeaders,
		Compat:                 p.Config.Compat != nil && p.Config.Compat.Site == sc.Name,
	}
	for _, rc := range sc.Route {
		if rc.Pool == "" && rc.Handler == "" {
			return fmt.Errorf("site %q: route %q has no pool or handler", sc.Name, rc.Path)
		}
		if rc.Pool != "" && p.pools[rc.Pool] == nil {
			return fmt.Errorf("site %q: route %q names unknown pool %q", sc.Name, rc.Path, rc.Pool)
		}
		s.Routes = append(s.Routes, Route{Prefix: rc.Path, Pool: rc.Pool, Handler: rc.Handler, AllowEncodedSlashes: rc.AllowEncodedSlashes,
			KeepEmptySegments: !config.Or(rc.MergeSlashes, true)})
	}
	slices.SortStableFunc(s.Routes, func(a, b Route) int { return len(b.Prefix) - len(a.Prefix) })
	p.Sites = append(p.Sites, s)
	p.sites[sc.Name] = s
	return nil
}

func (p *Plan) addListener(lc config.Listener) error {
	l := &Listener{Name: lc.Name, Address: lc.Address, SocketKey: socketKey(lc.Address, lc.Name), Kind: lc.Kind, ReusePort: lc.ReusePort}
	for _, n := range lc.ProxyProtocolIn {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return fmt.Errorf("listener %q: proxy_protocol_in: %w", lc.Name, err)
		}
		l.ProxyIn = append(l.ProxyIn, p)
	}
	switch lc.Kind {
	case config.KindStream:
		site := p.sites[lc.Site]
		if site == nil || p.pools[lc.Pool] == nil {
			return fmt.Errorf("listener %q: unknown site %q or pool %q", lc.Name, lc.Site, lc.Pool)
		}
		// Its one site serves every server name.
		l.Resolver = NewResolver([]*Site{site}, false)
		l.Pool = lc.Pool
		l.ProxyProtocol = map[string]int{"": 0, "v1": 1, "v2": 2}[lc.ProxyProtocol]
		l.ALPN = slices.Clone(lc.ALPN)
	default:
		var sites []*Site
		for _, s := range p.Sites {
			if len(s.Config.Listeners) == 0 || slices.Contains(s.Config.Listeners, lc.Name) {
				sites = append(sites, s)
			}
		}
		l.Resolver = NewResolver(sites, lc.StrictSNI)
		l.ALPN = httpsALPN
		if lc.HTTP3 {
			l.QUICKey = QUICKeyPrefix + l.SocketKey
		}
	}
	p.Listeners = append(p.Listeners, l)
	return nil
}

// socketKey is a listener's socket identity across reloads (see
// Listener.SocketKey).
func socketKey(address, name string) string {
	if _, port, err := net.SplitHostPort(address); err == nil && port == "0" {
		return address + "#" + name
	}
	return address
}

// BindAddress is the address to listen on for a socket key: what precedes
// "#" (see Listener.SocketKey).
func BindAddress(key string) string {
	a, _, _ := strings.Cut(strings.TrimPrefix(key, QUICKeyPrefix), "#")
	return a
}

// addCompat plans the matrix: one https listener per combination, on the
// host of the first https listener unless [compat] names one, ports from
// base_port (or free ports).
func (p *Plan) addCompat(cc *config.Compat) error {
	if cc == nil {
		return nil
	}
	site := p.sites[cc.Site]
	if site == nil {
		return fmt.Errorf("compat: no site %q", cc.Site)
	}
	host := cc.Host
	if host == "" {
		host = p.firstHTTPSHost()
	}
	p.Compat = &Compat{Site: site}
	for i, combo := range cc.Combinations() {
		group, err := pqtls.ParseServableGroup(combo.Group)
		if err != nil {
			return fmt.Errorf("compat: %w", err)
		}
		alg, err := certs.ParseAlg(combo.Cert)
		if err != nil {
			return fmt.Errorf("compat: %w", err)
		}
		port := "0"
		if cc.BasePort > 0 {
			port = strconv.Itoa(cc.BasePort + i)
		}
		name := "compat-" + combo.Group + "-" + combo.Cert
		address := net.JoinHostPort(host, port)
		c := &Combination{Group: group, GroupName: combo.Group, Cert: alg, PQGroup: pqtls.IsPostQuantumGroup(group), PQCert: alg.PostQuantum()}
		c.Listener = &Listener{Name: name, Address: address, SocketKey: socketKey(address, name), Kind: KindHTTPS,
			Resolver: NewResolver([]*Site{site}, false), ALPN: httpsALPN, Compat: c}
		p.Compat.Combinations = append(p.Compat.Combinations, c)
		p.Listeners = append(p.Listeners, c.Listener)
	}
	return nil
}

// firstHTTPSHost is the host of the first https listener, so the matrix is
// reachable wherever the site is.
func (p *Plan) firstHTTPSHost() string {
	for _, l := range p.Listeners {
		if l.Kind == KindHTTPS && l.Compat == nil {
			if h, _, err := net.SplitHostPort(l.Address); err == nil {
				return h
			}
		}
	}
	return "127.0.0.1"
}

// addACME plans each ACME site's challenge listeners.
func (p *Plan) addACME() {
	for _, s := range p.Sites {
		if !s.ACME {
			continue
		}
		as := &ACMESite{Site: s}
		for _, l := range p.Listeners {
			if l.Kind == KindHTTPS && l.Compat == nil && slices.Contains(l.Resolver.Sites(), s) {
				as.HTTPS = l.SocketKey
				break
			}
		}
		if port := s.Config.ACME.HTTPPort; port > 0 {
			// The HTTP-01 listener shares the host of the https listener,
			// so a pqedge bound to one address stays on it.
			host := ""
			if h, _, err := net.SplitHostPort(BindAddress(as.HTTPS)); err == nil {
				host = h
			}
			as.Plain = net.JoinHostPort(host, strconv.Itoa(port))
		}
		p.ACME = append(p.ACME, as)
	}
}

// SocketKeys lists every socket the plan listens on, HTTP-01 listeners
// and the UDP sockets of HTTP/3 included, without repeats.
func (p *Plan) SocketKeys() []string {
	var keys []string
	for _, l := range p.Listeners {
		keys = append(keys, l.SocketKey)
		if l.QUICKey != "" {
			keys = append(keys, l.QUICKey)
		}
	}
	for _, a := range p.ACME {
		if a.Plain != "" && !slices.Contains(keys, a.Plain) {
			keys = append(keys, a.Plain)
		}
	}
	return keys
}
