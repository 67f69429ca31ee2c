package plan

import "strings"

// Resolver finds the site that serves a server name on one listener. It is
// the one place the rule lives, used alike for the TLS server name (SNI)
// and for a request's Host:
//
//  1. an exact server name (case-insensitive, trailing dot ignored);
//  2. a wildcard "*.example.com", which matches one label deep
//     ("a.example.com", not "a.b.example.com"; RFC 6125 section 6.4.3);
//  3. otherwise the listener's default site (its first), unless the
//     listener is strict; a name-less lookup (a client sending no SNI, a
//     request without Host) always gets the default.
type Resolver struct {
	sites    []*Site
	exact    map[string]*Site
	wildcard map[string]*Site // "*.example.com" sites, by "example.com"
	strict   bool
}

// Match says how a name found its site.
type Match uint8

const (
	MatchNone     Match = iota // no site: a strict listener refused the name
	MatchExact                 // an exact server name
	MatchWildcard              // a wildcard server name
	MatchDefault               // the listener's default site
)

// NewResolver indexes sites by server name, the first being the default.
// A strict resolver finds no site for names none of them serves.
func NewResolver(sites []*Site, strict bool) *Resolver {
	r := &Resolver{sites: sites, exact: map[string]*Site{}, wildcard: map[string]*Site{}, strict: strict}
	for _, s := range sites {
		for _, n := range s.Config.ServerNames {
			n = strings.ToLower(n)
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				r.wildcard[rest] = s
			} else {
				r.exact[n] = s
			}
		}
	}
	return r
}

// Sites lists the sites of the listener, the default first.
func (r *Resolver) Sites() []*Site { return r.sites }

// Strict reports whether the listener refuses names no site serves
// (strict_sni).
func (r *Resolver) Strict() bool { return r.strict }

// Default is the listener's default site; nil without sites.
func (r *Resolver) Default() *Site {
	if len(r.sites) == 0 {
		return nil
	}
	return r.sites[0]
}

// Resolve returns the site serving name and how it matched.
func (r *Resolver) Resolve(name string) (*Site, Match) {
	if name == "" {
		return r.Default(), MatchDefault
	}
	if s, m := r.ByName(name); s != nil {
		return s, m
	}
	if r.strict {
		return nil, MatchNone
	}
	return r.Default(), MatchDefault
}

// ByName returns the site whose server names match name, exactly or by
// wildcard, with no fallback to the default.
func (r *Resolver) ByName(name string) (*Site, Match) {
	name = normalName(name)
	if s, ok := r.exact[name]; ok {
		return s, MatchExact
	}
	if _, rest, ok := strings.Cut(name, "."); ok {
		if s, ok := r.wildcard[rest]; ok {
			return s, MatchWildcard
		}
	}
	return nil, MatchNone
}

// normalName lower-cases a server name and drops a trailing dot.
func normalName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// HostName is the host part of a Host header ("example.com:8443",
// "[2001:db8::1]:443", "example.com"), without port or brackets.
func HostName(host string) string {
	if strings.HasPrefix(host, "[") {
		if end := strings.IndexByte(host, ']'); end > 0 {
			return host[1:end]
		}
		return host
	}
	if strings.Count(host, ":") == 1 {
		host = host[:strings.IndexByte(host, ':')]
	}
	return host
}
