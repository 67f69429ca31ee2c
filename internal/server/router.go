package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/pqedge/pqedge/internal/h2guard"
	"github.com/pqedge/pqedge/internal/pages"
	"github.com/pqedge/pqedge/internal/plan"
	"github.com/pqedge/pqedge/proxy"
)

// PQWarningHeader is set on responses to classical connections of a site
// under the pq-warn policy.
const PQWarningHeader = pages.PQWarningHeader

// router serves one https listener of a generation: it finds the site of
// the request, the route by longest path prefix, and logs and counts the
// request.
type router struct {
	l *listenerRuntime
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reserveRequestStack(0) // before the handler chain, not in the middle of it (stack.go)
	start := time.Now()
	ci := connInfoFrom(r.Context())
	if ci == nil {
		// Every connection reaches the server through the accept loop,
		// which records its handshake before handing it over.
		http.Error(w, "500 Internal Server Error: no TLS handshake record for this connection", http.StatusInternalServerError)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	var ex exchange
	accounted := false
	defer func() {
		if !accounted {
			// The handler panicked, and the panic goes on to the
			// server: most often the proxy's http.ErrAbortHandler for a
			// response cut short after its head (the upstream broke the
			// body, the client stopped reading past
			// timeouts.response_write or left). Such requests were
			// neither counted nor logged.
			ex.aborted = true
			rt.account(r, sw, ci, &ex, time.Since(start))
		}
	}()
	// Framing, method, protocol switch and path rules come first: what is
	// routed below is the normalised request (proxy.CheckRequest).
	if r.Method == http.MethodOptions && r.RequestURI == "*" {
		// "OPTIONS *" asks about the server, not a resource (RFC 9110
		// Section 9.3.7): net/http answers it itself over HTTP/1.x and
		// HTTP/2, 200 with no body, before any handler; quic-go's HTTP/3
		// server hands it on, and the path check answered 400. The same
		// answer over all three.
		sw.Header().Set("Content-Length", "0")
		sw.WriteHeader(http.StatusOK)
	} else if status, why := proxy.CheckRequest(sw, r); status != 0 {
		proxy.WriteRefusal(sw, status, why)
		ex.refused = why
	} else if key, keyed := requestClientKey(ci.remote); keyed && !rt.l.gen.srv.inflight.acquire(key, rt.l.gen.plan.Limits.RequestsPerClient) {
		// RFC 6585 section 4. Over HTTP/2 and HTTP/3 it counts in the
		// connection's budget of refused requests (account), so a client
		// that keeps asking is closed.
		sw.Header().Set("Retry-After", "1")
		proxy.WriteRefusal(sw, http.StatusTooManyRequests, tooManyInFlight)
		ex.refused = tooManyInFlight
	} else {
		if keyed {
			defer rt.l.gen.srv.inflight.release(key)
		}
		rt.route(sw, r, ci, &ex)
	}
	boundLastWrite(w, r, rt.l.gen.plan.Timeouts.ResponseWrite)
	accounted = true
	rt.account(r, sw, ci, &ex, time.Since(start))
}

// boundLastWrite gives what is left of an HTTP/2 or HTTP/3 response one
// write deadline, timeouts.response_write from now: when its handler
// returns, the server writes the response's buffered end after it (the
// whole of a short answer: a refusal, 404, 421, 429, 503). A client that
// holds its flow-control window at zero (SETTINGS_INITIAL_WINDOW_SIZE 0
// and no WINDOW_UPDATE, RFC 9113 section 6.9.2) never let that write
// end, so every answer pqedge wrote itself kept its stream, its handler
// goroutine and buffers (~16 KiB) for the connection's life, 250 a
// connection; now the stream is reset when the deadline passes. The
// proxy bounds the writes of the responses it copies itself, and leaves
// only the end, which needs no window (END_STREAM on an empty DATA
// frame, trailers), to this deadline. Not HTTP/1.x: a deadline there is
// the connection's and would outlive the request, and TCP buffers take
// a short answer whole.
func boundLastWrite(w http.ResponseWriter, r *http.Request, d time.Duration) {
	if r.ProtoMajor < 2 || d <= 0 {
		return
	}
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}

// tooManyInFlight is the refusal of a request over limits.requests_per_client.
const tooManyInFlight = "too many requests in flight from this client address (limits.requests_per_client)"

// exchange is what the router did with one request, for the log.
type exchange struct {
	site    string         // "" when no site served it
	series  *requestSeries // the site's; nil when no site served it
	route   string
	info    *proxy.RequestInfo // nil when nothing was proxied
	refused string             // why the request was refused before routing
	// aborted: the handler panicked, so the response was cut short
	// (reset stream, closed connection) after what sw counted.
	aborted bool
}

// route finds the request's site and route and serves it, filling in ex
// as it goes, so that a handler's panic leaves ex saying what was done.
func (rt *router) route(sw *statusWriter, r *http.Request, ci *connInfo, ex *exchange) {
	g := rt.l.gen
	site, reason := rt.siteFor(r, ci)
	if site == nil {
		g.srv.metrics.misdirected.WithLabelValues(ci.site, reason).Inc()
		http.Error(sw, "421 Misdirected Request: this connection cannot serve "+plan.HostName(r.Host)+" ("+reason+"); open a new connection for it", http.StatusMisdirectedRequest)
		return
	}
	ex.site, ex.series = site.Name, site.series
	if site.Policy.WarnClassical && !ci.handshake.PostQuantum() {
		sw.Header().Set(PQWarningHeader, pqWarning(ci.handshake))
	}
	i := routeIndex(site.Site, r.URL.Path)
	if i < 0 {
		http.Error(sw, "404 Not Found: no route for this path", http.StatusNotFound)
		return
	}
	route := &site.Routes[i]
	ex.route = route.Prefix
	h := site.routes[i]
	var ctx context.Context
	if _, proxied := h.(*proxy.HTTPProxy); proxied {
		ctx, ex.info = proxy.WithRequestInfo(r.Context())
		if route.AllowEncodedSlashes || route.KeepEmptySegments {
			ctx = proxy.WithRouteOptions(ctx, proxy.RouteOptions{AllowEncodedSlashes: route.AllowEncodedSlashes, KeepEmptySegments: route.KeepEmptySegments})
		}
	} else {
		// Only the built-in pages show the connection.
		ctx = withPage(r.Context(), site, ci)
		// A page is written at once: its writes share one deadline.
		boundLastWrite(sw, r, g.plan.Timeouts.ResponseWrite)
	}
	if isUpgrade(r) {
		// A hijacked connection outlives http.Server's tracking: the
		// generation's drain waits for its handler instead.
		g.upgraded.Add(1)
		defer g.upgraded.Done()
	}
	// The request's trailers arrive on r, the server's; the copy shares them.
	h.ServeHTTP(sw, proxy.RequestWithContext(r, ctx))
}

// account counts and logs one request.
func (rt *router) account(r *http.Request, sw *statusWriter, ci *connInfo, ex *exchange, took time.Duration) {
	g := rt.l.gen
	code := sw.code()
	series := rt.l.noSite
	if ex.series != nil {
		series = ex.series
	}
	clientErr := ex.refused != "" || ex.info != nil && ex.info.ClientError
	series.request(code, took, clientErr)
	if refusedHere(code, ex.info) {
		// Over HTTP/2 one HEADERS frame buys such an answer, and a
		// client that keeps within the stream limit and reads them is
		// never reset: the connection has a budget of them (h2guard).
		if g, ok := r.Context().Value(h2GuardKey{}).(*h2guard.Conn); ok {
			g.Refused()
		} else if qc := quicConnFrom(r.Context()); qc != nil {
			qc.budget.count(h3AbuseRefused, time.Now())
		}
	}
	var origin *proxy.HandshakeFacts // the origin leg of a request to an https:// upstream
	if ex.info != nil {
		origin = ex.info.UpstreamTLS
	}
	if origin != nil {
		g.srv.adoption.RecordOrigin(g.srv.now(), ci.handshake.PostQuantum(), origin.PQ)
	}
	if !g.plan.AccessLog {
		return
	}
	attrs := []any{
		"site", ex.site, "method", r.Method, "path", r.URL.Path, "proto", r.Proto,
		"status", code, "bytes", sw.bytes, "duration_ms", float64(took.Microseconds()) / 1000,
		"remote", r.RemoteAddr, "route", ex.route,
		"group", ci.handshake.GroupName(), "pq", ci.handshake.PostQuantum(), "signature", ci.handshake.SignatureName(),
	}
	if origin != nil {
		attrs = append(attrs, "upstream_group", origin.Group, "upstream_pq", origin.PQ)
	}
	if ex.refused != "" {
		attrs = append(attrs, "refused", ex.refused)
	}
	if ex.aborted {
		attrs = append(attrs, "aborted", true)
	}
	if info := ex.info; info != nil {
		if info.Upstream != "" {
			attrs = append(attrs, "upstream", info.Upstream)
		}
		if info.Err != nil {
			key := "upstream_err"
			if info.ClientError {
				key = "client_err"
			}
			attrs = append(attrs, key, info.Err.Error())
		}
	}
	g.log.Info("request", attrs...)
}

// refusedHere reports whether pqedge answered a request with a client
// error of its own, no upstream involved: a refused method, path or
// framing (400, 405), 421, no route (404), a built-in page's 4xx, a
// refusal by the proxy before it picked an upstream; or the proxy's
// answer to the client's own fault after it picked one (a request body
// that broke its framing, stalled or was too large: 400, 408, 413), which
// cost an upstream request besides. Not 499: a client that reset its
// stream, which h2guard counts as a reset already; not 5xx: an unhealthy
// pool is not the client's doing; not an upstream's own 4xx.
func refusedHere(code int, info *proxy.RequestInfo) bool {
	if code < 400 || code >= 500 || code == 499 {
		return false
	}
	return info == nil || info.Upstream == "" || info.ClientError
}

// siteFor returns the site that serves r on this connection, or nil and
// why not (the request is then answered 421).
//
// The Host resolves through the listener's resolver like SNI did: exact
// name, then wildcard (case-insensitive, a trailing dot ignored); a Host
// that names no site here is served by the site the handshake chose, but
// on a strict_sni listener refused ("unknown_name") unless it is an IP
// address. A Host of another site than the handshake's is
// served only if this connection qualifies for that site too (HTTP/2
// connection coalescing, RFC 9113 section 9.1.1; RFC 9110 section 15.5.20
// for 421): the certificate sent covers the name, and the negotiated key
// exchange and version meet that site's policy. Otherwise a classical
// client could reach a pq-only site through a pq-preferred one's handshake.
// The handshake's site is looked up by name in this generation, so a
// connection handed to a newer generation is served by its sites.
func (rt *router) siteFor(r *http.Request, ci *connInfo) (*siteRuntime, string) {
	l := rt.l
	hs := l.site(l.gen.plan.Site(ci.site))
	if hs == nil {
		// Not in this generation (a reload renamed or removed the site
		// between the handshake and the hand-off): the default serves,
		// under the same rule as any other site.
		hs = l.site(l.Resolver.Default())
		if hs == nil {
			return nil, "no site"
		}
		if reason := qualifies(hs, ci, ci.handshake.ServerName); reason != "" {
			return nil, reason
		}
	}
	host := plan.HostName(r.Host)
	if host == "" || l.combo != nil {
		return hs, ""
	}
	ps, _ := l.Resolver.ByName(host)
	if ps == nil && l.Resolver.Strict() && !isIPLiteral(host) {
		// A strict_sni listener refuses at the handshake a name no site
		// serves; the same name in Host (a connection made for a served
		// name, or made by address without SNI) is refused too, or
		// strict_sni would be undone by one header. An address is no
		// server name (RFC 6066 section 3): a client connecting by
		// address sends none and names the address in Host.
		return nil, "unknown_name"
	}
	target := l.site(ps)
	if target == nil || target == hs {
		return hs, ""
	}
	if reason := qualifies(target, ci, host); reason != "" {
		return nil, reason
	}
	return target, ""
}

// isIPLiteral reports whether host, a Host header's host part (HostName),
// is an IP address.
func isIPLiteral(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// qualifies says why a connection may not serve a site under name ("" when
// it may): the certificate it presented must cover name and its handshake
// must meet the site's TLS policy.
func qualifies(site *siteRuntime, ci *connInfo, name string) string {
	if name != "" && (ci.leaf == nil || ci.leaf.VerifyHostname(name) != nil) {
		return "certificate"
	}
	if err := site.Policy.Permits(ci.handshake); err != nil {
		return "policy"
	}
	return ""
}

// routeIndex returns the index of the route for a path, longest prefix
// first; -1 for none.
func routeIndex(s *plan.Site, path string) int {
	for i := range s.Routes {
		if strings.HasPrefix(path, s.Routes[i].Prefix) {
			return i
		}
	}
	return -1
}

// isUpgrade reports a protocol-switch request (RFC 9110 section 7.8).
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && headerHasToken(r.Header, "Connection", "upgrade")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// statusWriter records the status code and body size for logs and metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 || w.status == http.StatusContinue || w.status == http.StatusEarlyHints {
		// 1xx answers are interim (RFC 9110 section 15.2), except 101,
		// which ends the HTTP exchange: that is what gets logged.
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack takes the connection over for a protocol switch (WebSockets).
// httputil.ReverseProxy writes the upstream's 101 itself after hijacking,
// past WriteHeader: the hijack is what says the answer was 101.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}
