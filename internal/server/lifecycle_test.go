package server

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/config"
)

func TestShutdownTimeoutFollowsConfig(t *testing.T) {
	ts := startServer(t, baseConfig+inspectSite)
	if got := ts.srv.ShutdownTimeout(); got != config.DefaultShutdownTimeout {
		t.Errorf("default drain deadline %v, want %v", got, config.DefaultShutdownTimeout)
	}
	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, baseConfig+"[timeouts]\nshutdown = \"3s\"\n"+inspectSite)); err != nil {
		t.Fatal(err)
	}
	if got := ts.srv.ShutdownTimeout(); got != 3*time.Second {
		t.Errorf("after reload the drain deadline is %v, want 3s", got)
	}
}

// slowDirectory is an ACME directory that accepts connections and never
// answers: the order blocks until its context ends. reached is closed when
// the first connection arrives.
func slowDirectory(t *testing.T) (url string, reached <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	first := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if len(conns) == 0 {
				close(first)
			}
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "https://" + ln.Addr().String() + "/directory", first
}

// TestShutdownCancelsSlowReload: a reload blocked on an ACME directory that
// never answers holds no lock Shutdown needs. Shutdown cancels it, returns
// within moments, and the reload fails saying so.
func TestShutdownCancelsSlowReload(t *testing.T) {
	ts := startServer(t, baseConfig+inspectSite)
	dir, reached := slowDirectory(t)
	slow := baseConfig + inspectSite + `
[[site]]
name = "acme"
server_names = ["acme.pqedge.test"]
certs = "acme"
[site.acme]
email = "ops@pqedge.test"
directory = "` + dir + `"
[[site.route]]
path = "/"
handler = "inspect"
`
	reloaded := make(chan error, 1)
	go func() { reloaded <- ts.srv.Reload(context.Background(), loadConfig(t, ts.dir, slow)) }()
	select { // the transaction is inside the ACME order, on the network
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the reload never contacted the ACME directory")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Shutdown took %v behind a blocked reload", took)
	}
	select {
	case err := <-reloaded:
		if err == nil || !strings.Contains(err.Error(), "shutting down") {
			t.Errorf("the blocked reload ended with %v, want a cancellation by the shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the blocked reload did not end after Shutdown")
	}
}

// TestReloadKeepsUpstreamHealth: an upstream ejected as dead stays out of
// rotation across a reload (its gauge stays 0 and requests get 503 at once,
// not another failed connect), and comes back by its probe only.
func TestReloadKeepsUpstreamHealth(t *testing.T) {
	dead := deadUpstream(t)
	cfg := baseConfig + `
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["` + dead + `"]
[pool.health]
eject_after = 1
eject_for = "1h"
`
	ts := startServer(t, cfg)
	c := ts.client(tls.X25519MLKEM768)
	get := func() int {
		resp, err := c.Get("https://" + ts.addr("https") + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	gauge := func() string { return ts.metric(`pqedge_upstream_healthy{pool="app",upstream="` + dead + `"}`) }
	if code := get(); code != http.StatusBadGateway {
		t.Fatalf("first request to a dead upstream: %d, want 502", code)
	}
	waitFor(t, "the ejection in the gauge", func() bool { return gauge() == "0" })
	for i := range 3 {
		if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, cfg)); err != nil {
			t.Fatal(err)
		}
		if g := gauge(); g != "0" {
			t.Fatalf("after reload %d the dead upstream's gauge is %q, want 0", i+1, g)
		}
		if code := get(); code != http.StatusServiceUnavailable {
			t.Fatalf("after reload %d a request got %d, want 503 (the upstream stays ejected)", i+1, code)
		}
	}
}

// deadUpstream is a loopback address nothing listens on.
func deadUpstream(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestRefusedReloadFileIsCounted: a config file that does not even load is
// a refused reload like any other.
func TestRefusedReloadFileIsCounted(t *testing.T) {
	ts := startServer(t, baseConfig+inspectSite)
	bad := filepath.Join(ts.dir, "bad.toml")
	for i, text := range []string{"[[listener]\n", "[unknown]\nkey = 1\n"} {
		os.WriteFile(bad, []byte(text), 0o600)
		if _, err := ts.srv.ReloadFile(t.Context(), bad); err == nil {
			t.Fatalf("%q loaded", text)
		}
		if got := ts.metric(`pqedge_config_reloads_total{result="invalid"}`); got != strconv.Itoa(i+1) {
			t.Errorf("after %d refused files the invalid count is %q", i+1, got)
		}
	}
	if _, err := ts.srv.ReloadFile(t.Context(), filepath.Join(ts.dir, "pqedge.toml")); err != nil {
		t.Fatal(err)
	}
	if got := ts.metric(`pqedge_config_reloads_total{result="ok"}`); got != "1" {
		t.Errorf("ok reloads %q, want 1", got)
	}
}
