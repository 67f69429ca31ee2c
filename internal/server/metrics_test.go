package server

import (
	"crypto/tls"
	"fmt"
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pqedge/pqedge/pqtls"
)

// TestRequestMetrics: every request is counted by site and status code,
// timed by site, and a client's fault counted by site; requests refused
// before routing belong to no site (site="").
func TestRequestMetrics(t *testing.T) {
	ts := startServer(t, baseConfig+inspectSite)
	c := ts.client(tls.X25519MLKEM768)
	for _, req := range []struct {
		path string
		code int
	}{
		{"/", 200}, {"/?format=json", 200}, {"/favicon.ico", 404},
		{"/a/../../etc/passwd", 400}, // climbs above the root: refused before routing
	} {
		resp, err := c.Get("https://" + ts.addr("https") + req.path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != req.code {
			t.Fatalf("GET %s: %s, want %d", req.path, resp.Status, req.code)
		}
	}
	for _, want := range []struct {
		name   string
		labels []string
		n      float64
	}{
		{"pqedge_http_requests_total", []string{`site="local"`, `code="200"`}, 2},
		{"pqedge_http_requests_total", []string{`site="local"`, `code="404"`}, 1},
		{"pqedge_http_requests_total", []string{`site=""`, `code="400"`}, 1},
		{"pqedge_http_request_duration_seconds_count", []string{`site="local"`}, 3},
		{"pqedge_http_request_duration_seconds_count", []string{`site=""`}, 1},
		{"pqedge_client_errors_total", []string{`site=""`}, 1},
		{"pqedge_client_errors_total", []string{`site="local"`}, 0},
	} {
		if got := ts.metricSum(want.name, want.labels...); got != want.n {
			t.Errorf("%s%v = %v, want %v", want.name, want.labels, got, want.n)
		}
	}
	// A series is made at its first request, as with WithLabelValues.
	if got := ts.metric(fmt.Sprintf("pqedge_http_requests_total{code=%q,site=%q}", "500", "local")); got != "" {
		t.Errorf("a series for a code never answered exists: %s", got)
	}
}

// TestHandshakeSeriesCache: handshakes are counted in the series of their
// own labels whether the series was looked up before or not (the cache of
// metrics.handshakeRefs), and a handshake differing in any one label gets
// a series of its own.
func TestHandshakeSeriesCache(t *testing.T) {
	m := newMetrics()
	base := HandshakeEvent{Listener: "https", Site: "a", Family: "chrome", Transport: "tcp"}
	rec := pqtls.Handshake{Group: tls.X25519MLKEM768, Signature: tls.ECDSAWithP256AndSHA256}
	type variant struct {
		name string
		ev   func(*HandshakeEvent, *pqtls.Handshake)
		// labels of its pqedge_handshakes_total series
		site, group, pq, sig, family, hrr, resumed, transport string
	}
	variants := []variant{
		{"base", func(*HandshakeEvent, *pqtls.Handshake) {}, "a", "X25519MLKEM768", "true", "ecdsa_secp256r1_sha256", "chrome", "false", "false", "tcp"},
		{"site", func(ev *HandshakeEvent, _ *pqtls.Handshake) { ev.Site = "b" }, "b", "X25519MLKEM768", "true", "ecdsa_secp256r1_sha256", "chrome", "false", "false", "tcp"},
		{"group", func(_ *HandshakeEvent, h *pqtls.Handshake) { h.Group = tls.X25519 }, "a", pqtls.GroupName(tls.X25519), "false", "ecdsa_secp256r1_sha256", "chrome", "false", "false", "tcp"},
		{"signature", func(_ *HandshakeEvent, h *pqtls.Handshake) { h.Signature = tls.Ed25519 }, "a", "X25519MLKEM768", "true", "ed25519", "chrome", "false", "false", "tcp"},
		{"family", func(ev *HandshakeEvent, _ *pqtls.Handshake) { ev.Family = "firefox" }, "a", "X25519MLKEM768", "true", "ecdsa_secp256r1_sha256", "firefox", "false", "false", "tcp"},
		{"hello retry", func(_ *HandshakeEvent, h *pqtls.Handshake) { h.HelloRetry = true }, "a", "X25519MLKEM768", "true", "ecdsa_secp256r1_sha256", "chrome", "true", "false", "tcp"},
		{"resumed", func(_ *HandshakeEvent, h *pqtls.Handshake) { h.Resumed, h.Signature = true, 0 }, "a", "X25519MLKEM768", "true", "", "chrome", "false", "true", "tcp"},
		{"quic", func(ev *HandshakeEvent, _ *pqtls.Handshake) { ev.Transport = "quic" }, "a", "X25519MLKEM768", "true", "ecdsa_secp256r1_sha256", "chrome", "false", "false", "quic"},
	}
	// Each variant i is observed i+1 times, interleaved, so that a cache
	// keyed on too few fields would merge counts.
	for round := range len(variants) {
		for i, v := range variants {
			if round > i {
				continue
			}
			ev, h := base, rec
			v.ev(&ev, &h)
			ev.Handshake = &h
			m.handshake(&ev)
		}
	}
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			c, err := m.handshakes.GetMetricWithLabelValues("https", v.site, v.group, v.pq, v.sig, v.family, v.hrr, v.resumed, v.transport)
			if err != nil {
				t.Fatal(err)
			}
			var d dto.Metric
			if err := c.Write(&d); err != nil {
				t.Fatal(err)
			}
			if got, want := d.GetCounter().GetValue(), float64(i+1); got != want {
				t.Errorf("pqedge_handshakes_total = %v, want %v", got, want)
			}
		})
	}
	ch := make(chan prometheus.Metric, 2*len(variants))
	m.handshakes.Collect(ch)
	close(ch)
	if got, want := len(ch), len(variants); got != want {
		t.Errorf("%d pqedge_handshakes_total series, want %d", got, want)
	}
}
