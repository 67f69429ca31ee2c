package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// readiness is what /readyz answers: whether pqedge should get new clients,
// and every check behind the verdict. It is ready when every check passes:
//
//	started     the first config is serving
//	shutdown    no Shutdown has begun (lameduck.go)
//	listener    each listener of the running config is bound
//	certificates  each site's chains are within their validity
//	pool        each pool of admin.ready_pools has a healthy upstream
//	fleet store informational, always passes: the store is not in the
//	            handshake path (fleet.go, fleetCheck)
type readiness struct {
	Ready  bool         `json:"ready"`
	Checks []readyCheck `json:"checks"`
}

// readyCheck is one check: its name (`listener "https"`), whether it
// passed, and what it found.
type readyCheck struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// readiness runs every check. It takes no lock across I/O and does none.
func (s *Server) readiness() readiness {
	var r readiness
	add := func(check string, ok bool, detail string) {
		r.Checks = append(r.Checks, readyCheck{Check: check, OK: ok, Detail: detail})
	}
	g := s.current.Load()
	if s.started.Load() {
		add("started", true, "serving "+g.plan.Config.File)
	} else {
		add("started", false, "starting: the first config is not serving yet")
	}
	if ld := s.lameDuck.Load(); ld != nil {
		add("shutdown", false, ld.describe(time.Now()))
	} else {
		add("shutdown", true, "not shutting down")
	}
	if g != nil {
		now := s.now()
		for _, pl := range g.plan.Listeners {
			ok, detail := s.listenerBound(pl.SocketKey)
			if pl.QUICKey != "" && ok {
				var udp string
				ok, udp = s.listenerBound(pl.QUICKey)
				detail += "; HTTP/3 (UDP) " + udp
			}
			add(fmt.Sprintf("listener %q", pl.Name), ok, detail)
		}
		for _, ps := range g.plan.Sites {
			ok, detail := g.sites[ps.Name].certStatus(now)
			add(fmt.Sprintf("certificates of site %q", ps.Name), ok, detail)
		}
		for _, pool := range g.plan.Config.Admin.ReadyPools {
			ok, detail := poolStatus(g, pool)
			add(fmt.Sprintf("pool %q", pool), ok, detail)
		}
	}
	if detail, inFleet := s.fleetCheck(); inFleet {
		add("fleet store", true, detail)
	}
	r.Ready = true
	for _, c := range r.Checks {
		r.Ready = r.Ready && c.OK
	}
	return r
}

// summary is the first line of the text answer: "ready", or "not ready: "
// and the first failed check.
func (r readiness) summary() string {
	if r.Ready {
		return "ready"
	}
	for _, c := range r.Checks {
		if !c.OK {
			return fmt.Sprintf("not ready: %s: %s", c.Check, c.Detail)
		}
	}
	return "not ready"
}

// serveReadyz answers 200 when ready, else 503. The body is a summary line
// then one line per check (text), or the readiness as JSON for
// ?format=json or Accept: application/json.
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	rd := s.readiness()
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		writeJSON(w, code, rd)
		return
	}
	var b strings.Builder
	fmt.Fprintln(&b, rd.summary())
	for _, c := range rd.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "%s  %s: %s\n", mark, c.Check, c.Detail)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprint(w, b.String())
}

// wantsJSON reports whether an admin request asks for JSON, as the
// built-in pages decide it.
func wantsJSON(r *http.Request) bool {
	return r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// notReadyReason says why the server is not ready, for a prefix's health
// report.
func (s *Server) notReadyReason() string {
	if s.lameDuck.Load() != nil {
		return "pqedge is shutting down"
	}
	return "pqedge is starting"
}

// listenerBound reports whether a listener's socket is open and accepting.
func (s *Server) listenerBound(key string) (bool, string) {
	a := s.sockets.addr(key)
	if a == nil {
		return false, "is not bound"
	}
	return true, "bound on " + a.String()
}

// poolStatus reports whether a pool of g has a healthy upstream.
func poolStatus(g *generation, name string) (bool, string) {
	p := g.pools[name]
	if p == nil {
		return false, "is not in the running config"
	}
	ups := p.Upstreams()
	healthy := 0
	for _, u := range ups {
		if u.Healthy {
			healthy++
		}
	}
	if healthy == 0 {
		return false, fmt.Sprintf("has no healthy upstream (%d down)", len(ups))
	}
	return true, fmt.Sprintf("has %d of %d upstreams healthy", healthy, len(ups))
}

// certStatus reports whether every chain the site serves is valid at now:
// its classical and ML-DSA chains, and for an ACME site the certificate of
// each of its server names.
func (rt *siteRuntime) certStatus(now time.Time) (bool, string) {
	var found []string
	sel := rt.certs.selector()
	for _, c := range []struct {
		kind string
		cert *certsChain
	}{{"classical", chainOf(sel, false)}, {"ML-DSA", chainOf(sel, true)}} {
		if c.cert == nil {
			continue
		}
		ok, detail := validAt(c.kind, c.cert.notBefore, c.cert.notAfter, now)
		if !ok {
			return false, detail
		}
		found = append(found, detail)
	}
	if rt.acme != nil {
		got := map[string]time.Time{}
		for _, e := range rt.acme.Expiry() {
			for _, n := range e.Names {
				got[strings.ToLower(n)] = e.NotAfter
			}
		}
		for _, name := range rt.Config.ServerNames {
			end, ok := got[strings.ToLower(name)]
			if !ok {
				return false, fmt.Sprintf("no ACME certificate for %s", name)
			}
			if !now.Before(end) {
				return false, fmt.Sprintf("the ACME certificate for %s expired at %s", name, end.UTC().Format(time.RFC3339))
			}
		}
		if len(rt.Config.ServerNames) > 0 {
			found = append(found, fmt.Sprintf("ACME certificates for %d names", len(rt.Config.ServerNames)))
		}
	}
	if len(found) == 0 {
		return false, "no certificate"
	}
	return true, strings.Join(found, "; ")
}

// certsChain is the validity of a chain's leaf.
type certsChain struct{ notBefore, notAfter time.Time }

// chainOf returns the validity of the selector's classical or ML-DSA
// chain, nil when it has none.
func chainOf(sel *certs.Selector, pq bool) *certsChain {
	if sel == nil {
		return nil
	}
	c := sel.Classical
	if pq {
		c = sel.PQ
	}
	leaf := leafOf(c)
	if leaf == nil {
		return nil
	}
	return &certsChain{leaf.NotBefore, leaf.NotAfter}
}

func validAt(kind string, notBefore, notAfter, now time.Time) (bool, string) {
	switch {
	case now.Before(notBefore):
		return false, fmt.Sprintf("the %s certificate is valid only from %s", kind, notBefore.UTC().Format(time.RFC3339))
	case !now.Before(notAfter):
		return false, fmt.Sprintf("the %s certificate expired at %s", kind, notAfter.UTC().Format(time.RFC3339))
	}
	return true, fmt.Sprintf("%s valid until %s", kind, notAfter.UTC().Format(time.RFC3339))
}
