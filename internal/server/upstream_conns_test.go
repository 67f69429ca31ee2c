package server

import (
	"crypto/tls"
	"fmt"
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

// TestIdleConnsKeepsConcurrentConnections: a pool keeps idle_conns
// keep-alive connections per upstream once a burst of concurrent requests
// ends, so the next burst reuses them instead of dialling again (net/http's
// Transport closes every connection beyond its idle cap, golang/go#13801).
// With the default, a burst above the old cap of 32 keeps all of them.
func TestIdleConnsKeepsConcurrentConnections(t *testing.T) {
	const burst = 48
	for _, tc := range []struct {
		name      string
		idleConns string // the pool's idle_conns line, "" for the default
		closed    int    // upstream connections pqedge closes after a burst
	}{
		{"below the burst", "idle_conns = 16", burst - 16},
		{"default", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			opened, closed, waiting := 0, 0, 0
			release := make(chan struct{})
			up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// Each burst is answered only once all of it arrived, so it
				// holds burst upstream connections at once.
				mu.Lock()
				waiting++
				if waiting == burst {
					waiting = 0
					close(release)
					release = make(chan struct{})
				}
				ch := release
				if waiting == 0 {
					ch = nil
				}
				mu.Unlock()
				if ch != nil {
					<-ch
				}
				io.WriteString(w, "ok")
			}))
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
			ts := startServer(t, baseConfig+`
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["`+strings.TrimPrefix(up.URL, "http://")+`"]
`+tc.idleConns+"\n")
			c := ts.client(tls.X25519MLKEM768)
			sendBurst := func(round int) {
				var wg sync.WaitGroup
				errs := make(chan error, burst)
				for i := range burst {
					wg.Go(func() {
						resp, err := c.Get(fmt.Sprintf("https://%s/r%d/%d", ts.addr("https"), round, i))
						if err != nil {
							errs <- err
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
			}
			sendBurst(1)
			waitFor(t, fmt.Sprintf("pqedge to close %d upstream connections", tc.closed), func() bool {
				mu.Lock()
				defer mu.Unlock()
				return closed >= tc.closed
			})
			sendBurst(2)
			mu.Lock()
			defer mu.Unlock()
			// Each burst ends with the connections beyond the cap closed.
			if closed > 2*tc.closed+burst/8 {
				t.Errorf("pqedge closed %d upstream connections after two bursts of %d, want %d", closed, burst, 2*tc.closed)
			}
			// The second burst dials again exactly what was closed; a
			// connection the transport had not parked yet when the burst
			// began may cost one more dial, rarely.
			if want := burst + tc.closed; opened < want || opened > want+burst/8 {
				t.Errorf("two bursts of %d opened %d upstream connections, want %d", burst, opened, want)
			}
		})
	}
}
