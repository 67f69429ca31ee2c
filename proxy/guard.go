package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// allowedMethods is the Allow header of a 405 (RFC 9110 Section 15.5.6
// requires one): every method pqedge forwards.
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// CheckRequest applies the rules every request must pass before it is
// routed, and puts the request in the form it is routed and forwarded in.
// It returns 0 and "" when the request may go on, or the status to refuse
// it with (400, 405) and a short reason; WriteRefusal answers it, and an
// HTTP/1.x connection is closed after that answer ("Connection: close"). The
// router calls it before matching routes; HTTPProxy calls it again (it is
// idempotent), so a proxy served without the router is held to the same
// rules.
//
// In order:
//
//   - Framing (RFC 9112 Sections 6.1 and 6.3): net/http processes a request
//     carrying both Content-Length and Transfer-Encoding by the latter and
//     deletes Content-Length, and ignores Transfer-Encoding in HTTP/1.0, so
//     a handler cannot tell whether the framing was ambiguous. Such a
//     connection must not be reused, so every HTTP/1.x request with a
//     chunked body, and every HTTP/1.0 request, gets "Connection: close":
//     the bytes after it are never parsed as a request. (internal/h1guard,
//     below net/http, refuses the ambiguous ones outright with 400.)
//   - CONNECT gets 405: pqedge is not a forward proxy, and over HTTP/2 Go
//     refuses extended CONNECT (RFC 8441) itself unless GODEBUG
//     http2xconnect=1 is set, which pqedge does not support.
//   - TRACE gets 405, as nginx answers it: an upstream that implements it
//     echoes the request's header fields back (RFC 9110 Section 9.3.8),
//     cookies and pqedge's own headers included, to whatever script made
//     the request (cross-site tracing).
//   - Protocol switches (RFC 9110 Section 7.8): only a WebSocket upgrade
//     (RFC 6455 Section 4.1: GET, HTTP/1.1, no body, "Upgrade: websocket"
//     named in Connection) keeps its Upgrade header, reduced to
//     "websocket".
//     Anything else, h2c included, loses Upgrade, HTTP2-Settings and their
//     Connection tokens, so the upstream answers normally and never opens
//     a tunnel past routing and past pqedge's headers.
//   - A method that is not a token (RFC 9110 Section 9.1) or a Host that
//     is not an authority (RFC 9110 Section 7.2, RFC 3986 Section 3.2)
//     gets 400. net/http's HTTP/1.1 server and quic-go refuse both
//     already; Go's HTTP/2 server passes them on. Its transport then
//     refused such a method before any upstream connection (answered 502
//     and counted against the upstream, which never saw it), and wrote
//     such a Host as an empty one, so the upstream served its default
//     virtual host.
//   - A request target that is not a path, an http or https URI with a
//     host, or "*" for OPTIONS gets 400 (targetFault, RFC 9112 Section
//     3.2).
//   - A query with whitespace, a control byte or "#" gets 400
//     (badQueryByte): an HTTP/2 or HTTP/3 :path may carry them, an
//     HTTP/1.1 request line to the upstream cannot.
//   - The path is normalised with NormalizePath (400 when it is malformed,
//     climbs above "/" or hides dot segments; "//" merged into "/"), and
//     r.URL.Path and r.URL.RawPath are set to the normalised form, which
//     is what routes match and what upstreams receive. A path with an
//     encoded slash is not refused here: CheckRoute decides, per route,
//     as it does whether empty segments are kept.
func CheckRequest(w http.ResponseWriter, r *http.Request) (status int, reason string) {
	if r.ProtoMajor == 1 && (r.ProtoMinor == 0 || len(r.TransferEncoding) > 0) {
		w.Header().Set("Connection", "close")
	}
	status, reason = checkRequest(w, r)
	if status != 0 {
		closeAfterRefusal(w, r)
	}
	return status, reason
}

// closeAfterRefusal ends an HTTP/1.x connection after the answer to a
// request pqedge refused: its client sent something malformed, so the
// bytes after it are not trusted to be the next request (nginx closes
// after its 400s too; issue #12, kind 1). An HTTP/2 or HTTP/3 stream ends
// on its own, and "Connection: close" there would have net/http send
// GOAWAY for the whole connection.
func closeAfterRefusal(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
}

func checkRequest(w http.ResponseWriter, r *http.Request) (status int, reason string) {
	if r.Method == http.MethodConnect {
		w.Header().Set("Allow", allowedMethods)
		return http.StatusMethodNotAllowed, "CONNECT is not supported: pqedge is not a forward proxy"
	}
	if r.Method == http.MethodTrace {
		w.Header().Set("Allow", allowedMethods)
		return http.StatusMethodNotAllowed, "TRACE is not supported"
	}
	if !validMethod(r.Method) {
		return http.StatusBadRequest, fmt.Sprintf("method %q is not a token", r.Method)
	}
	if !httpguts.ValidHostHeader(r.Host) || !authorityShape(r.Host) {
		return http.StatusBadRequest, fmt.Sprintf("host %q is not a valid authority", r.Host)
	}
	if reason := targetFault(r); reason != "" {
		return http.StatusBadRequest, reason
	}
	if reason := authorityFault(r); reason != "" {
		return http.StatusBadRequest, reason
	}
	sanitizeUpgrade(r)
	p, err := NormalizePath(requestPath(r))
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	if i := badQueryByte(r.URL.RawQuery); i >= 0 {
		return http.StatusBadRequest, fmt.Sprintf("query has %q at byte %d, which a request line cannot carry", r.URL.RawQuery[i], i)
	}
	r.URL.Path, r.URL.RawPath = p.Decoded, p.Escaped
	return 0, ""
}

// badQueryByte returns the index of the first byte of a query an HTTP/1.1
// request line cannot carry, or -1. The upstream request line is
// "METHOD path?query HTTP/1.1", written with the query as it came: over
// HTTP/2 and HTTP/3 the :path is one field value, where a space, a tab or
// "#" is allowed (RFC 9113 Section 8.3.1 only forbids nothing worse than
// what field values may hold), so "/a?x y" went upstream as "GET /a?x y
// HTTP/1.1", which an upstream parses as another target and version or
// refuses (a Go upstream closed the connection, and pqedge answered 502
// against the upstream). A request-target has no whitespace or control
// bytes and no fragment (RFC 9112 Section 3.2, RFC 3986 Section 3.4).
// HTTP/1.x requests never get here with one: their request line is
// split at spaces.
func badQueryByte(q string) int {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c == 0x7f || c == '#' {
			return i
		}
	}
	return -1
}

// authorityShape reports whether a Host (or :authority) that holds only
// the bytes httpguts.ValidHostHeader allows is shaped as one: a host
// name, IPv4 address or bracketed IPv6 address, then at most one ":" and
// a port of digits (RFC 3986 Section 3.2: host [ ":" port ]). A name may
// end in one "." (a fully qualified name) but holds no empty label and
// no label over 63 bytes, and is at most 253 bytes without that dot (RFC
// 1035 Section 2.3.4). The empty Host of an HTTP/1.0 request passes.
//
// Why: pqedge serves a name it cannot match to a site on the handshake's
// site and passes the Host on as it came, so "b.test..", ".b.test" or
// "b.test:443:1" on a connection made for a.test reached a.test's
// upstream, where one that serves several virtual hosts and tidies names
// may serve b.test's: a route no site's policy allowed (issue #12, found
// by trialH).
func authorityShape(host string) bool {
	if host == "" {
		return true
	}
	name, port := host, ""
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return false
		}
		addr, err := netip.ParseAddr(host[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return false
		}
		rest := host[end+1:]
		if rest != "" && rest[0] != ':' {
			return false
		}
		return validPort(strings.TrimPrefix(rest, ":"))
	}
	if i := strings.IndexByte(host, ':'); i >= 0 {
		name, port = host[:i], host[i+1:]
		if !validPort(port) {
			return false
		}
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
	}
	return true
}

// authorityFault returns why r's authority is refused beyond its shape
// (authorityShape), or "". Each is a request whose authority is ambiguous
// or disguised, found accepted by the nginx differential trial (trialK;
// nginx refuses all three):
//   - userinfo in an absolute-form target ("https://u@a.test/"): RFC 9110
//     Section 4.2.4 has a recipient treat it as an error, as it serves to
//     disguise the authority; net/http dropped it silently;
//   - an empty Host in HTTP/1.1, or no authority in HTTP/2 and HTTP/3
//     (:authority and host empty or absent): the target URI of an https
//     request then has no host, which RFC 9110 Section 4.2.2 has a
//     recipient reject; it went upstream as an empty Host, served by the
//     upstream's default virtual host (HTTP/1.0 may leave Host out, RFC
//     9112 Section 3.2);
//   - over HTTP/2 and HTTP/3, a host field naming another authority than
//     :authority, or more than one (RFC 9113 Section 8.3.1, RFC 9114
//     Section 4.3.1): pqedge routes on :authority and an upstream, or a
//     logger, reading the field would see another name.
func authorityFault(r *http.Request) string {
	if r.URL != nil && r.URL.User != nil {
		return "the request target holds userinfo"
	}
	if r.Host == "" && (r.ProtoMajor >= 2 || r.ProtoMinor >= 1) {
		return "the request names no authority (Host, :authority)"
	}
	if hosts := r.Header["Host"]; r.ProtoMajor >= 2 && len(hosts) > 0 {
		if len(hosts) > 1 || !sameAuthority(hosts[0], r.Host, r.TLS != nil) {
			return fmt.Sprintf("the host field %q differs from :authority %q", strings.Join(hosts, ", "), r.Host)
		}
	}
	return ""
}

// sameAuthority reports whether two authorities name the same origin for
// one scheme: names compare without case or a trailing dot, and the
// scheme's default port equals no port (RFC 9110 Section 4.2.3).
func sameAuthority(a, b string, https bool) bool {
	norm := func(s string) string {
		s = strings.ToLower(s)
		if https {
			s = strings.TrimSuffix(s, ":443")
		} else {
			s = strings.TrimSuffix(s, ":80")
		}
		return strings.TrimSuffix(strings.TrimSuffix(s, ":"), ".")
	}
	return norm(a) == norm(b)
}

// targetFault says why r's request target is in no form an origin server
// takes (RFC 9112 Section 3.2), or "": origin-form (a path), absolute-form
// with the scheme http or https (in any case, RFC 3986 Section 3.1) and a
// host, "*" for OPTIONS; CONNECT's authority-form is refused before. In
// absolute-form the target's authority is the request's (net/http sets
// r.Host from it and ignores Host, RFC 9112 Section 3.2.2), and its path
// is routed and forwarded. Any other scheme asks for a resource pqedge
// serves none of ("ftp://a.test/x" was routed by a.test and forwarded as
// an https request for "/x"), "http:/x" and "http:///x" name no host
// (RFC 9110 Section 4.2.1: a recipient MUST reject an http URI without
// one; the latter went upstream under the Host field's name), and a
// relative reference ("a.test/x") is no target at all.
func targetFault(r *http.Request) string {
	uri := r.RequestURI
	if uri == "" || uri[0] == '/' || uri == "*" && r.Method == http.MethodOptions {
		return ""
	}
	scheme, rest, _ := strings.Cut(uri, ":")
	// Over HTTP/2 and HTTP/3 a :path that is not a path, and (HTTP/2) a
	// :scheme other than http or https, never get here: net/http's and
	// quic-go's servers reset such streams (RFC 9113 Section 8.3.1).
	switch {
	case !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https"):
		return fmt.Sprintf("request target %q is neither a path nor an http or https URI (RFC 9112 section 3.2)", uri)
	case !strings.HasPrefix(rest, "//") || r.URL == nil || r.URL.Host == "":
		return fmt.Sprintf("request target %q names no host (RFC 9110 section 4.2.1)", uri)
	}
	return ""
}

// validPort reports whether p is a port as RFC 3986 Section 3.2.3 writes
// one: digits, possibly none, and at most 65535.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}

// validMethod reports whether m is a non-empty token (RFC 9110 Sections
// 5.6.2 and 9.1), the only form a request line can carry.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

// requestLineQuery returns q as the upstream's request line carries it:
// as it came, but for the bytes a query never holds (RFC 3986 Section
// 3.4) that browsers percent-encode themselves (WHATWG URL's query
// percent-encode set), '"', '<', '>' and every byte from 0x80, which
// are percent-encoded. Over HTTP/2 and HTTP/3 the :path is a field value
// and may carry them raw, and net/http's HTTP/1.1 server accepts them in
// a request line, but a strict upstream refuses such a request line, and
// one that closed the connection on it had the request answered 502 and
// counted against it. An application decoding its query reads the same
// bytes either way. Whitespace, control bytes and '#' never get here
// (badQueryByte); '[', ']', '{', '|', '}', '\', '^' and '`', which
// browsers send raw, pass as they came.
func requestLineQuery(q string) string {
	n := 0
	for i := 0; i < len(q); i++ {
		if queryEscapes(q[i]) {
			n++
		}
	}
	if n == 0 {
		return q
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(q)+2*n)
	for i := 0; i < len(q); i++ {
		if c := q[i]; queryEscapes(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func queryEscapes(c byte) bool { return c >= 0x80 || c == '"' || c == '<' || c == '>' }

// RouteOptions are per-route exceptions to CheckRequest's rules, carried in
// the request context from the router to the HTTPProxy.
type RouteOptions struct {
	// AllowEncodedSlashes lets a path with "%2F" or "%5C" through, still
	// encoded. For upstreams that keep them as data, e.g. APIs whose
	// identifiers contain "/". Dot segments behind them are refused
	// anyway.
	AllowEncodedSlashes bool
	// KeepEmptySegments forwards the path with its empty segments ("//")
	// as the client sent them, where by default they are merged into one
	// "/" (NormalizePath). The route is still matched by the merged path,
	// so "//admin/x" never reaches this route unless it is the route
	// "/admin/x" matches; a path whose dot segments resolve otherwise
	// with its empty segments kept ("/a//../b") gets 400
	// (ErrPathEmptySegments). For upstreams that give "//" a meaning of
	// their own, e.g. an object store whose keys may begin with "/".
	KeepEmptySegments bool
}

type routeOptionsKey struct{}

// WithRouteOptions returns a copy of ctx carrying the matched route's
// options.
func WithRouteOptions(ctx context.Context, o RouteOptions) context.Context {
	return context.WithValue(ctx, routeOptionsKey{}, o)
}

func routeOptionsFrom(ctx context.Context) RouteOptions {
	o, _ := ctx.Value(routeOptionsKey{}).(RouteOptions)
	return o
}

// CheckRoute applies the rules that depend on the matched route, taken
// from the context (WithRouteOptions): a path with an encoded slash is
// refused with 400 unless the route allows it, because an upstream that
// decodes "%2F" would see more segments than the router matched; a route
// that keeps empty segments gets the path with them (r.URL.Path and
// RawPath are set to NormalizePathKeepingSlashes' result), or 400 when
// they change what it resolves to. HTTPProxy calls it before picking an
// upstream.
func CheckRoute(r *http.Request) (status int, reason string) {
	o := routeOptionsFrom(r.Context())
	norm := NormalizePath
	if o.KeepEmptySegments {
		norm = NormalizePathKeepingSlashes
	}
	p, err := norm(requestPath(r))
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	if p.EncodedSlash && !o.AllowEncodedSlashes {
		return http.StatusBadRequest, fmt.Sprintf("path %q has an encoded slash (%%2F or %%5C); this route does not allow them", requestPath(r))
	}
	if o.KeepEmptySegments {
		r.URL.Path, r.URL.RawPath = p.Decoded, p.Escaped
	}
	return 0, ""
}

// WriteRefusal answers a request refused by CheckRequest or CheckRoute with
// a short plain-text body such as "400 Bad Request: path escapes the root".
func WriteRefusal(w http.ResponseWriter, status int, reason string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%d %s: %s\n", status, http.StatusText(status), reason)
}

// sanitizeUpgrade keeps a WebSocket upgrade and strips every other one.
func sanitizeUpgrade(r *http.Request) {
	h := r.Header
	upgrading := httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade")
	// A handshake has no body (RFC 6455 Section 4.1): with one, the
	// switch would come after bytes whose framing the upstream may read
	// otherwise than pqedge (one that skips a GET's body reads it as the
	// start of the tunnel), and a chunked request's promise to close the
	// connection after it (CheckRequest) would be lost to the tunnel.
	websocket := upgrading && r.Method == http.MethodGet && r.ProtoMajor == 1 && r.ProtoMinor >= 1 &&
		r.ContentLength == 0 && len(r.TransferEncoding) == 0 &&
		httpguts.HeaderValuesContainsToken(h["Upgrade"], "websocket")
	if websocket {
		h["Upgrade"] = []string{"websocket"}
	} else {
		h.Del("Upgrade")
		dropConnectionToken(h, "upgrade")
	}
	// RFC 9113 Section 3.1 retired the h2c upgrade; its settings header
	// has no other use.
	h.Del("Http2-Settings")
	dropConnectionToken(h, "http2-settings")
}

// dropConnectionToken removes token (case-insensitively) from the
// Connection header, deleting the header once it is empty.
func dropConnectionToken(h http.Header, token string) {
	vs, ok := h["Connection"]
	if !ok || !httpguts.HeaderValuesContainsToken(vs, token) {
		// Nothing to drop: a browser's "keep-alive" or a client's
		// "close" is kept as sent, without rebuilding it per request.
		return
	}
	var kept []string
	for _, v := range vs {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, token) {
				kept = append(kept, t)
			}
		}
	}
	if len(kept) == 0 {
		h.Del("Connection")
		return
	}
	h["Connection"] = []string{strings.Join(kept, ", ")}
}

// errRefused marks a request refused before any upstream was picked, for
// RequestInfo.Err.
var errRefused = errors.New("request refused")
