package server

import (
	"crypto/tls"
	"fmt"
	"io"
	"testing"
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
