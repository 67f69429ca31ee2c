package server

import (
	"crypto/tls"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pqedge/pqedge/internal/tickets"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// metrics are pqedge's Prometheus series, in a registry of their own (no
// package globals, so tests can run servers side by side). It is the first
// handshake sink.
type metrics struct {
	reg *prometheus.Registry

	handshakes         *prometheus.CounterVec
	handshakeFailures  *prometheus.CounterVec
	handshakeSeconds   *prometheus.HistogramVec
	resumptions        *prometheus.CounterVec
	requests           *prometheus.CounterVec
	requestSeconds     *prometheus.HistogramVec
	misdirected        *prometheus.CounterVec
	upstreamHealthy    *prometheus.GaugeVec
	upstreamTLS        *prometheus.CounterVec
	upstreamTLSFails   *prometheus.CounterVec
	streamsActive      prometheus.Gauge
	streams            *prometheus.CounterVec
	reloads            *prometheus.CounterVec
	certExpiryDays     *prometheus.GaugeVec
	certReloadFailures *prometheus.CounterVec
	ticketRefreshes    *prometheus.CounterVec
	ticketKeys         prometheus.Gauge
	h1Refused          *prometheus.CounterVec
	h2Abuse            *prometheus.CounterVec
	h3Abuse            *prometheus.CounterVec
	clientErrors       *prometheus.CounterVec
	quic               *quicMetrics // HTTP/3 listeners (quic_metrics.go)

	// handshakeSeries caches the children of handshakes and
	// handshakeSeconds by handshakeKey (sync.Map of *handshakeRefs).
	handshakeSeries sync.Map
}

// handshakeKey is what the labels of one pqedge_handshakes_total series
// are made from, before any string is: the event's names and the raw
// group and scheme. A label lookup (WithLabelValues) validates and
// hashes nine strings and takes the vector's lock, about 4,000
// instructions per handshake in callgrind (docs/BENCHMARKS.md, "Handshake
// with one request"); a lookup of this key is a tenth of that.
type handshakeKey struct {
	listener, site, family, transport string
	group                             tls.CurveID
	signature                         tls.SignatureScheme
	helloRetry, resumed               bool
}

// handshakeRefs are the series of one handshakeKey.
type handshakeRefs struct {
	count   prometheus.Counter
	seconds prometheus.Observer
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_handshakes_total",
			Help: "Completed TLS handshakes by negotiated group, whether it is post-quantum, server signature scheme, client family, HelloRetryRequest, resumption and transport.",
		}, []string{"listener", "site", "group", "pq", "signature", "family", "hello_retry", "resumed", "transport"}),
		handshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_handshake_failures_total",
			Help: "Failed TLS handshakes by reason and client family (no_common_group: the client offered none of its site's groups, e.g. a classical client of a pq-only site).",
		}, []string{"listener", "reason", "family", "transport"}),
		handshakeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pqedge_handshake_duration_seconds",
			Help:    "Time from accept to the end of the server's TLS handshake, including the client's round trips.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"listener", "pq"}),
		resumptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_resumptions_total",
			Help: "Resumed TLS handshakes by site and by who issued the ticket: self (this node) or peer (another node sharing the ticket keys).",
		}, []string{"site", "origin"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_http_requests_total",
			Help: "HTTP requests by site and status code.",
		}, []string{"site", "code"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pqedge_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, until the response handler returned.",
			Buckets: prometheus.DefBuckets,
		}, []string{"site"}),
		misdirected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_misdirected_requests_total",
			Help: "Requests answered 421 because their Host belongs to a site this connection's handshake does not qualify for (its certificate does not cover the name, or its key exchange does not meet that site's policy), or, on a strict_sni listener, because no site serves it (unknown_name), by the handshake's site.",
		}, []string{"site", "reason"}),
		upstreamHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pqedge_upstream_healthy",
			Help: "1 when an upstream is picked for new requests, 0 when it failed health checks or is ejected; one series per upstream of a pool that a serving or draining config uses.",
		}, []string{"pool", "upstream"}),
		upstreamTLS: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_upstream_handshakes_total",
			Help: "Completed TLS handshakes with https:// upstreams (origin legs) by pool, negotiated group and whether it is post-quantum; connections, not requests (keep-alive connections carry many); health checks are not counted.",
		}, []string{"pool", "group", "pq"}),
		upstreamTLSFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_upstream_handshake_failures_total",
			Help: "Failed TLS handshakes with https:// upstreams by pool and reason (certificate, client_certificate, no_common_group: refused by pq_required, version, timeout, other); each counts against the upstream's health.",
		}, []string{"pool", "reason"}),
		streamsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pqedge_streams_active",
			Help: "TCP streams being proxied now.",
		}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_streams_total",
			Help: "Finished TCP streams by listener and how they ended (closed, idle_timeout, upstream_unreachable, shutdown, reset).",
		}, []string{"listener", "end"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_config_reloads_total",
			Help: "Configuration reloads by result (ok, invalid): a file that does not load is invalid too.",
		}, []string{"result"}),
		certExpiryDays: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pqedge_certificate_expiry_days",
			Help: "Days until the certificate a site serves expires, by chain kind (classical, pq).",
		}, []string{"site", "kind"}),
		certReloadFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_certificate_reload_failures_total",
			Help: "Changed or due certificates that failed to load or renew; the site kept its current ones.",
		}, []string{"site"}),
		ticketRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_ticket_key_refreshes_total",
			Help: "Session-ticket key refreshes from the key source by result (ok, error); on error the current keys stay in use.",
		}, []string{"result"}),
		ticketKeys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pqedge_ticket_keys",
			Help: "Session-ticket keys that can open tickets now.",
		}),
		h1Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_http1_refused_total",
			Help: "HTTP/1.x requests refused below the HTTP server for ambiguous framing (400 and the connection closed; RFC 9112 section 6.3) a request target longer than limits.request_header (414 and the connection closed; RFC 9112 section 3), or more header fields than limits.request_header_fields (431 and the connection closed; more trailer fields: 400), by listener and what was wrong.",
		}, []string{"listener", "reason"}),
		h2Abuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_http2_abuse_total",
			Help: "HTTP/2 connections closed for abuse, by listener and reason: rapid_reset (RST_STREAM flood), provoked_reset (streams the server reset for the client's errors, CVE-2025-8671), empty_frames (empty CONTINUATION or DATA flood, or header blocks sent in fragments under 1 KiB), control_frames (PING, SETTINGS, PRIORITY, PRIORITY_UPDATE, WINDOW_UPDATE or unknown frames beyond the connection's requests and downloads), refused_requests (requests pqedge answered itself with an error, without an upstream: refused method or path, 421, no route), header_timeout (a header block outlasting timeouts.read_header), backlog (more than 2,000 answers the client asked for, responses, resets or ACKs, not yet written: it does not read them).",
		}, []string{"listener", "reason"}),
		h3Abuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_http3_abuse_total",
			Help: "HTTP/3 connections closed with H3_EXCESSIVE_LOAD, by listener and reason: cancelled_requests (requests the client stopped, STOP_SENDING, while pqedge answered them: rapid reset), refused_requests (requests pqedge answered itself with an error, without an upstream, or reset as malformed), streams_without_request (request streams reset or ended before their HEADERS frame was whole, or with more unknown frames before it than pqedge looks past), header_timeouts (HEADERS not whole within timeouts.read_header), unknown_uni_streams (unidirectional streams of a reserved or unknown type, or none). The budget is limits.h2_resets per limits.h2_reset_window, as over HTTP/2.",
		}, []string{"listener", "reason"}),
		clientErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_client_errors_total",
			Help: "Requests the client broke or was refused (malformed or stalled body, refused path or method, client gone), by site: answered as the client's fault, never counted against an upstream.",
		}, []string{"site"}),
	}
	m.reg.MustRegister(m.certReloadFailures, m.handshakes, m.handshakeFailures, m.handshakeSeconds, m.resumptions,
		m.requests, m.requestSeconds, m.misdirected, m.upstreamHealthy, m.upstreamTLS, m.upstreamTLSFails, m.streamsActive, m.streams, m.reloads,
		m.certExpiryDays, m.ticketRefreshes, m.ticketKeys, m.h1Refused, m.h2Abuse, m.h3Abuse, m.clientErrors,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.quic = newQUICMetrics(m.reg)
	return m
}

// requestSeries are the per-request series of one site (or of the requests
// no site served, site ""): pqedge_http_requests_total by status code, the
// duration histogram and client errors. A router looks them up here, once
// per series and generation, instead of per request: a label lookup
// checks and hashes the label values and takes the vector's lock. Each
// series is made at its first use, as WithLabelValues would.
type requestSeries struct {
	site   string
	m      *metrics
	byCode [500]atomic.Pointer[counterRef] // status 100 to 599
	// seconds and clientErrors hold a prometheus.Observer and Counter.
	seconds      atomic.Pointer[observerRef]
	clientErrors atomic.Pointer[counterRef]
}

type (
	counterRef  struct{ prometheus.Counter }
	observerRef struct{ prometheus.Observer }
)

func (m *metrics) requestSeries(site string) *requestSeries {
	return &requestSeries{site: site, m: m}
}

// request counts one request answered with code, which took took.
func (rs *requestSeries) request(code int, took time.Duration, clientErr bool) {
	if code >= 100 && code <= 599 {
		p := &rs.byCode[code-100]
		c := p.Load()
		if c == nil {
			c = &counterRef{rs.m.requests.WithLabelValues(rs.site, strconv.Itoa(code))}
			p.Store(c)
		}
		c.Inc()
	} else {
		rs.m.requests.WithLabelValues(rs.site, strconv.Itoa(code)).Inc()
	}
	o := rs.seconds.Load()
	if o == nil {
		o = &observerRef{rs.m.requestSeconds.WithLabelValues(rs.site)}
		rs.seconds.Store(o)
	}
	o.Observe(took.Seconds())
	if clientErr {
		c := rs.clientErrors.Load()
		if c == nil {
			c = &counterRef{rs.m.clientErrors.WithLabelValues(rs.site)}
			rs.clientErrors.Store(c)
		}
		c.Inc()
	}
}

// handshake counts one handshake event.
func (m *metrics) handshake(ev *HandshakeEvent) {
	h := ev.Handshake
	if h == nil {
		m.handshakeFailures.WithLabelValues(ev.Listener, ev.Reason, ev.Family, ev.Transport).Inc()
		return
	}
	refs := m.handshakeRefs(ev, h)
	refs.count.Inc()
	refs.seconds.Observe(h.Duration.Seconds())
	if h.Resumed && ev.Ticket != tickets.OriginNone {
		m.resumptions.WithLabelValues(ev.Site, string(ev.Ticket)).Inc()
	}
}

// handshakeRefs returns the series of a completed handshake's labels,
// made at their first use as WithLabelValues would. The series of a
// listener or site a reload removed stay in the vectors as they did
// before the cache; the cache holds no more than the vectors.
func (m *metrics) handshakeRefs(ev *HandshakeEvent, h *pqtls.Handshake) *handshakeRefs {
	k := handshakeKey{listener: ev.Listener, site: ev.Site, family: ev.Family, transport: ev.Transport,
		group: h.Group, signature: h.Signature, helloRetry: h.HelloRetry, resumed: h.Resumed}
	if r, ok := m.handshakeSeries.Load(k); ok {
		return r.(*handshakeRefs)
	}
	pq := strconv.FormatBool(h.PostQuantum())
	r := &handshakeRefs{
		count: m.handshakes.WithLabelValues(ev.Listener, ev.Site, h.GroupName(), pq, h.SignatureName(), ev.Family,
			strconv.FormatBool(h.HelloRetry), strconv.FormatBool(h.Resumed), ev.Transport),
		seconds: m.handshakeSeconds.WithLabelValues(ev.Listener, pq),
	}
	actual, _ := m.handshakeSeries.LoadOrStore(k, r)
	return actual.(*handshakeRefs)
}

// upstreamHandshake counts one origin-leg handshake; it is every pool's
// proxy.PoolOptions.OnTLSHandshake.
func (m *metrics) upstreamHandshake(h proxy.UpstreamHandshake) {
	if h.Err != nil {
		m.upstreamTLSFails.WithLabelValues(h.Pool, h.Err.Reason).Inc()
		return
	}
	m.upstreamTLS.WithLabelValues(h.Pool, h.Facts.Group, strconv.FormatBool(h.Facts.PQ)).Inc()
}

func (m *metrics) ticketRefresh(r tickets.RefreshResult) {
	result := "ok"
	if r.Err != nil {
		result = "error"
	}
	m.ticketRefreshes.WithLabelValues(result).Inc()
	m.ticketKeys.Set(float64(r.Keys))
}

// seriesKey names one pqedge_upstream_healthy series.
type seriesKey struct{ pool, addr string }

// upstreamChanged is the health registry's OnChange: the gauge follows the
// registry for every pool that a live generation has, and the anycast
// prefixes whose listeners use the pool may change health.
func (s *Server) upstreamChanged(proxy.UpstreamChange) {
	s.syncUpstreamMetrics()
	s.reportAnycast()
}

// syncUpstreamMetrics sets pqedge_upstream_healthy for every upstream of
// every pool of a live generation (serving or draining) and deletes the
// series of upstreams no live generation uses, so a removed upstream does
// not look down forever and a retired pool does not leave a stale 0.
func (s *Server) syncUpstreamMetrics() {
	want := map[seriesKey]bool{}
	for _, g := range s.liveGenerations() {
		for name, p := range g.pools {
			for _, u := range p.Upstreams() {
				k := seriesKey{name, u.Addr}
				// The newest generation's view wins: it is listed first.
				if _, seen := want[k]; !seen {
					want[k] = u.Healthy
				}
			}
		}
	}
	m := s.metrics
	s.metricsMu.Lock()
	defer s.metricsMu.Unlock()
	for k := range s.upstreamSeries {
		if _, ok := want[k]; !ok {
			m.upstreamHealthy.DeleteLabelValues(k.pool, k.addr)
			delete(s.upstreamSeries, k)
		}
	}
	for k, healthy := range want {
		v := 0.0
		if healthy {
			v = 1
		}
		m.upstreamHealthy.WithLabelValues(k.pool, k.addr).Set(v)
		s.upstreamSeries[k] = true
	}
}
