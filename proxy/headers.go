package proxy

import (
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
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
var trustedNames = []string{"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "forwarded"}

// targetOverrideNames are the folded names of headers that replace the
// request's path in the applications that honour them: IIS's URL Rewrite
// and ARR, ISAPI_Rewrite, and frameworks reading them (Zend, Drupal,
// Symfony before 4.1, CVE-2018-14773) route on X-Original-URL or
// X-Rewrite-URL instead of the request line. A client's copy would reach
// a path no route allowed, and one pqedge never normalised, past the
// router; pqedge, the first proxy, never sets them, so no client copy
// reaches an upstream.
var targetOverrideNames = []string{"x-original-url", "x-rewrite-url"}

// pqedgePrefix: every "PQEdge-..." header is pqedge's to set (the TLS facts
// today, anything later), so no client copy of one reaches an upstream.
const pqedgePrefix = "pqedge-"

// forwardedPrefix: the X-Forwarded-* family belongs to the proxies in front
// of an application, and pqedge is the first of them: besides the three it
// sets, frameworks trust X-Forwarded-Port and -Prefix for the URLs they
// build (Rack, Spring, Django's USE_X_FORWARDED_PORT) and -Ssl and -Scheme
// for the scheme (Rack), so no client copy of any of them reaches an
// upstream.
const forwardedPrefix = "x-forwarded-"

// foldName spells a header name the way CGI (RFC 3875 Section 4.1.18),
// WSGI, PHP and Rack do once they turn it into a variable, up to case:
// "_" and "-" become the same character. Two names that fold alike reach
// such an application as one variable.
func foldName(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// foldsTo reports whether name folds (foldName) to folded, a folded name,
// without building the folded copy: it runs for every header of every
// request.
func foldsTo(name, folded string) bool {
	return len(name) == len(folded) && foldsPrefix(name, folded)
}

// foldsPrefix reports whether name, folded, starts with folded.
func foldsPrefix(name, folded string) bool {
	if len(name) < len(folded) {
		return false
	}
	for i := 0; i < len(folded); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != folded[i] {
			return false
		}
	}
	return true
}

// headerPolicy decides which client header names reach an upstream.
type headerPolicy struct {
	allowUnderscores bool
	// dropped are the folded names of trustedNames, targetOverrideNames
	// and the handshake-fact headers of this proxy (they may be renamed
	// away from PQEdge-*).
	dropped []string
}

func newHeaderPolicy(names HeaderNames, allowUnderscores bool) headerPolicy {
	p := headerPolicy{allowUnderscores: allowUnderscores, dropped: slices.Concat(trustedNames, targetOverrideNames)}
	for _, n := range []string{names.Group, names.PQ, names.Signature, names.Version, names.Cipher} {
		if f := foldName(n); !slices.Contains(p.dropped, f) {
			p.dropped = append(p.dropped, f)
		}
	}
	return p
}

// drops reports whether a client-sent header name must not reach the
// upstream: it is, in any spelling, one pqedge sets itself, an
// X-Forwarded-* one or one that overrides the request's path
// (targetOverrideNames); or it has a byte other than a letter, a digit or
// "-", where "_" is allowed only if the site says so. That is nginx's
// default (ignore_invalid_headers, underscores_in_headers off), and for
// the reason nginx has it: an application cannot tell "X_Forwarded_For"
// from "X-Forwarded-For", and PHP folds "." (and " ", "[") into "_" as
// well when it registers $_SERVER variables, so "X.Forwarded.For" reaches
// it as HTTP_X_FORWARDED_FOR. RFC 9110 Section 5.6.2 allows those bytes
// in a field name; no browser sends them.
func (p *headerPolicy) drops(name string) bool {
	if foldsPrefix(name, pqedgePrefix) || foldsPrefix(name, forwardedPrefix) ||
		slices.ContainsFunc(p.dropped, func(f string) bool { return foldsTo(name, f) }) {
		return true
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-':
		case c == '_' && p.allowUnderscores:
		default:
			return true
		}
	}
	return false
}

// filter removes the dropped names from h (request headers or trailers).
func (p *headerPolicy) filter(h http.Header) {
	for name := range h {
		if p.drops(name) {
			delete(h, name)
		}
	}
}

// forwarded are the values of the X-Forwarded-*, X-Real-IP and Forwarded
// headers for one client address and Host. They are the same for every
// request of a connection (unless its Host changes), so a connection's
// facts keep the last ones made (connFacts.forwarded) and each request
// shares their slices instead of building them again.
type forwarded struct {
	remote, host string // what they were made for
	https        bool

	forwardedFor, realIP, forwarded []string // nil when remote is not an IP address
	xfHost, xfProto                 []string
	// values backs xfHost, forwardedFor and forwarded: one allocation
	// for the connection's headers instead of one per slice.
	values [3]string
}

// newForwarded makes the headers' values for a request from remote (the
// request's RemoteAddr) for host over HTTPS or not.
func newForwarded(remote, host string, https bool) *forwarded {
	f := &forwarded{remote: remote, host: host, https: https, xfProto: protoHTTP}
	f.values[0] = host
	f.xfHost = f.values[0:1:1]
	proto := "http"
	if https {
		proto, f.xfProto = "https", protoHTTPS
	}
	ip, _, err := net.SplitHostPort(remote)
	if err != nil {
		return f // not an IP connection (tests over pipes): nothing to say
	}
	f.values[1] = ip
	f.forwardedFor = f.values[1:2:2]
	f.realIP = f.forwardedFor
	// RFC 7239 Section 4: an IPv6 address is bracketed and, like any
	// value with ":" or "[", quoted; the host is quoted for its port.
	node := ip
	if strings.Contains(ip, ":") {
		node = quotedString("[" + ip + "]")
	}
	if host != "" {
		f.values[2] = "for=" + node + ";proto=" + proto + ";host=" + quotedString(host)
	} else {
		f.values[2] = "for=" + node + ";proto=" + proto
	}
	f.forwarded = f.values[2:3:3]
	return f
}

var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

// setForwarded sets pqedge's own X-Forwarded-*, X-Real-IP and Forwarded
// headers on the outbound request, from the connection, never from what
// the client sent (the policy removed the client's copies before). They
// are what httputil.ProxyRequest.SetXForwarded sets, plus X-Real-IP and
// Forwarded; cf, when the server stored the connection's facts, keeps the
// values for the next request. The slices are shared: nobody modifies a
// header value in place.
func setForwarded(pr *httputil.ProxyRequest, cf *connFacts) {
	in, h := pr.In, pr.Out.Header
	var f *forwarded
	if cf != nil {
		f = cf.fwd.Load()
	}
	if f == nil || f.remote != in.RemoteAddr || f.host != in.Host || f.https != (in.TLS != nil) {
		f = newForwarded(in.RemoteAddr, in.Host, in.TLS != nil)
		if cf != nil {
			cf.fwd.Store(f)
		}
	}
	h["X-Forwarded-Host"] = f.xfHost
	h["X-Forwarded-Proto"] = f.xfProto
	if f.forwardedFor == nil {
		delete(h, "X-Forwarded-For")
		return
	}
	h["X-Forwarded-For"] = f.forwardedFor
	h[RealIPHeader] = f.realIP
	h[ForwardedHeader] = f.forwarded
}

// quotedString quotes s as an RFC 9110 Section 5.6.4 quoted-string.
func quotedString(s string) string {
	if !strings.ContainsAny(s, "\"\\") {
		return `"` + s + `"`
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
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

// fieldCount is how many field lines h stands for: one per value.
func fieldCount(h http.Header) int {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	return n
}
