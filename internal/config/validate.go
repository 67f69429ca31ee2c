package config

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// validator collects every problem in one pass, so an operator sees them all
// at once instead of fixing one per run.
type validator struct {
	cfg      *Config
	pos      positions
	dir      string
	problems Problems
	warnings Problems
}

// warnf records a likely mistake that leaves the config valid.
func (v *validator) warnf(key, hint, format string, args ...any) {
	v.warnings = append(v.warnings, Problem{
		File: v.cfg.File, Line: v.pos.line(key), Key: key,
		Msg: fmt.Sprintf(format, args...), Hint: hint, Warning: true,
	})
}

func (v *validator) addf(key, hint, format string, args ...any) {
	v.problems = append(v.problems, Problem{
		File: v.cfg.File, Line: v.pos.line(key), Key: key,
		Msg: fmt.Sprintf(format, args...), Hint: hint,
	})
}

func (v *validator) validate() {
	v.checkDurations()
	v.checkLimits()
	v.checkLog()
	v.checkListeners()
	v.checkPools()
	v.checkSites()
	v.checkCompat()
	v.checkAnycast()
	v.checkFleet()
}

func (v *validator) checkLog() {
	switch v.cfg.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		v.addf("log.level", "use debug, info, warn or error", "unknown log level %q", v.cfg.Log.Level)
	}
	switch v.cfg.Log.Format {
	case "", "text", "json":
	default:
		v.addf("log.format", "use text or json", "unknown log format %q", v.cfg.Log.Format)
	}
}

// boundAddress is a listening address with where it was configured.
type boundAddress struct {
	key  string
	addr netip.AddrPort // zero Addr means every address
	port int
}

func (v *validator) checkListeners() {
	var bound []boundAddress
	bind := func(key, address string) {
		b, ok := v.parseListenAddress(key, address)
		if !ok || b.port == 0 {
			return // port 0 picks a free port: never overlaps
		}
		for _, o := range bound {
			if o.port == b.port && (!o.addr.Addr().IsValid() || !b.addr.Addr().IsValid() || o.addr.Addr() == b.addr.Addr()) {
				v.addf(key, "give each listener its own port or address", "address %q overlaps %s (line %d)", address, displayKey(o.key), v.pos.line(o.key))
				return
			}
		}
		bound = append(bound, b)
	}
	if v.cfg.Admin.Listen != "" {
		bind("admin.listen", v.cfg.Admin.Listen)
	}
	names := map[string]bool{}
	if len(v.cfg.Listener) == 0 {
		v.addf("listener", "add a [[listener]] with name, address and kind", "no listener configured")
	}
	for i, l := range v.cfg.Listener {
		key := fmt.Sprintf("listener.%d", i)
		v.checkName(key, "listener", "https", l.Name, names)
		if l.Address == "" {
			v.addf(key, "e.g. address = \"0.0.0.0:443\"", "listener %q has no address", l.Name)
		} else {
			bind(key+".address", l.Address)
		}
		switch l.Kind {
		case KindHTTPS, "":
			for _, k := range []struct{ name, val string }{{"site", l.Site}, {"pool", l.Pool}, {"proxy_protocol", l.ProxyProtocol}} {
				if k.val != "" {
					v.addf(key+"."+k.name, "only kind = \"stream\" listeners take it; https listeners route by [[site]]", "%s is not used by an https listener", k.name)
				}
			}
			if l.ALPN != nil {
				v.addf(key+".alpn", "https listeners negotiate h2 and http/1.1; alpn is for kind = \"stream\"", "alpn is not used by an https listener")
			}
		case KindStream:
			if l.HTTP3 {
				v.addf(key+".http3", "serve HTTP/3 from a kind = \"https\" listener; a stream listener relays TLS over TCP", "http3 is not used by a stream listener")
			}
			if l.Pool == "" {
				v.addf(key, "set pool = \"NAME\" of a [[pool]]", "stream listener %q has no pool", l.Name)
			} else if !v.hasPool(l.Pool) {
				v.addf(key+".pool", "define a [[pool]] with that name", "stream listener %q names unknown pool %q", l.Name, l.Pool)
			} else if v.poolHTTPS(l.Pool) {
				v.addf(key+".pool", "a stream relays raw bytes: give it a pool of host:port or unix:/path upstreams",
					"stream listener %q names pool %q, whose upstreams are https://", l.Name, l.Pool)
			}
			if l.Site == "" {
				v.addf(key, "set site = \"NAME\" of the [[site]] whose certificates it serves", "stream listener %q has no site", l.Name)
			} else if !v.hasSite(l.Site) {
				v.addf(key+".site", "define a [[site]] with that name", "stream listener %q names unknown site %q", l.Name, l.Site)
			}
			switch l.ProxyProtocol {
			case "", "v1", "v2":
			default:
				v.addf(key+".proxy_protocol", "use \"v1\", \"v2\" or leave it out", "unknown PROXY protocol version %q", l.ProxyProtocol)
			}
			v.checkStreamALPN(key+".alpn", l.ALPN)
		default:
			v.addf(key+".kind", "use \"https\" or \"stream\"", "unknown listener kind %q", l.Kind)
		}
		v.checkProxyProtocolIn(key+".proxy_protocol_in", l.ProxyProtocolIn)
		if l.HTTP3 && len(l.ProxyProtocolIn) > 0 {
			// QUIC has no PROXY header: UDP balancers must forward the
			// client's own address (direct server return, transparent
			// forwarding) for logs, pq_rule and limits to see it.
			v.warnf(key+".http3", "have the balancer forward UDP with the client's source address, or leave http3 off on this listener",
				"proxy_protocol_in applies to TCP only: HTTP/3 clients arriving through the balancers show the balancer's address")
		}
		v.checkReusePort(key, l)
	}
}

// checkReusePort refuses reuse_port on port 0: each process would get a
// port of its own, so nothing would be shared.
func (v *validator) checkReusePort(key string, l Listener) {
	if !l.ReusePort {
		return
	}
	if _, port, err := net.SplitHostPort(l.Address); err == nil && port == "0" {
		v.addf(key+".reuse_port", "give the listener a fixed port that every process sharing it names", "reuse_port needs a fixed port: with port 0 every process listens on a port of its own")
	}
}

// checkProxyProtocolIn checks the trusted networks of a listener's inbound
// PROXY protocol: CIDR prefixes, none repeated. A prefix with host bits set
// ("10.0.0.1/8") is refused: it reads as one host but trusts a network.
func (v *validator) checkProxyProtocolIn(key string, nets []string) {
	if nets != nil && len(nets) == 0 {
		v.addf(key, "list the load balancers' networks, e.g. [\"10.0.0.0/24\"], or leave the key out", "proxy_protocol_in is empty: no source may send a PROXY header")
	}
	seen := map[netip.Prefix]bool{}
	for _, n := range nets {
		p, err := netip.ParsePrefix(n)
		switch {
		case err != nil:
			v.addf(key, "write CIDR prefixes, e.g. \"10.0.0.0/24\" or \"192.0.2.7/32\"", "bad network %q", n)
		case p != p.Masked():
			v.addf(key, fmt.Sprintf("write %q for the network, or %s/%d for one host", p.Masked().String(), p.Addr(), p.Addr().BitLen()), "network %q has host bits set", n)
		case p.Addr().Is4In6():
			// A peer's address is compared in IPv4 form (dual-stack
			// sockets report IPv4 clients as ::ffff:a.b.c.d), so an
			// IPv4-mapped network would trust no balancer.
			hint := "write the IPv4 network"
			if p.Bits() >= 96 {
				hint = fmt.Sprintf("write %q", netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).String())
			}
			v.addf(key, hint, "network %q is IPv4-mapped IPv6 and matches no client", n)
		case seen[p]:
			v.addf(key, "list each network once", "network %q listed twice", n)
		}
		seen[p] = true
	}
}

// checkStreamALPN checks a stream listener's ALPN list: protocol ids of 1 to
// 255 bytes (RFC 7301 section 3.1), none repeated, and none an HTTP one,
// since a stream carries raw bytes to its pool.
func (v *validator) checkStreamALPN(key string, protos []string) {
	seen := map[string]bool{}
	for _, p := range protos {
		switch {
		case p == "" || len(p) > 255:
			v.addf(key, "ALPN ids are 1 to 255 bytes, e.g. \"dot\"", "bad ALPN id %q", p)
		case p == "h2" || p == "http/1.1" || p == "http/1.0" || p == "h3" || p == "h2c":
			v.addf(key, "a stream listener relays raw bytes; serve HTTP on a kind = \"https\" listener", "stream listener must not negotiate %q", p)
		case seen[p]:
			v.addf(key, "list each protocol once", "ALPN id %q listed twice", p)
		}
		seen[p] = true
	}
}

func (v *validator) parseListenAddress(key, address string) (boundAddress, bool) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		v.addf(key, "write host:port, e.g. \"127.0.0.1:8443\" or \"[::]:443\"", "bad address %q", address)
		return boundAddress{}, false
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		v.addf(key, "ports are 0 to 65535", "bad port in address %q", address)
		return boundAddress{}, false
	}
	b := boundAddress{key: key, port: port}
	switch host {
	case "", "0.0.0.0", "::":
		return b, true
	case "localhost":
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		v.addf(key, "listen on an IP address, not a host name", "bad host %q in address %q", host, address)
		return boundAddress{}, false
	}
	b.addr = netip.AddrPortFrom(ip.Unmap(), uint16(port))
	return b, true
}

func (v *validator) hasPool(name string) bool {
	return slices.ContainsFunc(v.cfg.Pool, func(p Pool) bool { return p.Name == name })
}

// poolHTTPS reports whether the pool named name has https:// upstreams.
func (v *validator) poolHTTPS(name string) bool {
	i := slices.IndexFunc(v.cfg.Pool, func(p Pool) bool { return p.Name == name })
	return i >= 0 && v.cfg.Pool[i].HTTPS()
}

func (v *validator) hasSite(name string) bool {
	return slices.ContainsFunc(v.cfg.Site, func(s Site) bool { return s.Name == name })
}

// checkName reports a missing or repeated name of a listener, pool or
// site, and one holding a control character (Unicode Cc) or an invisible
// format character (Cf: a zero-width space, a bidi override), which
// would look like another name, or none, in logs, metrics and /readyz.
func (v *validator) checkName(key, kind, example, name string, seen map[string]bool) {
	bad := strings.IndexFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) })
	switch {
	case name == "":
		v.addf(key, fmt.Sprintf("name every %s, e.g. name = %q", kind, example), "%s has no name", kind)
	case bad >= 0:
		r, _ := utf8.DecodeRuneInString(name[bad:])
		v.addf(key+".name", "use visible characters: letters, digits, '-', '_', '.'", "%s name %q holds a control or invisible character (%U)", kind, name, r)
	case seen[name]:
		v.addf(key+".name", kind+" names must be unique", "duplicate %s name %q", kind, name)
	}
	seen[name] = true
}

func (v *validator) checkPools() {
	ready := map[string]bool{}
	for _, name := range v.cfg.Admin.ReadyPools {
		switch {
		case !v.hasPool(name):
			v.addf("admin.ready_pools", "name a [[pool]] defined in this file", "ready_pools names unknown pool %q", name)
		case ready[name]:
			v.addf("admin.ready_pools", "list each pool once", "ready_pools lists pool %q twice", name)
		}
		ready[name] = true
	}
	if len(v.cfg.Admin.ReadyPools) > 0 && v.cfg.Admin.Listen == "" {
		v.addf("admin.ready_pools", "set admin.listen, where /readyz is served", "ready_pools without an admin listener")
	}
	names := map[string]bool{}
	for i, p := range v.cfg.Pool {
		key := fmt.Sprintf("pool.%d", i)
		v.checkName(key, "pool", "app", p.Name, names)
		if len(p.Upstreams) == 0 {
			v.addf(key, "e.g. upstreams = [\"127.0.0.1:3000\"]", "pool %q has no upstreams", p.Name)
		}
		for _, u := range p.Upstreams {
			if err := proxy.CheckUpstream(u); err != nil {
				v.addf(key+".upstreams", "", "pool %q: %v", p.Name, err)
			}
		}
		v.checkPoolTLS(key, p)
		if p.Balance != "" {
			if _, err := proxy.ParsePolicy(p.Balance); err != nil {
				v.addf(key+".balance", "use "+strings.Join(proxy.PolicyNames(), ", "), "pool %q: %v", p.Name, err)
			}
		}
		if p.IdleConns < 0 {
			v.addf(key+".idle_conns", fmt.Sprintf("use a positive count, or leave it out for the default (%d)", DefaultPoolIdleConns),
				"pool %q: idle_conns must not be negative", p.Name)
		}
		if p.Health.Path != "" && !strings.HasPrefix(p.Health.Path, "/") {
			v.addf(key+".health.path", "e.g. path = \"/healthz\"", "health check path %q must start with /", p.Health.Path)
		}
		for _, n := range []struct {
			name string
			val  int
		}{{"healthy_threshold", p.Health.Healthy}, {"unhealthy_threshold", p.Health.Unhealth}, {"eject_after", p.Health.EjectAfter}} {
			if n.val < 0 {
				v.addf(key+".health."+n.name, "use a positive count, or leave it out for the default", "%s must not be negative", n.name)
			}
		}
	}
}

func (v *validator) checkSites() {
	names := map[string]bool{}
	serverNames := map[string]string{}
	if len(v.cfg.Site) == 0 {
		v.addf("site", "add a [[site]] with server_names and a route", "no site configured")
	}
	for i := range v.cfg.Site {
		s := &v.cfg.Site[i]
		key := fmt.Sprintf("site.%d", i)
		v.checkName(key, "site", "www", s.Name, names)
		if len(s.ServerNames) == 0 {
			v.addf(key, "e.g. server_names = [\"example.com\"]", "site %q has no server_names", s.Name)
		}
		for _, n := range s.ServerNames {
			if err := checkServerName(n); err != nil {
				v.addf(key+".server_names", "use DNS names, *.wildcards or IP addresses", "%v", err)
			} else if other, dup := serverNames[strings.ToLower(n)]; dup {
				v.addf(key+".server_names", "a name belongs to one site", "server name %q is already used by site %q", n, other)
			}
			serverNames[strings.ToLower(n)] = s.Name
		}
		for _, l := range s.Listeners {
			idx := slices.IndexFunc(v.cfg.Listener, func(x Listener) bool { return x.Name == l })
			switch {
			case idx < 0:
				v.addf(key+".listeners", "name a [[listener]] defined in this file", "site %q names unknown listener %q", s.Name, l)
			case v.cfg.Listener[idx].Kind == KindStream:
				v.addf(key+".listeners", "stream listeners name their site themselves (site = ...)", "site %q names stream listener %q", s.Name, l)
			}
		}
		v.checkCerts(key, s)
		v.checkHeaders(key+".headers", s.Headers)
		v.checkTLS(key+".tls", s.TLS)
		v.checkRoutes(key, s)
	}
}

// checkServerName is the rule certificates' names follow too: one home,
// so config check and certs issue accept the same names.
func checkServerName(n string) error { return certs.CheckName(n) }

func (v *validator) checkCerts(key string, s *Site) {
	if s.Certs != CertsFiles && s.Certs != CertsACME && len(s.Cert) > 0 {
		v.addf(key+".cert", "set certs = \"files\" to use [[site.cert]] files", "site %q has cert files but certs = %q", s.Name, s.Certs)
	}
	if s.Certs != CertsACME && s.ACME != (ACME{}) {
		mode := s.Certs
		if mode == "" {
			mode = CertsLocal
		}
		v.addf(key+".acme", "set certs = \"acme\", or remove the [site.acme] table", "site %q has ACME settings but certs = %q", s.Name, mode)
	}
	for j, c := range s.Cert {
		ck := fmt.Sprintf("%s.cert.%d", key, j)
		if c.Cert == "" || c.Key == "" {
			v.addf(ck, "set both cert and key", "certificate %d of site %q needs cert and key", j+1, s.Name)
		}
	}
	switch s.Certs {
	case "", CertsLocal:
	case CertsFiles:
		if len(s.Cert) == 0 {
			v.addf(key, "add [[site.cert]] with cert and key paths", "site %q has certs = \"files\" but no [[site.cert]]", s.Name)
		}
	case CertsACME:
		v.checkACME(key, s)
	default:
		v.addf(key+".certs", "use \"local\", \"files\" or \"acme\"", "unknown certificate mode %q", s.Certs)
	}
	if _, err := certs.ParsePQMode(s.PQCerts); err != nil {
		v.addf(key+".pq_certs", "", "%v", err)
	}
	if s.PQRoot != "" && s.Certs != CertsFiles && s.Certs != CertsACME {
		v.addf(key+".pq_root", "the local CA's root is known already; pq_root is for certs = \"files\" or \"acme\"", "pq_root is only used with certs = \"files\" or \"acme\"")
	}
	for j, r := range s.PQRule {
		rk := fmt.Sprintf("%s.pq_rule.%d", key, j)
		if _, err := netip.ParsePrefix(r.Network); err != nil {
			v.addf(rk+".network", "write a CIDR prefix, e.g. \"10.0.0.0/8\" or \"2001:db8::/32\"", "bad network %q", r.Network)
		}
		if _, err := certs.ParsePQMode(r.Mode); err != nil || r.Mode == "" {
			v.addf(rk+".mode", "", "unknown pq_rule mode %q (known: off, trusted, always)", r.Mode)
		}
	}
}

func (v *validator) checkTLS(key string, t TLS) {
	_, problems := pqtls.CheckPolicy(t.Policy, t.Groups, t.AllowClassicalOnly, t.MinVersion)
	for _, p := range problems {
		v.addf(key+"."+p.Field, p.Hint, "%s", p.Msg)
	}
	if _, err := certs.ParseSignerKind(t.MLDSASigner); err != nil {
		v.addf(key+".mldsa_signer", "", "%v", err)
	}
}

func (v *validator) checkRoutes(key string, s *Site) {
	// A site that only stream listeners serve needs no route: its bytes go
	// to the listener's pool. Without a listeners list it also answers on
	// the https listeners, with 404 for every path.
	streamOnly := len(s.Listeners) == 0 && slices.ContainsFunc(v.cfg.Listener, func(l Listener) bool {
		return l.Kind == KindStream && l.Site == s.Name
	})
	if len(s.Route) == 0 && !streamOnly {
		v.addf(key, "add [[site.route]] with path and pool or handler", "site %q has no routes", s.Name)
	}
	paths := map[string]bool{}
	for j, r := range s.Route {
		rk := fmt.Sprintf("%s.route.%d", key, j)
		if !strings.HasPrefix(r.Path, "/") {
			v.addf(rk+".path", "e.g. path = \"/\" or \"/api/\"", "route path %q must start with /", r.Path)
		} else if why, hint := unmatchablePath(r.Path); why != "" {
			v.addf(rk+".path", hint, "route path %q never matches: %s", r.Path, why)
		}
		if paths[r.Path] {
			v.addf(rk+".path", "each path prefix may appear once per site", "duplicate route path %q", r.Path)
		}
		paths[r.Path] = true
		switch {
		case r.Pool != "" && r.Handler != "":
			v.addf(rk, "keep one of them", "route %q has both pool and handler", r.Path)
		case r.Pool == "" && r.Handler == "":
			v.addf(rk, "set pool = \"NAME\" or handler = \"inspect\"", "route %q has neither pool nor handler", r.Path)
		case r.Pool != "" && !v.hasPool(r.Pool):
			v.addf(rk+".pool", "define a [[pool]] with that name", "route %q names unknown pool %q", r.Path, r.Pool)
		case r.Handler != "" && !slices.Contains(builtinHandlers, r.Handler):
			v.addf(rk+".handler", "built-in handlers: "+strings.Join(builtinHandlers, ", "), "unknown handler %q", r.Handler)
		}
		if r.AllowEncodedSlashes && r.Pool == "" {
			v.addf(rk+".allow_encoded_slashes", "remove it, or route the path to a pool",
				"route %q takes allow_encoded_slashes, but only pool routes forward paths", r.Path)
		}
		if r.MergeSlashes != nil && !*r.MergeSlashes && r.Pool == "" {
			v.addf(rk+".merge_slashes", "remove it, or route the path to a pool",
				"route %q takes merge_slashes = false, but only pool routes forward paths", r.Path)
		}
	}
}

func (v *validator) checkDurations() {
	check := func(key string, d Duration) {
		if d == "" {
			return
		}
		if x, err := time.ParseDuration(string(d)); err != nil || x < 0 {
			v.addf(key, "write a number with a unit, like \"10s\" or \"1m30s\"", "invalid duration %q", string(d))
		}
	}
	t := v.cfg.Timeouts
	// A phase's timeout of 0 is no timeout to some of its users and an
	// instant one to others: net/http and the upstream dialer wait without
	// end (read_header: a slowloris; idle: connections held for ever),
	// a TLS handshake's deadline is its accept (every handshake fails),
	// quic-go takes its own default. None of that is what 0 says.
	// (timeouts.shutdown has its own check, checkShutdown; 0 is
	// withdraw_grace's default.)
	for _, d := range []struct {
		key string
		val Duration
		def time.Duration
	}{
		{"timeouts.handshake", t.Handshake, DefaultHandshakeTimeout}, {"timeouts.read_header", t.ReadHeader, DefaultReadHeaderTimeout},
		{"timeouts.idle", t.Idle, DefaultIdleTimeout}, {"timeouts.upstream_dial", t.UpstreamDial, DefaultUpstreamDialTimeout},
		{"timeouts.upstream_header", t.UpstreamHeader, DefaultUpstreamHeaderTimeout}, {"timeouts.stream_idle", t.StreamIdle, DefaultStreamIdleTimeout},
		{"timeouts.request_body", t.RequestBody, DefaultRequestBodyTimeout},
		{"timeouts.response_write", t.ResponseWrite, DefaultResponseWriteTimeout}, {"timeouts.upstream_idle", t.UpstreamIdle, DefaultUpstreamIdleTimeout},
	} {
		if x, err := time.ParseDuration(string(d.val)); err == nil && x == 0 {
			v.addf(d.key, fmt.Sprintf("give a duration longer than 0, or leave the key out for the default (%v)", d.def),
				"%s of 0 is not a timeout pqedge can keep (it would mean no limit to some parts and an instant failure to others)", d.key[len("timeouts."):])
		}
	}
	for _, d := range []struct {
		key string
		val Duration
	}{
		{"timeouts.handshake", t.Handshake}, {"timeouts.read_header", t.ReadHeader}, {"timeouts.idle", t.Idle},
		{"timeouts.upstream_dial", t.UpstreamDial}, {"timeouts.upstream_header", t.UpstreamHeader},
		{"timeouts.stream_idle", t.StreamIdle}, {"timeouts.shutdown", t.Shutdown},
		{"timeouts.request_body", t.RequestBody}, {"timeouts.response_write", t.ResponseWrite},
		{"timeouts.upstream_idle", t.UpstreamIdle}, {"timeouts.withdraw_grace", t.WithdrawGrace},
		{"timeouts.handshake_idle", t.HandshakeIdle},
		{"limits.h2_reset_window", v.cfg.Limits.H2ResetWindow},
	} {
		check(d.key, d.val)
	}
	if x, err := time.ParseDuration(string(t.HandshakeIdle)); err == nil && x >= 0 && x < MinHandshakeIdle {
		v.addf("timeouts.handshake_idle", fmt.Sprintf("make it %v or more", MinHandshakeIdle),
			"handshake_idle (%v) is shorter than TCP's minimum retransmission timeout (%v): a client whose first segment was lost would be closed as idle", x, MinHandshakeIdle)
	}
	if v.cfg.Fleet != nil {
		check("fleet.ticket_rotation", v.cfg.Fleet.TicketRotation)
	}
	for i, p := range v.cfg.Pool {
		check(fmt.Sprintf("pool.%d.health.interval", i), p.Health.Interval)
		check(fmt.Sprintf("pool.%d.health.timeout", i), p.Health.Timeout)
		check(fmt.Sprintf("pool.%d.health.eject_for", i), p.Health.EjectFor)
	}
	if a := v.cfg.Anycast; a != nil {
		check("anycast.interval", a.Interval)
		check("anycast.hold_down", a.HoldDown)
	}
	v.checkShutdown()
}

// checkShutdown checks that the withdraw grace leaves the SIGTERM drain
// some time: timeouts.shutdown counts from the signal and includes it.
// A value left out is checked at its default, and the problem is then
// reported on the key that was written.
func (v *validator) checkShutdown() {
	t := v.cfg.Timeouts
	shutdown, grace := DefaultShutdownTimeout, v.cfg.defaultWithdrawGrace()
	for _, d := range []struct {
		val Duration
		dst *time.Duration
	}{{t.Shutdown, &shutdown}, {t.WithdrawGrace, &grace}} {
		if d.val == "" {
			continue
		}
		x, err := time.ParseDuration(string(d.val))
		if err != nil || x < 0 {
			return // reported as an invalid duration
		}
		*d.dst = x
	}
	if grace < shutdown {
		return
	}
	if t.WithdrawGrace == "" {
		which := "the default"
		if v.cfg.Anycast != nil {
			which = "the default with [anycast]"
		}
		v.addf("timeouts.shutdown", "make it longer than the withdraw grace, or set a shorter timeouts.withdraw_grace",
			"timeouts.shutdown (%v) leaves no time to drain after timeouts.withdraw_grace (%v, %s)", shutdown, grace, which)
		return
	}
	v.addf("timeouts.withdraw_grace", fmt.Sprintf("make it shorter than timeouts.shutdown (%v), which counts from SIGTERM and includes it", shutdown),
		"withdraw_grace (%v) leaves no time to drain within timeouts.shutdown (%v)", grace, shutdown)
}

// checkACME checks a site with certs = "acme". The ACME certificate is the
// site's classical chain; [[site.cert]] may add the ML-DSA one (whether a
// pair is ML-DSA is only known once its key is read, by the server).
func (v *validator) checkACME(key string, s *Site) {
	a := s.ACME
	if a.Email == "" {
		v.addf(key+".certs", "set acme.email: the CA sends expiry warnings there", "site %q uses ACME but has no email", s.Name)
	}
	if a.Directory != "" {
		if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
			v.addf(key+".acme.directory", "use the CA's https directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory",
				"bad ACME directory URL %q", a.Directory)
		}
	}
	if a.HTTPPort < 0 || a.HTTPPort > 65535 {
		v.addf(key+".acme.http_port", "use 80, or leave it out for TLS-ALPN-01 only", "bad port %d", a.HTTPPort)
	} else if a.HTTPPort > 0 {
		for i, l := range v.cfg.Listener {
			if _, port, err := net.SplitHostPort(l.Address); err == nil && port == strconv.Itoa(a.HTTPPort) {
				v.addf(key+".acme.http_port", "HTTP-01 needs a plain-HTTP port of its own, usually 80",
					"acme.http_port %d is the port of listener %q (line %d)", a.HTTPPort, l.Name, v.pos.line(fmt.Sprintf("listener.%d.address", i)))
			}
		}
	}
	if a.HTTPPort == 0 && !a.TLSALPNEnabled() {
		v.addf(key+".acme.tls_alpn", "set http_port = 80 for HTTP-01, or keep tls_alpn on",
			"site %q turns off TLS-ALPN-01 and has no http_port: no challenge is left to prove control of its names", s.Name)
	}
	for _, n := range s.ServerNames {
		if strings.HasPrefix(n, "*.") {
			v.addf(key+".server_names", "list the names; wildcards need the DNS-01 challenge, which pqedge does not support",
				"ACME site %q cannot have wildcard name %q", s.Name, n)
		}
	}
	if len(s.Cert) > 1 {
		v.addf(key+".cert.1", "an ACME site takes one [[site.cert]], its ML-DSA pair; the ACME certificate is the classical one",
			"site %q has %d [[site.cert]] entries", s.Name, len(s.Cert))
	}
}

// checkHeaders checks the names of the headers that carry handshake facts
// upstream: each must be a valid field name (RFC 9110 Section 5.1) and
// distinct, or upstreams would get a broken or ambiguous request.
func (v *validator) checkHeaders(key string, h Headers) {
	seen := map[string]string{}
	for _, f := range []struct{ name, val string }{
		{"group", h.Group}, {"pq", h.PQ}, {"signature", h.Signature}, {"version", h.Version}, {"cipher", h.Cipher},
	} {
		if f.val == "" {
			continue
		}
		if !httpguts.ValidHeaderFieldName(f.val) {
			v.addf(key+"."+f.name, "use letters, digits and dashes, e.g. \"X-TLS-Group\"", "%q is not a valid header name", f.val)
			continue
		}
		canon := http.CanonicalHeaderKey(f.val)
		if other, dup := seen[canon]; dup {
			v.addf(key+"."+f.name, "give each fact its own header", "header %q is already used for %s", f.val, other)
		}
		seen[canon] = f.name
	}
}

// unmatchablePath says why a route path can never match a request, and
// what to write instead, or "" when it can. Routes match the request path
// after proxy.NormalizePath: empty segments merged, dot segments removed
// (RFC 3986 Section 5.2.4), every escape decoded, no query or fragment, so a prefix
// written with any of those matches nothing and its requests silently go
// to a shorter route.
func unmatchablePath(p string) (why, hint string) {
	segs := strings.Split(p, "/")
	for _, seg := range segs[:len(segs)-1] { // a last "." or ".." is a prefix of a longer segment
		if seg == "." || seg == ".." {
			return "request paths have their dot segments removed before routing", "write the path the segments resolve to"
		}
	}
	if strings.Contains(p, "//") {
		return "request paths have their empty segments merged (\"//\" read as \"/\") before routing", "write it with single slashes"
	}
	if strings.ContainsAny(p, "?#") {
		return "routes match the path alone, without query or fragment", "remove everything from the \"?\" or \"#\""
	}
	for i := 0; i+2 < len(p); i++ {
		if p[i] == '%' && isHex(p[i+1]) && isHex(p[i+2]) {
			if d, err := url.PathUnescape(p); err == nil {
				return "routes match the decoded path", fmt.Sprintf("write it decoded: path = %q", d)
			}
			return "routes match the decoded path", "write it decoded"
		}
	}
	return "", ""
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
