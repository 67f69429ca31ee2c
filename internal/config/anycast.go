package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/pqedge/pqedge/internal/anycast"
)

// Anycast announces service addresses to the network through BIRD: pqedge
// puts the address of each healthy prefix on a TUN device it owns, and
// BIRD's `protocol direct` exports it (docs/OPERATIONS.md, package anycast).
type Anycast struct {
	// Device is the TUN device pqedge creates for the announcements; BIRD's
	// direct protocol must watch this name.
	Device string `toml:"device"`
	// Rise healthy samples re-announce a withdrawn prefix, Fall unhealthy
	// samples withdraw an announced one; a sample is taken when the health
	// changes and every Interval while a count runs.
	Rise     int      `toml:"rise"`
	Fall     int      `toml:"fall"`
	Interval Duration `toml:"interval"`
	// HoldDown is the least time from a withdrawal to the next
	// announcement, so a flapping upstream does not flap the route.
	HoldDown Duration `toml:"hold_down"`
	// How long SIGTERM keeps serving after withdrawing every prefix is
	// timeouts.withdraw_grace, which applies without [anycast] too; with
	// [anycast] its default is DefaultAnycastWithdrawGrace.
	Prefix []AnycastPrefix `toml:"prefix"`
}

// AnycastPrefix is one announced service address and what it needs.
type AnycastPrefix struct {
	// Prefix is one address: "192.0.2.53/32" or "2001:db8::53/128".
	Prefix string `toml:"prefix"`
	// Listeners name the [[listener]]s that serve the address; the prefix
	// is healthy only while all of them are.
	Listeners []string `toml:"listeners"`
}

// Announcements are the prefixes of a config from Parse (validated, with
// defaults applied) with their flap control, in the order of
// [[anycast.prefix]], for anycast.Controller's Configure.
func (a *Anycast) Announcements() []anycast.Announcement {
	pol := anycast.Policy{Rise: a.Rise, Fall: a.Fall, Interval: a.Interval.Value(), HoldDown: a.HoldDown.Value()}
	out := make([]anycast.Announcement, 0, len(a.Prefix))
	for _, p := range a.Prefix {
		out = append(out, anycast.Announcement{Prefix: netip.MustParsePrefix(p.Prefix), Policy: pol})
	}
	return out
}

// checkAnycast validates the [anycast] table. Durations are checked with
// the others (checkDurations).
func (v *validator) checkAnycast() {
	a := v.cfg.Anycast
	if a == nil {
		return
	}
	if a.Device != "" {
		if err := anycast.CheckDeviceName(a.Device); err != nil {
			v.addf("anycast.device", "use a short name such as \"pqedge-any0\", and the same in BIRD's direct protocol", "%v", err)
		} else if a.Device == "lo" {
			v.addf("anycast.device", "pqedge creates this device itself; name one that does not exist, e.g. \"pqedge-any0\"", "device %q is the loopback interface", a.Device)
		}
	}
	for _, n := range []struct {
		key string
		val int
	}{{"anycast.rise", a.Rise}, {"anycast.fall", a.Fall}} {
		if n.val < 0 {
			v.addf(n.key, "use a positive count, or leave it out for the default", "%s must not be negative", n.key[len("anycast."):])
		}
	}
	if d, err := time.ParseDuration(string(a.Interval)); err == nil && d == 0 {
		v.addf("anycast.interval", "samples need time between them, e.g. \"1s\"", "interval must be positive")
	}
	if len(a.Prefix) == 0 {
		v.addf("anycast", "add [[anycast.prefix]] with prefix = \"192.0.2.53/32\" and its listeners", "anycast has no prefix")
	}
	seen := map[netip.Prefix]string{}
	for i, p := range a.Prefix {
		key := fmt.Sprintf("anycast.prefix.%d", i)
		pfx, ok := v.parseAnycastPrefix(key+".prefix", p.Prefix)
		if ok {
			if other, dup := seen[pfx]; dup {
				v.addf(key+".prefix", "announce each address once", "prefix %s is already listed at %s (line %d)", pfx, displayKey(other), v.pos.line(other))
				ok = false
			} else {
				seen[pfx] = key + ".prefix"
			}
		}
		if len(p.Listeners) == 0 {
			v.addf(key, "list the listeners that serve the address, e.g. listeners = [\"dot\"]", "prefix %q depends on no listener", p.Prefix)
		}
		for _, name := range p.Listeners {
			idx := slices.IndexFunc(v.cfg.Listener, func(l Listener) bool { return l.Name == name })
			if idx < 0 {
				v.addf(key+".listeners", "name a [[listener]] defined in this file", "prefix %q names unknown listener %q", p.Prefix, name)
				continue
			}
			if ok {
				v.checkServes(key+".listeners", pfx, v.cfg.Listener[idx], idx)
			}
		}
	}
	v.warnPassiveAnycastPools()
}

// warnPassiveAnycastPools warns about each pool an announced listener uses
// without active health checks: its upstreams are taken out only when
// requests to them fail, so a node without traffic keeps announcing a
// dead service.
func (v *validator) warnPassiveAnycastPools() {
	warned := map[string]bool{}
	for i, p := range v.cfg.Anycast.Prefix {
		for _, name := range p.Listeners {
			for _, pool := range v.listenerPools(name) {
				pi := slices.IndexFunc(v.cfg.Pool, func(pc Pool) bool { return pc.Name == pool })
				if pi < 0 || warned[pool] {
					continue
				}
				if d, err := time.ParseDuration(string(v.cfg.Pool[pi].Health.Interval)); err == nil && d > 0 {
					continue
				}
				warned[pool] = true
				v.warnf(fmt.Sprintf("pool.%d", pi), "set [pool.health] interval, e.g. \"1s\", so a dead upstream withdraws the prefix at once",
					"pool %q has no active health checks, and anycast prefix %s (line %d) depends on it through listener %q: with no traffic, a dead upstream is never noticed and the prefix stays announced",
					pool, p.Prefix, v.pos.line(fmt.Sprintf("anycast.prefix.%d", i)), name)
			}
		}
	}
}

// listenerPools lists the pools a listener's connections may reach: a
// stream listener's pool, or the pools of the routes of the sites an https
// listener serves.
func (v *validator) listenerPools(name string) []string {
	li := slices.IndexFunc(v.cfg.Listener, func(l Listener) bool { return l.Name == name })
	if li < 0 {
		return nil
	}
	l := v.cfg.Listener[li]
	if l.Kind == KindStream {
		return []string{l.Pool}
	}
	var pools []string
	for _, s := range v.cfg.Site {
		if len(s.Listeners) > 0 && !slices.Contains(s.Listeners, name) {
			continue
		}
		for _, r := range s.Route {
			if r.Pool != "" && !slices.Contains(pools, r.Pool) {
				pools = append(pools, r.Pool)
			}
		}
	}
	return pools
}

// parseAnycastPrefix parses an [[anycast.prefix]] prefix, with a hint for
// each way of getting it wrong.
func (v *validator) parseAnycastPrefix(key, s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			v.addf(key, fmt.Sprintf("write %s/%d", a, a.BitLen()), "prefix %q has no length", s)
		} else {
			v.addf(key, "write one address with its full length, e.g. \"192.0.2.53/32\" or \"2001:db8::53/128\"", "bad prefix %q", s)
		}
		return netip.Prefix{}, false
	}
	if err := anycast.CheckPrefix(p); err != nil {
		v.addf(key, "announce the address clients connect to, as /32 (IPv4) or /128 (IPv6)", "%v", err)
		return netip.Prefix{}, false
	}
	return p, true
}

// checkServes reports a listener that cannot receive connections for the
// prefix's address: bound to another address, or to the other family's
// wildcard ("0.0.0.0" is IPv4 only; "::" and an empty host take both).
func (v *validator) checkServes(key string, p netip.Prefix, l Listener, idx int) {
	host, port, err := net.SplitHostPort(l.Address)
	if err != nil {
		return // reported by checkListeners
	}
	where := fmt.Sprintf("%s (line %d)", displayKey(fmt.Sprintf("listener.%d.address", idx)), v.pos.line(fmt.Sprintf("listener.%d.address", idx)))
	switch host {
	case "", "::":
		return
	case "0.0.0.0":
		if p.Addr().Is6() {
			v.addf(key, "bind the listener to \"[::]:PORT\" or to the address itself", "IPv6 prefix %s depends on listener %q, which listens on IPv4 only (%s)", p, l.Name, where)
		}
		return
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Unmap() == p.Addr() {
		return // a bad host is reported by checkListeners
	}
	hint := fmt.Sprintf("bind listener %q to %q, or to a wildcard address", l.Name, net.JoinHostPort(p.Addr().String(), port))
	if a.Unmap().Is4() != p.Addr().Is4() {
		v.addf(key, hint, "prefix %s depends on listener %q, which listens on %s, an address of the other IP version (%s)", p, l.Name, a, where)
		return
	}
	v.addf(key, hint, "prefix %s depends on listener %q, which listens on %s, not on %s (%s)", p, l.Name, a, p.Addr(), where)
}
