package proxy

import (
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
)

// Headers pqedge sets on every upstream request besides the handshake
// facts. Client-sent copies are removed whatever their spelling.
const (
	// RealIPHeader carries the client's address, as nginx's realip module
	// and many frameworks expect.
	RealIPHeader = "X-Real-Ip"
	// ForwardedHeader is RFC 7239's: for, host and proto of the client.
	ForwardedHeader = "Forwarded"
)

// trustedNames are the folded names (see foldName) of the headers pqedge
// sets itself; any client header that folds to one of them is dropped.
// PQEdge-* names are matched by prefix (pqedgePrefix).
var trustedNames = map[string]bool{
	"x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true,
	"x-real-ip": true, "forwarded": true,
}

// pqedgePrefix: every "PQEdge-..." header is pqedge's to set (the TLS facts
// today, anything later), so no client copy of one reaches an upstream.
const pqedgePrefix = "pqedge-"

// foldName spells a header name the way CGI (RFC 3875 Section 4.1.18),
// WSGI, PHP and Rack do once they turn it into a variable, up to case:
// "_" and "-" become the same character. Two names that fold alike reach
// such an application as one variable.
func foldName(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// headerPolicy decides which client header names reach an upstream.
type headerPolicy struct {
	allowUnderscores bool
	// facts are the folded names of the handshake-fact headers of this
	// proxy (they may be renamed away from PQEdge-*).
	facts map[string]bool
}

func newHeaderPolicy(names HeaderNames, allowUnderscores bool) headerPolicy {
	p := headerPolicy{allowUnderscores: allowUnderscores, facts: map[string]bool{}}
	for _, n := range []string{names.Group, names.PQ, names.Signature, names.Version, names.Cipher} {
		p.facts[foldName(n)] = true
	}
	return p
}

// drops reports whether a client-sent header name must not reach the
// upstream: it is, in any spelling, one pqedge sets itself, or it contains
// "_" and the site does not allow that (nginx's underscores_in_headers
// default), because the application cannot tell "X_Forwarded_For" from
// "X-Forwarded-For".
func (p headerPolicy) drops(name string) bool {
	f := foldName(name)
	if trustedNames[f] || p.facts[f] || strings.HasPrefix(f, pqedgePrefix) {
		return true
	}
	return !p.allowUnderscores && strings.IndexByte(name, '_') >= 0
}

// filter removes the dropped names from h (request headers or trailers).
func (p headerPolicy) filter(h http.Header) {
	for name := range h {
		if p.drops(name) {
			delete(h, name)
		}
	}
}

// setForwarded sets pqedge's own X-Forwarded-*, X-Real-IP and Forwarded
// headers on the outbound request, from the connection, never from what
// the client sent.
func setForwarded(pr *httputil.ProxyRequest) {
	pr.SetXForwarded()
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	}
	ip, _, err := net.SplitHostPort(pr.In.RemoteAddr)
	if err != nil {
		return // not an IP connection (tests over pipes): nothing to say
	}
	pr.Out.Header.Set(RealIPHeader, ip)
	// RFC 7239 Section 4: an IPv6 address is bracketed and, like any
	// value with ":" or "[", quoted; the host is quoted for its port.
	node := ip
	if strings.Contains(ip, ":") {
		node = quotedString("[" + ip + "]")
	}
	fwd := "for=" + node + ";proto=" + proto
	if pr.In.Host != "" {
		fwd += ";host=" + quotedString(pr.In.Host)
	}
	pr.Out.Header.Set(ForwardedHeader, fwd)
}

// quotedString quotes s as an RFC 9110 Section 5.6.4 quoted-string.
func quotedString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
