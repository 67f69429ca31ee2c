package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoHealthyUpstream is returned by Pool.Dial when every upstream of the
// pool is failing its health checks or is ejected.
var ErrNoHealthyUpstream = errors.New("no healthy upstream")

// MaxUpstreams is the most upstreams one pool may list; policies keep a
// bit per upstream in one machine word.
const MaxUpstreams = 64

// Defaults applied by NewPool to zero fields of PoolOptions.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultMaxFails    = 3
	DefaultEjectFor    = 10 * time.Second
)

// PoolOptions configure a Pool. Zero fields take the documented default.
type PoolOptions struct {
	// Addresses lists the upstreams: "host:port" for TCP, "unix:/path" for
	// a Unix stream socket, or "https://host:port" (port 443 by default)
	// for TLS to the origin, configured by TLS. At least one is required;
	// a pool's upstreams are either all https:// or none (see NewPool).
	Addresses []string

	// TLS configures the handshakes with https:// upstreams; it must be
	// zero for a pool without them.
	TLS UpstreamTLS
	// OnTLSHandshake, if set, is called after each TLS handshake with an
	// https:// upstream on the data path, succeeded or failed, on the
	// goroutine that dials (the HTTP transport's or the stream's), before
	// the connection carries a request. Keep-alive connections are reused,
	// so it counts connections, not requests. It must not block.
	OnTLSHandshake func(UpstreamHandshake)

	// DialTimeout bounds one connection attempt to an upstream, so a
	// blackholed address (SYN without answer) fails fast instead of holding
	// the client for the kernel's multi-minute connect timeout; for an
	// https:// upstream it bounds the TLS handshake that follows as well,
	// on its own. Default DefaultDialTimeout.
	DialTimeout time.Duration

	// MaxFails is the number of consecutive data-path failures (dial errors,
	// transport errors answered with 502/504) after which an upstream is
	// ejected for EjectFor. Default DefaultMaxFails.
	MaxFails int
	// EjectFor is the passive-ejection cool-down. Default DefaultEjectFor.
	EjectFor time.Duration

	// Health configures active health checks.
	Health HealthOptions

	// Policy picks the upstream of each request or stream; nil means
	// DefaultPolicy (a new one per pool: policies keep per-pool state).
	Policy Policy
	// Registry shares upstream health with other pools; nil gives the pool
	// a registry of its own, closed by Close.
	Registry *Registry

	// OnHealthChange, if set, is called each time an upstream becomes usable
	// (healthy is true) or unusable (false), as RegistryOptions.OnChange
	// is. Only for a pool with its own registry: with a shared one, set
	// RegistryOptions.OnChange instead (NewPool refuses both).
	OnHealthChange func(pool, addr string, healthy bool)

	// Logger receives health transitions at Info and probe errors at Debug.
	// Default slog.Default().
	Logger *slog.Logger
}

// UpstreamState is a snapshot of one upstream, for metrics and status pages.
type UpstreamState struct {
	Addr string // as configured: "host:port" or "unix:/path"
	// Healthy is true when the upstream is picked for new requests: it passes
	// active health checks and is not ejected.
	Healthy bool
	// Ejected is true during a passive-ejection cool-down.
	Ejected bool
	// ConsecutiveFailures counts data-path failures since the last success.
	ConsecutiveFailures int
	// InFlight counts requests and streams on it now, across the pools that
	// share it.
	InFlight int
}

// Pool is a named set of upstreams, picked by a Policy among the usable
// ones. Their health lives in a Registry, shared with other pools (of later
// config generations) that use the same upstreams. It is safe for
// concurrent use.
type Pool struct {
	name   string
	opts   PoolOptions
	log    *slog.Logger
	ups    []*upstream
	policy Policy
	reg    *Registry
	ownReg bool        // reg was made for this pool alone; Close closes it
	closed atomic.Bool // after Close, failures are not reported
	tls    bool        // the upstreams are https://
}

// upstream is one member of a pool: how to reach it, and its shared state.
type upstream struct {
	addr    string // as configured
	network string // "tcp" or "unix"
	dialTo  string // address handed to net.Dialer
	host    string // the host of dialTo (tcp), the default TLS server name
	// tls is set for an https:// upstream: the handshake after connecting.
	tls *upstreamTLS
	// key is the host[:port] the HTTP transport sees for this upstream; for a
	// unix socket it is a synthetic name the transport's dialer maps back.
	key   string
	state *upstreamState
}

// NewPool checks the addresses and takes each upstream's shared state from
// opts.Registry (starting active checks for states new to it). Call Close
// to release them.
func NewPool(name string, opts PoolOptions) (*Pool, error) {
	if len(opts.Addresses) == 0 {
		return nil, fmt.Errorf("failed to create pool %q: no upstream addresses", name)
	}
	if len(opts.Addresses) > MaxUpstreams {
		return nil, fmt.Errorf("failed to create pool %q: %d upstreams, at most %d", name, len(opts.Addresses), MaxUpstreams)
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.MaxFails <= 0 {
		opts.MaxFails = DefaultMaxFails
	}
	if opts.EjectFor <= 0 {
		opts.EjectFor = DefaultEjectFor
	}
	if err := opts.Health.setDefaults(); err != nil {
		return nil, fmt.Errorf("failed to create pool %q: %w", name, err)
	}
	policy := opts.Policy
	if policy == nil {
		policy, _ = ParsePolicy("")
	}
	if opts.Registry != nil && opts.OnHealthChange != nil {
		return nil, fmt.Errorf("failed to create pool %q: OnHealthChange is for a pool with its own registry; set RegistryOptions.OnChange on the shared one", name)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	p := &Pool{name: name, opts: opts, log: log.With("pool", name), policy: policy, reg: opts.Registry}
	// Both maps matter: unix keys are distinct by index, and two TCP
	// addresses differing only in the host's case share a transport key,
	// so byKey would send the second one's requests to the first.
	seenAddr, seenKey := map[string]bool{}, map[string]bool{}
	for i, a := range opts.Addresses {
		u, err := parseUpstream(a, i)
		if err != nil {
			return nil, fmt.Errorf("failed to create pool %q: %w", name, err)
		}
		if seenAddr[u.addr] || seenKey[u.key] {
			return nil, fmt.Errorf("failed to create pool %q: upstream %q listed twice", name, a)
		}
		seenAddr[u.addr], seenKey[u.key] = true, true
		p.ups = append(p.ups, u)
	}
	if err := p.setupTLS(); err != nil {
		return nil, fmt.Errorf("failed to create pool %q: %w", name, err)
	}
	if p.reg == nil {
		var onChange func(UpstreamChange)
		if opts.OnHealthChange != nil {
			onChange = func(c UpstreamChange) { opts.OnHealthChange(name, c.Addr, c.Usable) }
		}
		p.reg, p.ownReg = NewRegistry(RegistryOptions{OnChange: onChange, Logger: p.log}), true
	}
	spec := healthSpec{HealthOptions: opts.Health, maxFails: opts.MaxFails, ejectFor: opts.EjectFor}
	if p.tls {
		spec.tls = opts.TLS.id()
	}
	for i, u := range p.ups {
		st, err := p.reg.acquire(u, spec)
		if err != nil {
			for _, v := range p.ups[:i] {
				p.reg.release(v.state)
			}
			return nil, fmt.Errorf("failed to create pool %q: %w", name, err)
		}
		u.state = st
	}
	return p, nil
}

// CheckUpstream reports what is wrong with an upstream address, as NewPool
// would; config loaders call it to point at the line.
func CheckUpstream(addr string) error {
	_, err := parseUpstream(addr, 0)
	return err
}

func parseUpstream(a string, index int) (*upstream, error) {
	u := &upstream{addr: a}
	if rest, ok := cutScheme(a, "https://"); ok {
		return parseHTTPSUpstream(u, rest)
	}
	if _, ok := cutScheme(a, "http://"); ok {
		return nil, fmt.Errorf("upstream %q: plain HTTP upstreams are written host:port, without http://", a)
	}
	if path, ok := strings.CutPrefix(a, "unix:"); ok {
		if path == "" {
			return nil, fmt.Errorf("upstream %q: empty unix socket path", a)
		}
		if !filepath.IsAbs(path) {
			// Relative to whatever directory pqedge was started in: a
			// restart from elsewhere would dial another socket.
			return nil, fmt.Errorf("upstream %q: unix socket path %q is not absolute", a, path)
		}
		u.network, u.dialTo = "unix", path
		// The transport keys idle connections by host:port, so each socket
		// gets a distinct name in the reserved .invalid TLD (RFC 6761).
		u.key = fmt.Sprintf("unix-%d.pqedge.invalid:80", index)
		return u, nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: want host:port, https://host:port or unix:/path: %w", a, err)
	}
	return setTCPUpstream(u, host, port)
}

// setTCPUpstream fills in a TCP upstream at host and port.
func setTCPUpstream(u *upstream, host, port string) (*upstream, error) {
	if port == "" || host == "" {
		return nil, fmt.Errorf("upstream %q: want host:port, https://host:port or unix:/path", u.addr)
	}
	if !validHost(host) {
		return nil, fmt.Errorf("upstream %q: host %q is neither an IP address nor a DNS name", u.addr, host)
	}
	// A service name or an out-of-range port would only fail at the first
	// dial, on a client's request.
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return nil, fmt.Errorf("upstream %q: port %q is not a number from 1 to 65535", u.addr, port)
	}
	// The transport lower-cases the host it dials; match it.
	u.network, u.dialTo, u.host = "tcp", net.JoinHostPort(host, port), host
	u.key = net.JoinHostPort(strings.ToLower(host), port)
	return u, nil
}

// validHost reports whether host is an IP address or made of DNS name
// characters (letters, digits, "-", "." and, as in some internal names,
// "_"); anything else could only fail at the first dial, or mean another
// host than it seems to.
func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// parseHTTPSUpstream parses what follows "https://": host[:port], port
// 443 by default, and nothing else (no path, query or user).
func parseHTTPSUpstream(u *upstream, rest string) (*upstream, error) {
	if i := strings.IndexAny(rest, "/?#@"); i >= 0 {
		return nil, fmt.Errorf("upstream %q: an https upstream is https://host:port, without %q and what follows; requests keep their own path", u.addr, rest[i:])
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		// No port: the https default. A bare IPv6 address must be
		// bracketed, as in URLs (RFC 3986 section 3.2.2).
		host, port = rest, "443"
		if h, ok := strings.CutPrefix(host, "["); ok && strings.HasSuffix(h, "]") {
			host = strings.TrimSuffix(h, "]")
		} else if strings.Contains(host, ":") {
			return nil, fmt.Errorf("upstream %q: want https://host:port (IPv6 addresses in brackets, e.g. https://[2001:db8::1]:443)", u.addr)
		}
	}
	if _, err := setTCPUpstream(u, host, port); err != nil {
		return nil, err
	}
	// The configured TLS is set up once every address parsed (setupTLS);
	// a non-nil value marks the upstream as https meanwhile.
	u.tls = &upstreamTLS{}
	return u, nil
}

// cutScheme cuts a URL scheme prefix, matched without regard to case (RFC
// 3986 section 3.1).
func cutScheme(a, scheme string) (string, bool) {
	if len(a) >= len(scheme) && strings.EqualFold(a[:len(scheme)], scheme) {
		return a[len(scheme):], true
	}
	return "", false
}

// setupTLS checks that the pool's upstreams are all https:// or none, and
// gives each https:// upstream its client config.
//
// Mixing is refused: whether a request's origin leg is encrypted (and
// post-quantum) would then depend on which upstream the balancer picked,
// and pq_required or a client certificate would hold for some requests
// only. Two pools, each routed on its own, say what is meant.
func (p *Pool) setupTLS() error {
	n := 0
	for _, u := range p.ups {
		if u.tls != nil {
			n++
		}
	}
	switch {
	case n == 0 && !p.opts.TLS.isZero():
		return errors.New("TLS settings are given, but no upstream is https://")
	case n == 0:
		return nil
	case n < len(p.ups):
		return errors.New("upstreams mix https:// and plain addresses; a request's origin leg would be encrypted or not by the upstream picked: use a pool for each")
	}
	p.tls = true
	configFor := p.opts.TLS.clientConfigs()
	for _, u := range p.ups {
		u.tls = configFor(u.host)
	}
	return nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Upstreams returns a snapshot of every upstream in configuration order.
func (p *Pool) Upstreams() []UpstreamState {
	now := time.Now()
	out := make([]UpstreamState, len(p.ups))
	for i, u := range p.ups {
		out[i] = u.state.snapshot(now)
	}
	return out
}

// Close releases the pool's upstream states (the registry stops checking an
// upstream no pool uses any more). Connections already handed out are not
// touched; failures they report after Close are ignored.
func (p *Pool) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	for _, u := range p.ups {
		p.reg.release(u.state)
	}
	if p.ownReg {
		p.reg.Close()
	}
	return nil
}

// Len, Usable, InFlight and Addr make a Pool the UpstreamSet its Policy
// picks from.
func (p *Pool) Len() int                { return len(p.ups) }
func (p *Pool) Usable(i int) bool       { return p.ups[i].state.usableNow(time.Now()) }
func (p *Pool) InFlight(i int) int64    { return p.ups[i].state.inflight.Load() }
func (p *Pool) Addr(i int) string       { return p.ups[i].addr }
func (s *skipSet) Len() int             { return s.p.Len() }
func (s *skipSet) Usable(i int) bool    { return !s.tried[i] && s.p.Usable(i) }
func (s *skipSet) InFlight(i int) int64 { return s.p.InFlight(i) }
func (s *skipSet) Addr(i int) string    { return s.p.Addr(i) }

// skipSet is a pool without the upstreams already tried for one request.
type skipSet struct {
	p     *Pool
	tried []bool
}

// pick returns the upstream the policy chooses for client, skipping those
// tried (nil: none), and counts it in flight: the caller must call done.
func (p *Pool) pick(client netip.Addr, tried []bool) (*upstream, error) {
	var set UpstreamSet = p
	if tried != nil {
		set = &skipSet{p: p, tried: tried}
	}
	i := p.policy.Pick(set, client)
	if i < 0 {
		return nil, ErrNoHealthyUpstream
	}
	u := p.ups[i]
	u.state.inflight.Add(1)
	return u, nil
}

// done ends the in-flight count pick started.
func (u *upstream) done() { u.state.inflight.Add(-1) }

// byKey finds the upstream the HTTP transport is dialing.
func (p *Pool) byKey(key string) *upstream {
	for _, u := range p.ups {
		if u.key == key {
			return u
		}
	}
	return nil
}

// Dial connects to an upstream picked for client (an invalid address when
// unknown), counted in flight until the returned connection is closed. A
// failed attempt
// counts against that upstream and another one is tried, so a single dead
// upstream costs latency, not an error; it returns the configured address
// of the upstream it connected to. ctx bounds the whole call, DialTimeout
// each attempt.
func (p *Pool) Dial(ctx context.Context, client netip.Addr) (net.Conn, string, error) {
	tried := make([]bool, len(p.ups))
	var lastErr error
	for range p.ups {
		u, err := p.pick(client, tried)
		if err != nil {
			break
		}
		tried[slices.Index(p.ups, u)] = true
		c, err := p.dialUpstream(ctx, u)
		if err == nil {
			// For a stream a connect is the whole of what the pool can
			// judge, so it counts as a success.
			p.reportSuccess(u)
			return &releaseConn{Conn: c, release: u.done}, u.addr, nil
		}
		u.done()
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	if lastErr == nil {
		lastErr = ErrNoHealthyUpstream
	}
	return nil, "", fmt.Errorf("failed to dial pool %q: %w", p.name, lastErr)
}

// DialContext returns a dial function for the pool in the shape
// net.Dialer.DialContext has; network and address are ignored, the pool
// picks the upstream.
func (p *Pool) DialContext() func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, _, err := p.Dial(ctx, netip.Addr{})
		return c, err
	}
}

// releaseConn ends an in-flight count when the connection closes.
type releaseConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *releaseConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// CloseWrite half-closes the connection (TCP and unix sockets can), so a
// stream can pass on the end of one direction.
func (c *releaseConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// dialError marks a failure to connect, as opposed to a failure after
// the connection was made; the HTTP error handler answers it with 502.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return fmt.Sprintf("failed to connect to %s: %v", e.addr, e.err) }
func (e *dialError) Unwrap() error { return e.err }

// dialUpstream connects to u, completes the TLS handshake of an https://
// upstream, and reports the outcome to the health state (and the
// handshake to OnTLSHandshake).
func (p *Pool) dialUpstream(ctx context.Context, u *upstream) (net.Conn, error) {
	d := net.Dialer{Timeout: p.opts.DialTimeout}
	c, err := d.DialContext(ctx, u.network, u.dialTo)
	if err != nil {
		// A dial the client abandoned says nothing about the upstream.
		if ctx.Err() == nil {
			p.reportFailure(u, err)
		}
		return nil, &dialError{addr: u.addr, err: err}
	}
	if u.tls == nil {
		return c, nil
	}
	start := time.Now()
	tc, err := u.tls.handshake(ctx, c, u.addr, p.opts.DialTimeout)
	hs := UpstreamHandshake{Pool: p.name, Upstream: u.addr, Duration: time.Since(start)}
	if err != nil {
		if ctx.Err() != nil {
			return nil, &dialError{addr: u.addr, err: err}
		}
		hs.Err = err.(*UpstreamTLSError)
		p.reportFailure(u, err)
		p.tlsHandshake(hs)
		return nil, &dialError{addr: u.addr, err: err}
	}
	cs := tc.ConnectionState()
	hs.Facts = factsOf(&cs)
	p.tlsHandshake(hs)
	return tc, nil
}

// tlsHandshake reports one origin handshake to OnTLSHandshake.
func (p *Pool) tlsHandshake(hs UpstreamHandshake) {
	if p.opts.OnTLSHandshake != nil {
		p.opts.OnTLSHandshake(hs)
	}
}

// reportFailure records a failure the upstream caused (see HTTPProxy's
// error classification: a client's own error never counts). It may eject
// the upstream, and starts a probe.
func (p *Pool) reportFailure(u *upstream, cause error) {
	if p.closed.Load() {
		return // a request that outlived Close: nobody reads the verdict
	}
	u.state.reportFailure(cause)
}

// reportSuccess records that u served a request.
func (p *Pool) reportSuccess(u *upstream) { u.state.reportSuccess() }
