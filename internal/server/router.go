package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pqedge/pqedge/proxy"
)

// PQWarningHeader is set on responses to classical connections of a site
// under the pq-warn policy.
const PQWarningHeader = "PQEdge-PQ-Warning"

// router serves one https listener of a generation: it finds the site (by
// Host, falling back to the site SNI chose), the route by longest path
// prefix, and logs and counts the request.
type router struct {
	listener *listenerRuntime
	gen      *generation
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ci := connInfoFrom(r.Context())
	site := rt.siteFor(r, ci)
	sw := &statusWriter{ResponseWriter: w}
	ctx, info := proxy.WithRequestInfo(r.Context())
	r = r.WithContext(ctx)

	if site != nil && ci != nil && site.policy.WarnClassical && !ci.handshake.PostQuantum() {
		sw.Header().Set(PQWarningHeader, "this connection uses classical key exchange ("+ci.handshake.GroupName()+"); it is not protected against harvest-now-decrypt-later. Update your browser or client.")
	}
	routeName := ""
	switch h := site.match(r.URL.Path); {
	case site == nil:
		http.Error(sw, "421 Misdirected Request: no site serves this host", http.StatusMisdirectedRequest)
	case h == nil:
		http.Error(sw, "404 Not Found: no route for this path", http.StatusNotFound)
	default:
		routeName = h.prefix
		h.handler.ServeHTTP(sw, r)
	}
	took := time.Since(start)

	siteName := ""
	if site != nil {
		siteName = site.name
	}
	code := sw.code()
	rt.gen.metrics.requests.WithLabelValues(siteName, strconv.Itoa(code)).Inc()
	rt.gen.metrics.requestSeconds.WithLabelValues(siteName).Observe(took.Seconds())
	if !rt.gen.cfg.Log.AccessLog() {
		return
	}
	attrs := []any{
		"site", siteName, "method", r.Method, "path", r.URL.Path, "proto", r.Proto,
		"status", code, "bytes", sw.bytes, "duration_ms", float64(took.Microseconds()) / 1000,
		"remote", r.RemoteAddr, "route", routeName,
	}
	if ci != nil {
		attrs = append(attrs, "group", ci.handshake.GroupName(), "pq", ci.handshake.PostQuantum(), "signature", ci.handshake.SignatureName())
	}
	if info.Upstream != "" {
		attrs = append(attrs, "upstream", info.Upstream)
	}
	if info.Err != nil {
		attrs = append(attrs, "upstream_err", info.Err.Error())
	}
	rt.gen.log.Info("request", attrs...)
}

// siteFor prefers the Host header's site, so a connection reused for several
// names (HTTP/2 connection coalescing) reaches the right one; without a match
// the site SNI chose serves.
func (rt *router) siteFor(r *http.Request, ci *connInfo) *siteRuntime {
	host := r.Host
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	host = strings.Trim(host, "[]")
	l := rt.listener
	if s, ok := l.byName[strings.ToLower(host)]; ok {
		return s
	}
	if ci != nil && ci.site != nil {
		return ci.site
	}
	return l.siteFor(host)
}

func (s *siteRuntime) match(path string) *route {
	if s == nil {
		return nil
	}
	for i := range s.routes {
		if strings.HasPrefix(path, s.routes[i].prefix) {
			return &s.routes[i]
		}
	}
	return nil
}

// statusWriter records the status code and body size for logs and metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
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

// Unwrap lets http.ResponseController reach Flush and Hijack (WebSockets).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
