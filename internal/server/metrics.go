package server

import (
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// metrics are pqedge's Prometheus series, in a registry of their own (no
// package globals, so tests can run servers side by side).
type metrics struct {
	reg *prometheus.Registry

	handshakes         *prometheus.CounterVec
	handshakeFailures  *prometheus.CounterVec
	handshakeSeconds   *prometheus.HistogramVec
	requests           *prometheus.CounterVec
	requestSeconds     *prometheus.HistogramVec
	upstreamHealthy    *prometheus.GaugeVec
	streamsActive      prometheus.Gauge
	reloads            *prometheus.CounterVec
	certExpiryDays     *prometheus.GaugeVec
	certReloadFailures *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_handshakes_total",
			Help: "Completed TLS handshakes by negotiated group, whether it is post-quantum, server signature scheme, client family and HelloRetryRequest.",
		}, []string{"listener", "site", "group", "pq", "signature", "family", "hello_retry", "resumed"}),
		handshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_handshake_failures_total",
			Help: "Failed TLS handshakes by reason and client family (no_common_group counts classical clients refused by pq-only).",
		}, []string{"listener", "reason", "family"}),
		handshakeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pqedge_handshake_duration_seconds",
			Help:    "Time from accept to the end of the server's TLS handshake, including the client's round trips.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"listener", "pq"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_http_requests_total",
			Help: "HTTP requests by site and status code.",
		}, []string{"site", "code"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pqedge_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, until the response handler returned.",
			Buckets: prometheus.DefBuckets,
		}, []string{"site"}),
		upstreamHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pqedge_upstream_healthy",
			Help: "1 when an upstream is picked for new requests, 0 when it failed health checks or is ejected.",
		}, []string{"pool", "upstream"}),
		streamsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pqedge_streams_active",
			Help: "TCP streams being proxied now.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_config_reloads_total",
			Help: "Configuration reloads by result (ok, invalid).",
		}, []string{"result"}),
		certExpiryDays: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pqedge_certificate_expiry_days",
			Help: "Days until the certificate a site serves expires, by chain kind (classical, pq).",
		}, []string{"site", "kind"}),
		certReloadFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pqedge_certificate_reload_failures_total",
			Help: "Changed or due certificates that failed to load or renew; the site kept its current ones.",
		}, []string{"site"}),
	}
	m.reg.MustRegister(m.certReloadFailures, m.handshakes, m.handshakeFailures, m.handshakeSeconds, m.requests, m.requestSeconds,
		m.upstreamHealthy, m.streamsActive, m.reloads, m.certExpiryDays,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handshakeDone(listener string, site *siteRuntime, h *pqtls.Handshake, family string) {
	siteName := ""
	if site != nil {
		siteName = site.name
	}
	pq := strconv.FormatBool(h.PostQuantum())
	m.handshakes.WithLabelValues(listener, siteName, h.GroupName(), pq, h.SignatureName(), family,
		strconv.FormatBool(h.HelloRetry), strconv.FormatBool(h.Resumed)).Inc()
	m.handshakeSeconds.WithLabelValues(listener, pq).Observe(h.Duration.Seconds())
}

func (m *metrics) handshakeFailed(listener, reason, family string) {
	m.handshakeFailures.WithLabelValues(listener, reason, family).Inc()
}

func (m *metrics) upstreamHealth(pool, addr string, healthy bool) {
	v := 0.0
	if healthy {
		v = 1
	}
	m.upstreamHealthy.WithLabelValues(pool, addr).Set(v)
}

// forgetUpstreams drops the health series of upstreams that old had and
// gen no longer has, so a removed upstream does not look down forever.
func (m *metrics) forgetUpstreams(old, gen *generation) {
	for name, p := range old.pools {
		for _, u := range p.Upstreams() {
			if np, ok := gen.pools[name]; ok && slices.ContainsFunc(np.Upstreams(), func(n proxy.UpstreamState) bool { return n.Addr == u.Addr }) {
				continue
			}
			m.upstreamHealthy.DeleteLabelValues(name, u.Addr)
		}
	}
}

func familyOf(hello *pqtls.ClientHello) string {
	if hello == nil {
		return "unknown"
	}
	return hello.Family()
}
