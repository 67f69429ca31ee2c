package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Config is a whole pqedge configuration file.
type Config struct {
	// DataDir holds state pqedge creates: the local CA and certificates,
	// ACME accounts and certificates. Relative paths are relative to the
	// config file's directory.
	DataDir  string     `toml:"data_dir"`
	Admin    Admin      `toml:"admin"`
	Log      Log        `toml:"log"`
	Timeouts Timeouts   `toml:"timeouts"`
	Limits   Limits     `toml:"limits"`
	Listener []Listener `toml:"listener"`
	Site     []Site     `toml:"site"`
	Pool     []Pool     `toml:"pool"`
	// Compat opens the compatibility-matrix listeners; nil without a
	// [compat] table.
	Compat *Compat `toml:"compat"`
	// Anycast announces service addresses through BIRD; nil without an
	// [anycast] table.
	Anycast *Anycast `toml:"anycast"`
	// Fleet joins this node to a fleet that shares ACME state and
	// session-ticket keys through a Redis or Valkey store; nil without a
	// [fleet] table.
	Fleet *Fleet `toml:"fleet"`

	// File is the path the config was loaded from; not a TOML key.
	File string `toml:"-"`
	// Warnings are likely mistakes in a valid config (Problem.Warning set),
	// for `pqedge config check` and the log; not a TOML key.
	Warnings Problems `toml:"-"`

	pos positions // where each key is written, for CheckFiles' problems and Problem
}

// Problem is a problem with a key of this config found after Parse, such
// as a change the running server cannot make by a reload, with the line
// the key is written on (or its table's, for a default value).
func (c *Config) Problem(key, hint, format string, args ...any) Problem {
	return Problem{File: c.File, Line: c.pos.line(key), Key: key, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// Admin is the listener for metrics and health endpoints.
type Admin struct {
	Listen string `toml:"listen"` // empty disables the admin listener
	// ReadyPools are the pools /readyz requires a healthy upstream in.
	// None by default: when upstreams shared by every node fail, taking
	// every node out of its load balancer (or a container HEALTHCHECK
	// restarting a sound proxy) does not help.
	ReadyPools []string `toml:"ready_pools"`
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
	Access *bool  `toml:"access"` // access log on every request; default true
}

// Timeouts bound how long pqedge waits on clients and upstreams.
type Timeouts struct {
	Handshake      Duration `toml:"handshake"`       // TLS handshake, from accept
	ReadHeader     Duration `toml:"read_header"`     // request headers after the handshake
	Idle           Duration `toml:"idle"`            // keep-alive connections between requests
	UpstreamDial   Duration `toml:"upstream_dial"`   // connecting to an upstream
	UpstreamHeader Duration `toml:"upstream_header"` // an upstream's response headers
	StreamIdle     Duration `toml:"stream_idle"`     // a TCP stream with no bytes either way
	// Shutdown is everything SIGTERM may take, counted from the signal:
	// WithdrawGrace, then the drain of what is in flight. A reload's
	// drain of the previous config gets all of it.
	Shutdown Duration `toml:"shutdown"`
	// WithdrawGrace is the first part of Shutdown: /readyz answers 503
	// and every anycast prefix is withdrawn, but pqedge keeps accepting
	// and serving, so load balancers and routers stop sending new clients
	// before the listeners close. It must be shorter than Shutdown.
	WithdrawGrace Duration `toml:"withdraw_grace"`
	// RequestBody is the longest a request body may stall without a byte
	// (HTTP/1.1, HTTP/2 and HTTP/3): a client that starts a body and stops
	// would otherwise pin an upstream connection for as long as it likes.
	RequestBody Duration `toml:"request_body"`
	// ResponseWrite is the longest one write of a response to the client
	// may block: a client that stops reading (slow read) would otherwise
	// pin the upstream connection and its buffers.
	ResponseWrite Duration `toml:"response_write"`
	// UpstreamIdle is the longest an upstream connection may go without a
	// byte in the direction pqedge waits on (response bodies, WebSockets).
	UpstreamIdle Duration `toml:"upstream_idle"`
	// HandshakeIdle is how long a TCP client may keep its handshake
	// waiting, sending no byte since the accept or none while its
	// ClientHello (or PROXY header) is being read, before its connection
	// is closed to make room while other handshakes wait for a slot. It
	// must be at least 200ms, TCP's minimum retransmission timeout.
	HandshakeIdle Duration `toml:"handshake_idle"`
}

// Limits cap what one client or upstream can make pqedge hold.
type Limits struct {
	// RequestHeader caps a request's header block in bytes (HTTP/1.1,
	// HTTP/2 and HTTP/3), e.g. "64KiB".
	RequestHeader Size `toml:"request_header"`
	// ResponseHeader caps an upstream response's header block, so an
	// upstream whose header never ends costs a 502, not megabytes.
	ResponseHeader Size `toml:"response_header"`
	// RequestHeaderFields caps the fields of a request's header section
	// and apart of its trailer section (431 beyond it; 400 for
	// trailers), ResponseHeaderFields those of an upstream response's
	// (502, counted against the upstream): under the byte caps alone a
	// section holds thousands of short fields, each parsed, stored and
	// copied (a 10,000-field response cost ~16 ms of CPU).
	RequestHeaderFields  *int `toml:"request_header_fields"`
	ResponseHeaderFields *int `toml:"response_header_fields"`
	// RequestBodyMinRate is the slowest average rate, in bytes per second,
	// a request body may arrive at once timeouts.request_body has passed;
	// 0 turns the floor off (the stall timeout still applies).
	RequestBodyMinRate *int64 `toml:"request_body_min_rate"`
	// Handshakes caps TLS handshakes in progress; connections beyond it
	// wait (at most HandshakeQueue of them, each until its handshake
	// timeout) or are closed before any cryptography is done. Handshakes 0
	// means no cap; HandshakeQueue 0 means none wait.
	Handshakes     *int `toml:"handshakes"`
	HandshakeQueue *int `toml:"handshake_queue"`
	// HandshakeCPU is the share of the CPUs that a flood's handshakes
	// (and the work around them) may take while handshakes queue, from
	// 0.1 (connlimit.MinCPUShare) to 1; 1 turns the budget off
	// (connlimit.Options.CPUShare).
	HandshakeCPU *float64 `toml:"handshake_cpu"`
	// Connections caps client connections in total, ConnectionsPerClient
	// per client address (an IPv4 address or an IPv6 /64); 0 means no cap.
	Connections          *int `toml:"connections"`
	ConnectionsPerClient *int `toml:"connections_per_client"`
	// HandshakesPerClient caps the handshake slots and queue places one
	// client address holds at once, TCP and QUIC together; its further
	// TCP connections are closed before any byte is read, its QUIC ones
	// at their ClientHello. 0 means no cap.
	HandshakesPerClient *int `toml:"handshakes_per_client"`
	// RequestsPerClient caps the requests one client address (an IPv4
	// address or an IPv6 /64) has in flight at once, over HTTP/1.1,
	// HTTP/2 and HTTP/3 together; one over it is answered 429. 0 means
	// no cap.
	RequestsPerClient *int `toml:"requests_per_client"`
	// H2Resets is how many streams an HTTP/2 client may reset, or make
	// the server reset with its errors (and other cheap-to-send,
	// costly-to-serve frames it may send) within H2ResetWindow before its
	// connection is closed (rapid reset, CVE-2023-44487; MadeYouReset,
	// CVE-2025-8671; CONTINUATION floods, CVE-2024-27316). 0 turns the
	// check off, and h2guard's internal control-frame budget with it.
	// The same numbers bound, each apart, an HTTP/3 connection's requests
	// stopped by its client (STOP_SENDING), those pqedge refused itself
	// and its streams that never became a request.
	H2Resets      *int     `toml:"h2_resets"`
	H2ResetWindow Duration `toml:"h2_reset_window"`
	// HeapFloor is the heap size, e.g. "64MiB", below which Go's garbage
	// collector does not start a collection (internal/heapfloor); "0",
	// the default, leaves the collector to GOGC alone.
	HeapFloor Size `toml:"heap_floor"`
}

// Listener kinds.
const (
	KindHTTPS  = "https"
	KindStream = "stream"
)

// Listener is a socket pqedge accepts TLS connections on.
type Listener struct {
	Name    string `toml:"name"`
	Address string `toml:"address"` // host:port
	// Kind is "https" (TLS, HTTP/2 and HTTP/1.1, routed by site and path) or
	// "stream" (TLS terminated, bytes spliced to Pool).
	Kind string `toml:"kind"`
	// Stream listeners only.
	Site          string `toml:"site"`           // the site whose certificates and policy apply
	Pool          string `toml:"pool"`           // where the bytes go
	ProxyProtocol string `toml:"proxy_protocol"` // "", "v1" or "v2"
	// ALPN lists the application protocols a stream listener negotiates
	// (default DefaultStreamALPN, "dot"); an empty list negotiates none. A
	// client offering only protocols outside the list is refused
	// (no_application_protocol, RFC 7301 section 3.2).
	ALPN []string `toml:"alpn"`

	// StrictSNI refuses handshakes whose server name no site of the
	// listener serves, instead of answering them with the listener's first
	// (default) site. Clients sending no SNI still get the default site.
	StrictSNI bool `toml:"strict_sni"`

	// HTTP3 also serves HTTP/3 (QUIC, RFC 9114) on UDP at the same address,
	// with the same sites, policies, certificates and routes, and makes the
	// TCP side's responses advertise it (Alt-Svc, RFC 7838). https only.
	HTTP3 bool `toml:"http3"`

	// ProxyProtocolIn lists the networks of the load balancers in front of
	// the listener (CIDR prefixes). A connection from one of them must
	// start with a PROXY protocol header (v1 or v2), and the client address
	// it carries is the connection's address everywhere (logs,
	// X-Forwarded-For, pq_rule, limits); a connection from anywhere else
	// must not send one. Empty: no PROXY protocol on this listener.
	ProxyProtocolIn []string `toml:"proxy_protocol_in"`

	// ReusePort opens the socket with SO_REUSEPORT, so that several pqedge
	// processes (of the same user) can listen on the same address and
	// port: the kernel spreads new connections over them by a hash of the
	// connection's addresses, as ECMP spreads an anycast address over
	// nodes. It applies when the socket is opened (at start, or when a
	// reload changes the address). Linux only.
	ReusePort bool `toml:"reuse_port"`
}

// Certificate modes of a site.
const (
	CertsLocal = "local"
	CertsFiles = "files"
	CertsACME  = "acme"
)

// Site is a set of server names with their certificates, TLS policy and routes.
type Site struct {
	Name        string   `toml:"name"`
	ServerNames []string `toml:"server_names"`
	Listeners   []string `toml:"listeners"` // https listeners serving this site
	// Certs is "local" (a development CA in the data directory), "files"
	// (Cert entries) or "acme" (classical certificates from ACME; Cert may
	// then hold one ML-DSA pair for pq_certs).
	Certs string     `toml:"certs"`
	Cert  []CertPair `toml:"cert"`
	ACME  ACME       `toml:"acme"`
	// PQCerts says when the ML-DSA chain is served: "off" (default),
	// "trusted" or "always".
	PQCerts string `toml:"pq_certs"`
	// PQRoot is the PEM root the ML-DSA chain of a "files" site chains up
	// to; pq_certs = "trusted" recognises clients that name it (or an
	// intermediate of the chain) in certificate_authorities.
	PQRoot string `toml:"pq_root"`
	// PQRule overrides PQCerts for clients from given networks, e.g. an
	// office whose machines trust the PQ root but whose browsers do not send
	// certificate_authorities.
	PQRule  []PQRule `toml:"pq_rule"`
	TLS     TLS      `toml:"tls"`
	Route   []Route  `toml:"route"`
	Headers Headers  `toml:"headers"`
	// AllowUnderscoreHeaders passes request header names containing "_"
	// upstream. By default they are dropped (as nginx does): CGI, WSGI,
	// PHP and Rack fold "_" and "-" into one variable, so "X_Forwarded_For"
	// would overwrite what pqedge sets in X-Forwarded-For. Names that fold
	// into a header pqedge sets are dropped either way.
	AllowUnderscoreHeaders bool `toml:"allow_underscore_headers"`
}

// PQRule is one client rule: clients from Network get Mode.
type PQRule struct {
	Network string `toml:"network"` // CIDR, e.g. "10.0.0.0/8"
	Mode    string `toml:"mode"`    // off, trusted or always
}

// CertPair is a certificate chain file and its key file.
type CertPair struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// ACME configures certificates from an ACME CA. Sites with the same
// settings share one ACME account and one renewal loop.
type ACME struct {
	Email     string `toml:"email"`
	Directory string `toml:"directory"` // default: Let's Encrypt production
	// HTTPPort opens a plain-HTTP listener on this port (on the host of the
	// site's first https listener) that answers HTTP-01 challenges and
	// redirects everything else to https; 0: no HTTP-01.
	HTTPPort int `toml:"http_port"`
	// TLSALPN answers TLS-ALPN-01 challenges on the site's https
	// listeners; default true. A CA only validates on port 443.
	TLSALPN *bool `toml:"tls_alpn"`
	// CARoots is a PEM file of roots trusted for the ACME server's own TLS
	// certificate (a private CA); default: the system roots.
	CARoots string `toml:"ca_roots"`
}

// TLSALPNEnabled reports whether TLS-ALPN-01 is answered.
func (a ACME) TLSALPNEnabled() bool { return a.TLSALPN == nil || *a.TLSALPN }

// TLS is a site's TLS policy.
type TLS struct {
	// Policy is a preset name: pq-preferred (default), pq-only or pq-warn.
	Policy string `toml:"policy"`
	// Groups replaces the preset's groups with an explicit list of IANA names.
	Groups []string `toml:"groups"`
	// AllowClassicalOnly must be true for a Groups list with no
	// post-quantum group: losing post-quantum protection silently is the
	// mistake this key exists to prevent.
	AllowClassicalOnly bool   `toml:"allow_classical_only"`
	MinVersion         string `toml:"min_version"` // "1.2" or "1.3"
	// MLDSASigner is who makes the site's ML-DSA signatures: "circl"
	// (default, several times faster) or "stdlib" (crypto/mldsa).
	MLDSASigner string `toml:"mldsa_signer"`
	// SessionTickets turns TLS session resumption on (default true).
	SessionTickets *bool `toml:"session_tickets"`
	// TicketScope names the set of sites that resume each other's sessions:
	// a ticket issued by one site resumes only on sites with the same
	// scope. Default: the site's own name, so sites are isolated.
	TicketScope string `toml:"ticket_scope"`
}

// Route sends requests whose path starts with Path to a pool or a built-in
// handler.
type Route struct {
	Path    string `toml:"path"`
	Pool    string `toml:"pool"`
	Handler string `toml:"handler"`
	// AllowEncodedSlashes lets paths containing %2F or %5C through to this
	// route (forwarded still encoded); by default they are refused with
	// 400, because an upstream that decodes them would see a path no route
	// allowed.
	AllowEncodedSlashes bool `toml:"allow_encoded_slashes"`
	// MergeSlashes false forwards a path's empty segments ("//") to this
	// route's pool as sent; by default (true, as nginx's merge_slashes)
	// they are merged into one "/" before routing and forwarding. Routes
	// match the merged path either way.
	MergeSlashes *bool `toml:"merge_slashes"`
}

// Built-in handlers a route may name.
var builtinHandlers = []string{"inspect", "compat"}

// Headers names the request headers that carry the handshake facts to
// upstreams; empty keeps the default name.
type Headers struct {
	Group     string `toml:"group"`
	PQ        string `toml:"pq"`
	Signature string `toml:"signature"`
	Version   string `toml:"version"`
	Cipher    string `toml:"cipher"`
}

// Pool is a set of upstream addresses.
type Pool struct {
	Name string `toml:"name"`
	// Upstreams are host:port or unix:/path addresses, or https://host:port
	// origins reached over TLS; a pool's upstreams are all https:// or
	// none.
	Upstreams []string `toml:"upstreams"`
	// Balance picks the upstream of each new request or stream:
	// round_robin (default), least_conn, random_two, ip_hash or first.
	Balance string `toml:"balance"`
	Health  Health `toml:"health"`
	// IdleConns is how many keep-alive connections to each upstream stay
	// open while idle, for the next requests; 0 means
	// DefaultPoolIdleConns.
	IdleConns int `toml:"idle_conns"`

	// TLS to https:// upstreams (the origin leg). TLSCA is a PEM file of
	// the roots that verify the origins' certificates, in place of the
	// system roots; TLSServerName the name sent in SNI and checked in
	// their certificates, in place of each upstream's host; TLSClientCert
	// and TLSClientKey a client certificate (classical or ML-DSA) for
	// origins that ask for one.
	TLSCA         string `toml:"tls_ca"`
	TLSServerName string `toml:"tls_server_name"`
	TLSClientCert string `toml:"tls_client_cert"`
	TLSClientKey  string `toml:"tls_client_key"`
	// PQRequired refuses origins that will not negotiate a hybrid
	// post-quantum group: only the hybrids are offered, over TLS 1.3.
	PQRequired bool `toml:"pq_required"`
}

// HTTPS reports whether the pool's upstreams are https:// origins.
func (p Pool) HTTPS() bool {
	return len(p.Upstreams) > 0 && slices.ContainsFunc(p.Upstreams, isHTTPSUpstream)
}

// isHTTPSUpstream reports an https:// address (the scheme matched without
// regard to case, as the proxy does).
func isHTTPSUpstream(a string) bool {
	return len(a) >= len("https://") && strings.EqualFold(a[:len("https://")], "https://")
}

// Health configures active and passive health checks of a pool.
type Health struct {
	Interval Duration `toml:"interval"` // 0 disables active checks
	Path     string   `toml:"path"`     // HTTP path; empty: a TCP connect
	Timeout  Duration `toml:"timeout"`
	Healthy  int      `toml:"healthy_threshold"`
	Unhealth int      `toml:"unhealthy_threshold"`
	// EjectAfter consecutive data-path failures take an upstream out for
	// EjectFor.
	EjectAfter int      `toml:"eject_after"`
	EjectFor   Duration `toml:"eject_for"`
}

// Duration is a time.Duration written as a string ("10s", "1m30s"). It is
// kept as text while decoding and checked by the validator, which knows the
// key's line (the TOML decoder loses it for values it hands to
// TextUnmarshalers).
type Duration string

// Value returns the duration; 0 when it is unset. Configs from Parse are
// effective (defaults.go filled every timeout in) and validated, so their
// durations parse.
func (d Duration) Value() time.Duration {
	v, _ := time.ParseDuration(string(d))
	return v
}

// AccessLog reports whether every request is logged.
func (l Log) AccessLog() bool { return l.Access == nil || *l.Access }

// TicketsOn reports whether the site resumes sessions.
func (t TLS) TicketsOn() bool { return t.SessionTickets == nil || *t.SessionTickets }

// Compat configures the compatibility matrix: one extra https listener per
// combination of a group and a certificate algorithm, each restricted to
// that one group and that one certificate, so a visitor's browser shows
// which combinations it can use. The page itself is a route with
// handler = "compat".
type Compat struct {
	// Site names the [[site]] whose server names the combination
	// certificates carry; they are issued by its local development CA, so
	// the site must use certs = "local".
	Site string `toml:"site"`
	// Host is the address the combination listeners bind; default the host
	// of the first https listener.
	Host string `toml:"host"`
	// BasePort is the port of the first combination; the others follow,
	// groups outer, certs inner. 0 gives each a free port (for tests).
	BasePort int `toml:"base_port"`
	// Groups are IANA group names, one combination each.
	Groups []string `toml:"groups"`
	// Certs are leaf key algorithms: ecdsa-p256, ecdsa-p384, ed25519,
	// mldsa44, mldsa65, mldsa87.
	Certs []string `toml:"certs"`
}

// Combinations lists the compat combinations in port order.
func (c *Compat) Combinations() []CompatCombination {
	var out []CompatCombination
	for _, g := range c.Groups {
		for _, a := range c.Certs {
			out = append(out, CompatCombination{Group: g, Cert: a})
		}
	}
	return out
}

// CompatCombination is one group and one certificate algorithm.
type CompatCombination struct {
	Group string
	Cert  string
}
