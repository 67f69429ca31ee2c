package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/pages"
	"github.com/pqedge/pqedge/internal/plan"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// buildGeneration turns the plan into runtime objects: pools on the health
// registry, one TLS config per listener and site, handlers, one HTTP server
// per https listener, one stream proxy per stream listener. It opens
// nothing and starts nothing.
func (t *txn) buildGeneration() (err error) {
	s, p := t.s, t.plan
	g := &generation{plan: p, srv: s, log: s.log, sites: map[string]*siteRuntime{}, listeners: map[string]*listenerRuntime{},
		bySocket: map[*socket]*listenerRuntime{}, pools: map[string]*proxy.Pool{}, acme: t.acme}
	defer func() {
		if err != nil {
			g.closePools()
		}
	}()
	for _, pp := range p.Pools {
		opts := pp.Options
		opts.Registry, opts.Logger = s.health, s.log
		if opts.Policy, err = proxy.ParsePolicy(pp.Balance); err != nil {
			return fmt.Errorf("pool %q: %w", pp.Name, err)
		}
		// The origin TLS files are read on every start and reload, with
		// the loader config check uses; one that fails refuses the config.
		var warnings certs.FileProblems
		if opts.TLS, warnings, err = config.PoolTLS(pp.Config, s.now()); err != nil {
			return fmt.Errorf("pool %q: %w", pp.Name, err)
		}
		for _, w := range warnings {
			s.log.Warn("origin TLS file", "pool", pp.Name, "key", w.Field, "warning", w.Err)
		}
		opts.OnTLSHandshake = s.metrics.upstreamHandshake
		pool, err := proxy.NewPool(pp.Name, opts)
		if err != nil {
			return err
		}
		g.pools[pp.Name] = pool
	}
	compatPage := t.compatPage()
	for _, ps := range p.Sites {
		rt := &siteRuntime{Site: ps, certs: t.certs.entries[ps.Name], acme: t.acme.manager(ps.Name), server: s, series: s.metrics.requestSeries(ps.Name)}
		proxies := map[string]*proxy.HTTPProxy{}
		for _, r := range ps.Routes {
			var h http.Handler
			switch {
			case r.Pool != "":
				// Routes of a site to one pool share one proxy, so they
				// share its keep-alive connections to the upstreams.
				hp, ok := proxies[r.Pool]
				if !ok {
					hp = proxy.NewHTTPProxy(g.pools[r.Pool], t.httpOptions(ps, p.Pool(r.Pool)))
					proxies[r.Pool] = hp
					g.proxies = append(g.proxies, hp)
				}
				h = hp
			case r.Handler == "inspect":
				h = pages.Inspect{}
			case r.Handler == "compat" && compatPage != nil:
				h = compatPage
			default:
				return fmt.Errorf("site %q: route %q has no handler", ps.Name, r.Prefix)
			}
			rt.routes = append(rt.routes, h)
		}
		g.sites[ps.Name] = rt
	}
	for _, pl := range p.Listeners {
		l, err := t.newListener(g, pl)
		if err != nil {
			return err
		}
		g.listeners[pl.SocketKey] = l
		for _, key := range []string{pl.SocketKey, pl.QUICKey} {
			if sk := t.bound.socket(key); sk != nil {
				g.bySocket[sk] = l
			}
		}
	}
	t.gen = g
	return nil
}

// httpOptions are the HTTP proxy options of a site's routes to a pool.
func (t *txn) httpOptions(ps *plan.Site, pp *plan.Pool) proxy.HTTPOptions {
	p := t.plan
	minRate := p.Limits.RequestBodyMinRate
	if minRate == 0 {
		minRate = -1 // the floor is off
	}
	return proxy.HTTPOptions{
		ResponseHeaderTimeout:  p.Timeouts.UpstreamHeader,
		UpstreamIdleTimeout:    p.Timeouts.UpstreamIdle,
		RequestBodyTimeout:     p.Timeouts.RequestBody,
		RequestBodyMinRate:     minRate,
		ResponseWriteTimeout:   p.Timeouts.ResponseWrite,
		MaxResponseHeaderBytes: p.Limits.ResponseHeader,
		// Over HTTP/1.1 h1guard and over HTTP/2 net/http refuse a request
		// over the cap first; over HTTP/3 only the proxy counts.
		MaxRequestHeaderFields:  p.Limits.RequestHeaderFields,
		MaxResponseHeaderFields: p.Limits.ResponseHeaderFields,
		MaxIdleConnsPerHost:     pp.IdleConns,
		Headers:                 ps.Headers,
		AllowUnderscoreHeaders:  ps.AllowUnderscoreHeaders,
		Logger:                  t.s.log,
	}
}

// newListener builds one listener of g: its TLS configs and its HTTP server
// or stream proxy.
func (t *txn) newListener(g *generation, pl *plan.Listener) (*listenerRuntime, error) {
	s, p := t.s, t.plan
	l := &listenerRuntime{Listener: pl, gen: g, tlsConfigs: map[*siteRuntime]*tls.Config{}, noSite: s.metrics.requestSeries("")}
	if c := pl.Compat; c != nil {
		l.combo = t.comboSite(c)
	}
	for _, ps := range pl.Resolver.Sites() {
		rt := l.site(ps)
		l.tlsConfigs[rt] = s.siteTLS(rt, pl.ALPN)
	}
	if pl.Kind == plan.KindStream {
		site := pl.Resolver.Default()
		sp, err := proxy.NewStreamProxy(g.pools[pl.Pool], proxy.StreamOptions{
			ProxyProtocol: pl.ProxyProtocol,
			IdleTimeout:   p.Timeouts.StreamIdle,
			OnStreamEnd:   s.streamEnded(pl.Name, site.Name, p.AccessLog),
			Logger:        s.log.With("listener", pl.Name),
		})
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", pl.Name, err)
		}
		l.stream = sp
		return l, nil
	}
	l.queue = newConnQueue()
	l.conns = newConnTracker()
	l.http = &http.Server{
		Handler:           &router{l: l},
		ReadHeaderTimeout: p.Timeouts.ReadHeader,
		IdleTimeout:       p.Timeouts.Idle,
		MaxHeaderBytes:    p.Limits.RequestHeader,
		// HTTP/2 header blocks beyond it get net/http's own 431, decoded
		// no further; it counts the pseudo-header fields too (RFC 9113
		// Section 8.3.1 and RFC 8441's :protocol: five), which the
		// proxy's count, and its clearer 431, leave out. HTTP/1.1 heads
		// meet h1guard's cap first.
		MaxHeaderValueCount: p.Limits.RequestHeaderFields + 5,
		// The handshake is done before the conn reaches the http.Server;
		// TLSConfig only tells it to speak HTTP/2 where ALPN chose h2.
		TLSConfig:   &tls.Config{NextProtos: []string{"h2", "http/1.1"}},
		ConnContext: connContext,
		ConnState:   l.conns.track,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if pl.QUICKey != "" {
		l.quic = t.newQUICListener(l, t.bound.port(pl.QUICKey))
	}
	return l, nil
}

// siteTLS is a site's TLS config on a listener: the site's policy and
// certificates, the listener's ALPN, the site's session tickets.
func (s *Server) siteTLS(rt *siteRuntime, alpn []string) *tls.Config {
	c := &tls.Config{GetCertificate: rt.getCertificate, NextProtos: slices.Clone(alpn)}
	rt.Policy.Apply(c)
	if rt.Tickets {
		s.tickets.Configure(c, rt.TicketScope)
	} else {
		c.SessionTicketsDisabled = true
	}
	if rt.acme != nil && rt.Config.ACME.TLSALPNEnabled() {
		c.NextProtos = append(c.NextProtos, acmeALPN)
	}
	return c
}

// comboSite is the site of one compat matrix listener: the compat site's
// names, exactly one group and one certificate, no session tickets (every
// probe is a full handshake), and the inspect JSON for the compat page as
// its only route.
func (t *txn) comboSite(c *plan.Combination) *siteRuntime {
	site := *t.plan.Compat.Site // a copy: the plan is not to be modified
	site.Policy = pqtls.Policy{Preset: pqtls.Preset{Name: "compat", Groups: []tls.CurveID{c.Group}, MinVersion: tls.VersionTLS12}, Explicit: true}
	site.Routes = []plan.Route{{Prefix: "/"}}
	site.Tickets = false
	return &siteRuntime{Site: &site, certs: t.certs.entries["compat/"+string(c.Cert)], routes: []http.Handler{pages.CORSInspect{}}, server: t.s,
		series: t.s.metrics.requestSeries(site.Name)}
}

// compatPage is the compat page handler of the plan's matrix, with each
// combination listener's bound port; nil without [compat].
func (t *txn) compatPage() *pages.Compat {
	c := t.plan.Compat
	if c == nil {
		return nil
	}
	page := &pages.Compat{Log: t.s.compatLog, Now: t.s.now}
	for _, combo := range c.Combinations {
		page.Combinations = append(page.Combinations, pages.CompatEntry{
			Listener: combo.Listener.Name, Group: combo.GroupName, Cert: string(combo.Cert),
			PQGroup: combo.PQGroup, PQCert: combo.PQCert, Port: t.bound.port(combo.Listener.SocketKey),
		})
	}
	return page
}
