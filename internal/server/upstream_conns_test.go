package server

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestUpstreamConnections: two routes of a site to one pool share keep-alive
// connections, and a reload closes the old config's idle ones instead of
// leaving them to their idle timeout.
func TestUpstreamConnections(t *testing.T) {
	var mu sync.Mutex
	opened, closed := 0, 0
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	up.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StateNew:
			opened++
		case http.StateClosed:
			closed++
		}
	}
	up.Start()
	defer up.Close()
	cfg := baseConfig + `
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/a/"
pool = "app"
[[site.route]]
path = "/b/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["` + strings.TrimPrefix(up.URL, "http://") + `"]
`
	ts := startServer(t, cfg)
	c := ts.client(tls.X25519MLKEM768)
	for _, path := range []string{"/a/1", "/b/1", "/a/2", "/b/2"} {
		resp, err := c.Get("https://" + ts.addr("https") + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	mu.Lock()
	if opened != 1 {
		t.Errorf("4 requests over two routes to one pool opened %d upstream connections, want 1", opened)
	}
	mu.Unlock()
	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, cfg)); err != nil {
		t.Fatal(err)
	}
	// The client's own connection to pqedge is idle too, and the old
	// generation closes it while draining; then its upstream connection.
	waitFor(t, "the old config's upstream connection to close", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return closed == opened
	})
}

// TestRemovedUpstreamLeavesMetrics: after a reload that drops an upstream,
// its pqedge_upstream_healthy series goes once the old config has drained
// (series exist exactly for upstreams a live generation uses); kept
// upstreams keep theirs throughout.
func TestRemovedUpstreamLeavesMetrics(t *testing.T) {
	pool := func(upstreams string) string {
		return baseConfig + inspectSite + `
[[pool]]
name = "app"
upstreams = [` + upstreams + `]
`
	}
	ts := startServer(t, pool(`"127.0.0.1:1001", "127.0.0.1:1002"`))
	gauge := func(addr string) string {
		return ts.metric(`pqedge_upstream_healthy{pool="app",upstream="` + addr + `"}`)
	}
	if gauge("127.0.0.1:1001") != "1" || gauge("127.0.0.1:1002") != "1" {
		t.Fatal("upstreams not reported healthy at start")
	}
	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, pool(`"127.0.0.1:1001"`))); err != nil {
		t.Fatal(err)
	}
	if gauge("127.0.0.1:1001") != "1" {
		t.Error("a kept upstream lost its series during the drain")
	}
	waitFor(t, "the removed upstream's series to go", func() bool { return gauge("127.0.0.1:1002") == "" })
	if gauge("127.0.0.1:1001") != "1" {
		t.Error("a kept upstream lost its series")
	}
}
