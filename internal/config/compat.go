package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/pqtls"
)

// checkCompat validates the [compat] table and the routes that serve its
// page.
func (v *validator) checkCompat() {
	c := v.cfg.Compat
	if c == nil {
		for i, s := range v.cfg.Site {
			for j, r := range s.Route {
				if r.Handler == "compat" {
					v.addf(fmt.Sprintf("site.%d.route.%d.handler", i, j), "add a [compat] table with site, groups and certs",
						"handler \"compat\" needs a [compat] table")
				}
			}
		}
		return
	}
	v.checkCompatRoutes(c.Site)
	switch idx := slices.IndexFunc(v.cfg.Site, func(s Site) bool { return s.Name == c.Site }); {
	case c.Site == "":
		v.addf("compat", "set site = \"NAME\" of the [[site]] whose names the certificates carry", "compat has no site")
	case idx < 0:
		v.addf("compat.site", "define a [[site]] with that name", "compat names unknown site %q", c.Site)
	case v.cfg.Site[idx].Certs != "" && v.cfg.Site[idx].Certs != CertsLocal:
		v.addf("compat.site", "name a site with certs = \"local\": the combination certificates come from its local CA",
			"compat site %q uses certs = %q", c.Site, v.cfg.Site[idx].Certs)
	}
	if len(c.Groups) == 0 {
		v.addf("compat", "e.g. groups = [\"X25519MLKEM768\", \"x25519\"]", "compat has no groups")
	}
	for _, g := range c.Groups {
		if _, err := pqtls.ParseServableGroup(g); err != nil {
			v.addf("compat.groups", "", "%v", err)
		}
	}
	if len(c.Certs) == 0 {
		v.addf("compat", "e.g. certs = [\"ecdsa-p256\", \"mldsa65\"]", "compat has no certs")
	}
	for _, a := range c.Certs {
		if _, err := certs.ParseAlg(a); err != nil {
			v.addf("compat.certs", "", "%v", err)
		}
	}
	if hasDuplicates(c.Groups) || hasDuplicates(c.Certs) {
		v.addf("compat", "list each group and each algorithm once", "compat lists a group or certificate twice")
	}
	if c.Host != "" {
		if _, err := netip.ParseAddr(strings.Trim(c.Host, "[]")); err != nil && c.Host != "localhost" {
			v.addf("compat.host", "use an IP address, e.g. \"127.0.0.1\" or \"::\"", "bad compat host %q", c.Host)
		}
	}
	n := len(c.Groups) * len(c.Certs)
	switch {
	case c.BasePort < 0 || c.BasePort > 65535:
		v.addf("compat.base_port", "ports are 0 to 65535", "bad base_port %d", c.BasePort)
	case c.BasePort > 0 && c.BasePort+n-1 > 65535:
		v.addf("compat.base_port", "lower base_port or list fewer combinations",
			"base_port %d leaves no room for %d combinations", c.BasePort, n)
	case c.BasePort > 0:
		v.checkCompatPorts(c.BasePort, c.BasePort+n-1)
	}
}

// checkCompatRoutes warns about a compat page served by a site other than
// [compat].site. The usual cause is TOML's rule that a [[site.route]]
// belongs to the [[site]] above it: uncommenting config.example.toml's
// blocks in file order puts the /compat/ route under the last site.
func (v *validator) checkCompatRoutes(compatSite string) {
	for i, s := range v.cfg.Site {
		if s.Name == compatSite {
			continue
		}
		for j, r := range s.Route {
			if r.Handler == "compat" {
				v.warnf(fmt.Sprintf("site.%d.route.%d.handler", i, j),
					fmt.Sprintf("a [[site.route]] belongs to the [[site]] above it in the file: move the route under the site named %q", compatSite),
					"route %q serves the compat page in site %q, but [compat].site is %q", r.Path, s.Name, compatSite)
			}
		}
	}
}

// checkCompatPorts reports listeners whose port falls in the compat range.
func (v *validator) checkCompatPorts(first, last int) {
	check := func(key, address string) {
		_, p, err := net.SplitHostPort(address)
		if err != nil {
			return // reported by checkListeners
		}
		if port, err := strconv.Atoi(p); err == nil && port >= first && port <= last {
			v.addf("compat.base_port", "move base_port or the listener",
				"compat ports %d-%d overlap %s (line %d)", first, last, displayKey(key), v.pos.line(key))
		}
	}
	if v.cfg.Admin.Listen != "" {
		check("admin.listen", v.cfg.Admin.Listen)
	}
	for i, l := range v.cfg.Listener {
		check(fmt.Sprintf("listener.%d.address", i), l.Address)
	}
}

func hasDuplicates(xs []string) bool {
	seen := map[string]bool{}
	for _, x := range xs {
		k := strings.ToLower(x)
		if seen[k] {
			return true
		}
		seen[k] = true
	}
	return false
}
