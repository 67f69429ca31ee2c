package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"github.com/pqedge/pqedge/internal/pages"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
)

// testServer is a pqedge serving a config written from a TOML snippet, with
// every address on loopback port 0.
type testServer struct {
	t   testing.TB
	srv *Server
	cfg *config.Config
	dir string
}

// startServer writes cfgText (with {{DATA}} replaced by a temp dir) and
// serves it until the test ends.
func startServer(t testing.TB, cfgText string) *testServer {
	t.Helper()
	dir := t.TempDir()
	cfg := loadConfig(t, dir, cfgText)
	srv, err := New(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("failed to start: %v", err)
	}
	ts := &testServer{t: t, srv: srv, cfg: cfg, dir: dir}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ts
}

func loadConfig(t testing.TB, dir, cfgText string) *config.Config {
	t.Helper()
	file := filepath.Join(dir, "pqedge.toml")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(cfgText, "{{DATA}}", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("test config is invalid:\n%v", err)
	}
	return cfg
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (ts *testServer) addr(listener string) string {
	a := ts.srv.ListenerAddr(listener)
	if a == nil {
		ts.t.Fatalf("no listener %q", listener)
	}
	return a.String()
}

// roots trusts the local development CAs (classical and ML-DSA).
func (ts *testServer) roots() *x509.CertPool {
	ts.t.Helper()
	pool := x509.NewCertPool()
	for _, name := range []string{"classical-ca.crt", "pq-ca.crt"} {
		data, err := os.ReadFile(filepath.Join(ts.dir, "data", "local", name))
		if err != nil {
			ts.t.Fatalf("local CA missing: %v", err)
		}
		cs, err := certs.ParseCertificatesPEM(data)
		if err != nil {
			ts.t.Fatal(err)
		}
		for _, c := range cs {
			pool.AddCert(c)
		}
	}
	return pool
}

// client returns an HTTP client offering only the given groups.
func (ts *testServer) client(groups ...tls.CurveID) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", CurvePreferences: groups},
			ForceAttemptHTTP2: true,
		},
	}
}

// inspect fetches the inspect JSON.
func inspect(t *testing.T, c *http.Client, url string) pages.InspectReport {
	t.Helper()
	resp, err := c.Get(url + "?format=json")
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	var rep pages.InspectReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatalf("bad inspect JSON: %v", err)
	}
	return rep
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metric returns the value of the first /metrics line starting with prefix.
func (ts *testServer) metric(prefix string) string {
	ts.t.Helper()
	resp, err := http.Get("http://" + ts.srv.AdminAddr().String() + "/metrics")
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	return ""
}

func dialTimeout(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// metricSum adds up the series of a metric whose labels contain every one
// of labels (each `name="value"`).
func (ts *testServer) metricSum(name string, labels ...string) float64 {
	ts.t.Helper()
	resp, err := http.Get("http://" + ts.srv.AdminAddr().String() + "/metrics")
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(line, l)
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); match && err == nil {
			sum += v
		}
	}
	return sum
}

// rawUpstream is a TCP upstream on loopback that runs serve, on a
// goroutine of its own, for each connection it accepts; the listener is
// closed when the test ends. serve closes its connection. It returns the
// address.
func rawUpstream(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}
