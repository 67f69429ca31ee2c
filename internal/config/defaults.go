package config

import (
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/connlimit"
	"github.com/pqedge/pqedge/internal/fleet"
	"github.com/pqedge/pqedge/internal/h1guard"
	"github.com/pqedge/pqedge/internal/h2guard"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// This file is the one home of pqedge's defaults. Parse applies them after
// validation (the "effective config" step), so every Config it returns has
// every value set and nothing downstream chooses a default of its own.
// Values that a library package also defaults for its zero value (proxy,
// certs, pqtls) are taken from that package, so a library's zero value and
// the product's default are the same thing by construction.

// Timeouts. Each bounds what a slow or hostile peer can hold: a goroutine, a
// socket, a slot in a pool.
const (
	// DefaultHandshakeTimeout bounds a client that stops mid-handshake.
	DefaultHandshakeTimeout = proxy.DefaultHandshakeTimeout
	// DefaultReadHeaderTimeout bounds slow-header (slowloris) clients.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes keep-alive connections idle this long.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultUpstreamDialTimeout bounds a connect to a blackholed upstream.
	DefaultUpstreamDialTimeout = proxy.DefaultDialTimeout
	// DefaultUpstreamHeaderTimeout bounds an upstream that accepts a request
	// and never answers.
	DefaultUpstreamHeaderTimeout = proxy.DefaultResponseHeaderTimeout
	// DefaultStreamIdleTimeout ends TCP streams with no traffic either way.
	DefaultStreamIdleTimeout = proxy.DefaultStreamIdleTimeout
	// DefaultShutdownTimeout is how long SIGTERM and a reload let in-flight
	// requests and streams finish; for SIGTERM it includes the withdraw
	// grace.
	DefaultShutdownTimeout = 15 * time.Second
	// DefaultWithdrawGrace is how long SIGTERM keeps accepting after
	// /readyz turned 503, without [anycast]: none, since nothing is known
	// to be waiting for /readyz; a load balancer that polls it needs its
	// poll interval times its failure threshold. With [anycast] it is
	// DefaultAnycastWithdrawGrace.
	DefaultWithdrawGrace = 0 * time.Second
	// DefaultRequestBodyTimeout bounds a request body that stalls (slow
	// POST): without it a client pins an upstream connection at will.
	DefaultRequestBodyTimeout = proxy.DefaultRequestBodyTimeout
	// DefaultResponseWriteTimeout bounds each write to a client that stops
	// reading (slow read).
	DefaultResponseWriteTimeout = proxy.DefaultResponseWriteTimeout
	// DefaultUpstreamIdleTimeout ends upstream responses and WebSockets
	// stalled this long in the direction pqedge waits on.
	DefaultUpstreamIdleTimeout = proxy.DefaultUpstreamIdleTimeout
	// DefaultHandshakeIdle frees the handshake places of clients that
	// send nothing, or stall mid-ClientHello, while others queue; long
	// enough for a real client's lost first segment to be retransmitted
	// (connlimit.DefaultIdleGrace says why).
	DefaultHandshakeIdle = connlimit.DefaultIdleGrace
	// MinHandshakeIdle is TCP's minimum retransmission timeout (RFC 6298
	// section 2.4, Linux's TCP_RTO_MIN): a shorter timeouts.handshake_idle
	// would take a client whose first segment was lost once for idle.
	MinHandshakeIdle = 200 * time.Millisecond
)

// Limits ([limits]).
var (
	// DefaultRequestHeader caps a request's header block, HTTP/1.1, HTTP/2
	// and HTTP/3 (http.Server.MaxHeaderBytes, http3.Server's, and the
	// HTTP/1.1 framing guard's bound): Go's default is 1 MB.
	DefaultRequestHeader = FormatSize(h1guard.DefaultMaxHeaderBytes)
	// DefaultResponseHeader caps an upstream's response header block: of
	// the order of the request limit, where Go's transport default (10 MB)
	// let an upstream make pqedge buffer ~15 MB per request.
	DefaultResponseHeader = FormatSize(proxy.DefaultMaxResponseHeaderBytes)
	// DefaultRequestHeaderFields and DefaultResponseHeaderFields cap the
	// fields of a header (or trailer) section: 100, as Apache's
	// LimitRequestFields, Envoy's max_headers_count and hyper (HAProxy's
	// tune.http.maxhdr is 101; nginx and Go cap bytes, and Go's server
	// also 500 values, none on responses).
	DefaultRequestHeaderFields  = proxy.DefaultMaxHeaderFields
	DefaultResponseHeaderFields = proxy.DefaultMaxHeaderFields
)

const (
	// DefaultHandshakes bounds TLS handshakes in progress; beyond it
	// connections wait in a queue of DefaultHandshakeQueue, then are closed
	// before any cryptography (a handshake flood must not starve
	// established connections).
	DefaultHandshakes     = connlimit.DefaultMaxHandshakes
	DefaultHandshakeQueue = connlimit.DefaultHandshakeQueue
	// DefaultConnections bounds open client connections (~32 KiB each when
	// idle), DefaultConnectionsPerClient those of one IPv4 address or
	// IPv6 /64, with room for an office behind one NAT address.
	DefaultConnections          = connlimit.DefaultMaxConns
	DefaultConnectionsPerClient = connlimit.DefaultMaxConnsPerClient
	// DefaultHandshakesPerClient bounds the handshake slots and queue
	// places of one client address: a quarter of DefaultHandshakes, so
	// that one address cannot hold them all for the handshake timeout.
	DefaultHandshakesPerClient = connlimit.DefaultMaxHandshakesPerClient
	// DefaultRequestsPerClient bounds the requests one client address has
	// in flight: as many as its DefaultConnectionsPerClient connections
	// carry over HTTP/1.1, so HTTP/2 and HTTP/3 streams (250 a
	// connection) do not multiply what one address can pin (an upstream
	// connection and ~85 KiB each while its response waits on the client).
	DefaultRequestsPerClient = DefaultConnectionsPerClient
	// DefaultH2Resets RST_STREAM (and empty CONTINUATION or DATA) frames,
	// and streams the server resets for the client's errors
	// (CVE-2025-8671), per DefaultH2ResetWindow close an HTTP/2
	// connection: a browser
	// cancelling a page's requests stays far below, a rapid-reset client
	// (CVE-2023-44487) is closed within milliseconds.
	DefaultH2Resets      = h2guard.DefaultMaxGlitches
	DefaultH2ResetWindow = h2guard.DefaultGlitchWindow
	// DefaultHandshakeCPU leaves a fifth of the CPUs idle for established
	// connections while handshakes queue (connlimit.Options.CPUShare
	// says why).
	DefaultHandshakeCPU = connlimit.DefaultCPUShare
	// DefaultRequestBodyMinRate is the slowest average body rate, in bytes
	// per second, once timeouts.request_body has passed.
	DefaultRequestBodyMinRate int64 = proxy.DefaultRequestBodyMinRate
	// DefaultHeapFloor is none: the collector follows GOGC alone. A floor
	// trades memory for fewer collections of a small heap that allocates
	// fast, as under a handshake flood (internal/heapfloor); its effect on
	// latency there was within the noise (docs/BENCHMARKS.md set M), so it
	// is the operator's choice.
	DefaultHeapFloor Size = "0"
)

// Other defaults.
const (
	// DefaultDataDir holds the local CA and ACME state, relative to the
	// config file's directory.
	DefaultDataDir = ".pqedge"
	// DefaultPQCerts is when a site serves its ML-DSA chain: never, unless
	// the site opts in (issue #2: a private ML-DSA chain served to a client
	// that offers ML-DSA but does not trust the root breaks that client,
	// and Chromium offers ML-DSA by default).
	DefaultPQCerts = certs.DefaultPQMode
	// DefaultPolicy is a site's TLS policy preset.
	DefaultPolicy = pqtls.DefaultPreset
	// DefaultMLDSASigner makes a site's ML-DSA signatures.
	DefaultMLDSASigner = certs.DefaultSignerKind
	// DefaultBalance is how a pool spreads requests over its upstreams.
	DefaultBalance = proxy.DefaultPolicy
	// DefaultHealthInterval is "" (no active health checks): passive
	// ejection alone is on unless a pool sets health.interval. The proxy
	// package's zero Interval means the same.
	DefaultHealthInterval Duration = ""
	// DefaultPoolIdleConns is how many idle keep-alive connections a pool
	// keeps per upstream. It must cover the requests a pool has in flight
	// at its peaks: net/http's Transport closes, instead of parking, every
	// connection that finishes beyond it, and the next request dials a new
	// one (golang/go#13801). 32 made pqedge re-dial 700 times per 1,000
	// HTTP/2 requests at 320 in flight (docs/BENCHMARKS.md); an idle
	// connection costs ~20 KiB and closes after 90 s unused.
	DefaultPoolIdleConns = proxy.DefaultMaxIdleConnsPerHost
)

// Origin TLS (a pool's https:// upstreams, package proxy's UpstreamTLS). An
// empty tls_ca means the system roots, an empty tls_server_name each
// upstream's own host, and the groups offered are those of the pqtls
// pq-preferred preset (X25519MLKEM768 first, then the other hybrids, then
// x25519 and secp256r1), or with pq_required the pq-only preset's hybrids
// over TLS 1.3. ML-DSA client keys sign with DefaultMLDSASigner.
const (
	// DefaultPQRequired: an origin that negotiates only classical groups
	// is served (and counted as such: pqedge_upstream_handshakes_total,
	// the adoption page) unless the pool sets pq_required.
	DefaultPQRequired = false
)

// Anycast ([anycast], package anycast). Operators of anycast DNS and web
// services damp route changes for seconds, not milliseconds: a route that
// moves costs every client behind it a retry.
const (
	// DefaultAnycastDevice is the TUN device pqedge announces on; BIRD's
	// direct protocol watches it.
	DefaultAnycastDevice = "pqedge-any0"
	// DefaultAnycastRise is how many healthy samples re-announce a prefix
	// after a withdrawal (the first announcement after start needs one).
	DefaultAnycastRise = 3
	// DefaultAnycastFall is how many unhealthy samples withdraw a prefix:
	// one, since the inputs (listener state, pool health with its own
	// thresholds) are debounced already, and a node that cannot serve
	// should stop attracting traffic at once.
	DefaultAnycastFall = 1
	// DefaultAnycastInterval is the time between samples while a count runs.
	DefaultAnycastInterval = time.Second
	// DefaultAnycastHoldDown is the least time from a withdrawal to the next
	// announcement.
	DefaultAnycastHoldDown = 10 * time.Second
	// DefaultAnycastWithdrawGrace is timeouts.withdraw_grace with
	// [anycast]: how long pqedge keeps accepting after withdrawing on
	// SIGTERM. BGP converges in well under a second between neighbours, a
	// few seconds across a network.
	DefaultAnycastWithdrawGrace = 5 * time.Second
)

// Fleet mode ([fleet], docs/FLEET.md). node_id has no constant default:
// empty means the host name, which fleet.New looks up when the node starts.
const (
	// DefaultFleetKeyPrefix starts every key a fleet writes in its store.
	DefaultFleetKeyPrefix = fleet.DefaultKeyPrefix
	// DefaultTicketRotation is how long one fleet ticket key seals new
	// tickets (half of Go's own 24 h: a leaked key opens fewer sessions).
	DefaultTicketRotation = fleet.DefaultTicketRotation
)

// DefaultStreamALPN is what a stream listener negotiates when it names no
// alpn: "dot", DNS over TLS (RFC 7858 section 3.2, the IANA ALPN id), and a
// client that offers no ALPN at all is served too. A stream listener never
// offers h2 or http/1.1: it carries raw bytes, not HTTP.
var DefaultStreamALPN = []string{"dot"}

// applyDefaults fills in every unset value of a validated config.
func (c *Config) applyDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Access == nil {
		on := true
		c.Log.Access = &on
	}
	t := &c.Timeouts
	for _, d := range []struct {
		val *Duration
		def time.Duration
	}{
		{&t.Handshake, DefaultHandshakeTimeout},
		{&t.ReadHeader, DefaultReadHeaderTimeout},
		{&t.Idle, DefaultIdleTimeout},
		{&t.UpstreamDial, DefaultUpstreamDialTimeout},
		{&t.UpstreamHeader, DefaultUpstreamHeaderTimeout},
		{&t.StreamIdle, DefaultStreamIdleTimeout},
		{&t.Shutdown, DefaultShutdownTimeout},
		{&t.RequestBody, DefaultRequestBodyTimeout},
		{&t.ResponseWrite, DefaultResponseWriteTimeout},
		{&t.UpstreamIdle, DefaultUpstreamIdleTimeout},
		{&t.HandshakeIdle, DefaultHandshakeIdle},
		{&t.WithdrawGrace, c.defaultWithdrawGrace()},
	} {
		if *d.val == "" {
			*d.val = Duration(d.def.String())
		}
	}
	c.Limits.applyDefaults()
	for i := range c.Listener {
		l := &c.Listener[i]
		if l.Kind == "" {
			l.Kind = KindHTTPS
		}
		if l.Kind == KindStream && l.ALPN == nil {
			l.ALPN = append([]string(nil), DefaultStreamALPN...)
		}
	}
	for i := range c.Pool {
		p := &c.Pool[i]
		if p.Balance == "" {
			p.Balance = string(DefaultBalance)
		}
		if p.Health.Interval == "" {
			p.Health.Interval = DefaultHealthInterval
		}
		if p.IdleConns == 0 {
			p.IdleConns = DefaultPoolIdleConns
		}
	}
	if a := c.Anycast; a != nil {
		if a.Device == "" {
			a.Device = DefaultAnycastDevice
		}
		if a.Rise == 0 {
			a.Rise = DefaultAnycastRise
		}
		if a.Fall == 0 {
			a.Fall = DefaultAnycastFall
		}
		for _, d := range []struct {
			val *Duration
			def time.Duration
		}{
			{&a.Interval, DefaultAnycastInterval},
			{&a.HoldDown, DefaultAnycastHoldDown},
		} {
			if *d.val == "" {
				*d.val = Duration(d.def.String())
			}
		}
	}
	if f := c.Fleet; f != nil {
		if f.KeyPrefix == "" {
			f.KeyPrefix = DefaultFleetKeyPrefix
		}
		if f.TicketRotation == "" {
			f.TicketRotation = Duration(DefaultTicketRotation.String())
		}
	}
	for i := range c.Site {
		s := &c.Site[i]
		if s.Certs == "" {
			s.Certs = CertsLocal
		}
		if s.PQCerts == "" {
			s.PQCerts = string(DefaultPQCerts)
		}
		if s.TLS.Policy == "" {
			s.TLS.Policy = DefaultPolicy
		}
		if s.TLS.MLDSASigner == "" {
			s.TLS.MLDSASigner = string(DefaultMLDSASigner)
		}
		if s.TLS.TicketScope == "" {
			s.TLS.TicketScope = s.Name
		}
		if s.TLS.SessionTickets == nil {
			on := true
			s.TLS.SessionTickets = &on
		}
	}
}

// defaultWithdrawGrace is timeouts.withdraw_grace when it is not set: it
// depends on whether there are routes to withdraw.
func (c *Config) defaultWithdrawGrace() time.Duration {
	if c.Anycast != nil {
		return DefaultAnycastWithdrawGrace
	}
	return DefaultWithdrawGrace
}

// applyDefaults fills in the unset keys of [limits].
func (l *Limits) applyDefaults() {
	if l.RequestHeader == "" {
		l.RequestHeader = DefaultRequestHeader
	}
	if l.ResponseHeader == "" {
		l.ResponseHeader = DefaultResponseHeader
	}
	if l.RequestBodyMinRate == nil {
		r := DefaultRequestBodyMinRate
		l.RequestBodyMinRate = &r
	}
	if l.HandshakeCPU == nil {
		s := DefaultHandshakeCPU
		l.HandshakeCPU = &s
	}
	for _, c := range []struct {
		p   **int
		def int
	}{
		{&l.Handshakes, DefaultHandshakes}, {&l.HandshakeQueue, DefaultHandshakeQueue},
		{&l.Connections, DefaultConnections}, {&l.ConnectionsPerClient, DefaultConnectionsPerClient},
		{&l.HandshakesPerClient, DefaultHandshakesPerClient}, {&l.H2Resets, DefaultH2Resets},
		{&l.RequestHeaderFields, DefaultRequestHeaderFields}, {&l.ResponseHeaderFields, DefaultResponseHeaderFields},
		{&l.RequestsPerClient, DefaultRequestsPerClient},
	} {
		if *c.p == nil {
			v := c.def
			*c.p = &v
		}
	}
	if l.H2ResetWindow == "" {
		l.H2ResetWindow = Duration(DefaultH2ResetWindow.String())
	}
	if l.HeapFloor == "" {
		l.HeapFloor = DefaultHeapFloor
	}
}
