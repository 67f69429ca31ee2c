package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/pqtls"
)

// The compatibility matrix: for [compat], one extra https listener per
// combination of a group and a certificate algorithm. Each offers exactly
// one group and holds exactly one certificate, so whether a browser can
// fetch its inspect JSON tells whether that browser supports the
// combination. The compat page (compat_page.go) has the browser try them
// all.

// compatSet is a generation's combination listeners.
type compatSet struct {
	site      *siteRuntime // the configured site, whose names the certificates carry
	listeners []*compatListener

	mu     sync.Mutex // guards recent
	recent []compatSeen
}

// compatListener is one combination.
type compatListener struct {
	config.CompatCombination
	set      *compatSet // the set it belongs to
	listener *listenerRuntime
	pqGroup  bool
	pqCert   bool
}

// compatSeen is one handshake on a combination listener, kept so the page
// can tell a visitor why a probe failed: a handshake the server completed
// but the browser's fetch failed means the browser rejected the certificate.
type compatSeen struct {
	remote    string // client IP
	listener  string
	at        time.Time
	ok        bool
	reason    string
	group     string
	signature string
}

// compatRecentMax bounds the handshakes remembered across all visitors.
const compatRecentMax = 512

func (cs *compatSet) remember(c *compatListener, ev HandshakeEvent, now time.Time) {
	seen := compatSeen{listener: c.listener.cfg.Name, at: now, ok: ev.Handshake != nil, reason: ev.Reason}
	if host, _, err := net.SplitHostPort(ev.Remote); err == nil {
		seen.remote = host
	}
	if ev.Handshake != nil {
		seen.group, seen.signature = ev.Handshake.GroupName(), ev.Handshake.SignatureName()
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.recent) >= compatRecentMax {
		cs.recent = append(cs.recent[:0], cs.recent[len(cs.recent)-compatRecentMax/2:]...)
	}
	cs.recent = append(cs.recent, seen)
}

// lastSeen returns the latest handshake from remote on each combination
// listener since since.
func (cs *compatSet) lastSeen(remote string, since time.Time) map[string]compatSeen {
	out := map[string]compatSeen{}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, s := range cs.recent {
		if s.remote == remote && !s.at.Before(since) {
			out[s.listener] = s
		}
	}
	return out
}

// compatLeafValidity is how long combination certificates live; they are
// re-issued with every generation, so a short life costs nothing.
const compatLeafValidity = 30 * 24 * time.Hour

// addCompat builds gen's combination listeners from cfg.Compat and points
// the compat page handlers at them. The certificates are issued in memory
// by the local development CA that certSource keeps for local sites:
// classical leaves by its ECDSA root, ML-DSA leaves by its ML-DSA root, so
// a browser that trusts the local roots can be checked against each.
func (s *Server) addCompat(gen *generation, cs *certSource) error {
	cc := gen.cfg.Compat
	if cc == nil {
		return nil
	}
	site := gen.sites[cc.Site]
	if site == nil {
		return fmt.Errorf("compat: no site %q", cc.Site)
	}
	set, err := cs.localSet()
	if err != nil {
		return fmt.Errorf("compat: %w", err)
	}
	signer, err := certs.ParseSignerKind(site.cfg.TLS.MLDSASigner)
	if err != nil {
		return fmt.Errorf("compat: %w", err)
	}
	leaves := map[string]*tls.Certificate{}
	for _, alg := range cc.Certs {
		leaf, err := set.Issue(certs.LeafOptions{Names: site.cfg.ServerNames, Alg: certs.Alg(alg), Validity: compatLeafValidity, Now: cs.now})
		if err == nil {
			err = certs.WrapSigner(leaf, signer) // the site's ML-DSA signer; a no-op for other keys
		}
		if err != nil {
			return fmt.Errorf("compat: failed to issue the %s certificate: %w", alg, err)
		}
		leaves[alg] = leaf
	}
	host := cc.Host
	if host == "" {
		host = compatDefaultHost(gen.cfg)
	}
	cfg := *gen.cfg
	cfg.Listener = append([]config.Listener(nil), gen.cfg.Listener...)
	gen.compat = &compatSet{site: site}
	for i, combo := range cc.Combinations() {
		address := net.JoinHostPort(host, "0") // socketKey tells port-0 listeners apart by name
		if cc.BasePort > 0 {
			address = net.JoinHostPort(host, strconv.Itoa(cc.BasePort+i))
		}
		lc := config.Listener{Name: "compat-" + combo.Group + "-" + combo.Cert, Address: address, Kind: config.KindHTTPS}
		c, err := gen.newCompatListener(lc, site, combo, leaves[combo.Cert])
		if err != nil {
			return err
		}
		gen.listeners[lc.Name] = c.listener
		gen.bySocket[socketKey(lc)] = c.listener
		c.set, c.listener.compat = gen.compat, c
		gen.compat.listeners = append(gen.compat.listeners, c)
		cfg.Listener = append(cfg.Listener, lc)
	}
	// openSockets binds what gen.cfg lists.
	gen.cfg = &cfg
	for _, st := range gen.sites {
		for _, r := range st.routes {
			if h, ok := r.handler.(*compatHandler); ok {
				h.set, h.srv = gen.compat, s
			}
		}
	}
	return nil
}

// compatDefaultHost is the host of the first https listener, so the matrix
// is reachable wherever the site is.
func compatDefaultHost(cfg *config.Config) string {
	for _, l := range cfg.Listener {
		if l.Kind == config.KindHTTPS || l.Kind == "" {
			if h, _, err := net.SplitHostPort(l.Address); err == nil {
				return h
			}
		}
	}
	return "127.0.0.1"
}

// newCompatListener is an https listener serving one site-like runtime
// restricted to one group and one certificate, whose only route is the
// inspect JSON with CORS for the compat page.
func (g *generation) newCompatListener(lc config.Listener, site *siteRuntime, combo config.CompatCombination, leaf *tls.Certificate) (*compatListener, error) {
	group, err := pqtls.ParseServableGroup(combo.Group)
	if err != nil {
		return nil, err
	}
	pqCert := certs.Alg(combo.Cert).PostQuantum()
	sel := &certs.Selector{Classical: leaf, Mode: certs.PQOff}
	if pqCert {
		// The only certificate: clients that do not offer its scheme fail
		// the handshake, which is the point of the probe.
		sel = &certs.Selector{PQ: leaf, Mode: certs.PQAlways}
	}
	if err := sel.Validate(); err != nil {
		return nil, fmt.Errorf("compat %s: %w", lc.Name, err)
	}
	policy := pqtls.Policy{Preset: pqtls.Preset{
		Name: "compat", Groups: []tls.CurveID{group}, MinVersion: tls.VersionTLS12,
	}, Explicit: true}
	rt := &siteRuntime{name: site.name, cfg: site.cfg, policy: policy, headers: site.headers}
	rt.selector.Store(sel)
	rt.tlsConfig = &tls.Config{GetCertificate: rt.getCertificate, NextProtos: []string{"h2", "http/1.1"}}
	policy.Apply(rt.tlsConfig)
	rt.routes = []route{{prefix: "/", handler: corsInspect{}}}

	l, err := g.newListener(lc)
	if err != nil {
		return nil, err
	}
	// newListener gave it every site; it serves only the combination.
	l.serve([]*siteRuntime{rt})
	return &compatListener{CompatCombination: combo, listener: l, pqGroup: pqtls.IsPostQuantumGroup(group), pqCert: pqCert}, nil
}
