//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/pqedge/pqedge/internal/birdtest"
)

// These tests run pqedge end to end as an anycast node: the real binary
// (this test binary under the name pqedge, see TestMain) in an edge
// network namespace beside real BIRD 2, which announces pqedge's TUN device
// to a router namespace over eBGP (package birdtest). pqedge runs as a
// process, not in-process, because it must own the namespace entirely: a
// namespace belongs to an OS thread, and the sockets, health checks and the
// TUN device of an in-process server would be made on whatever thread a
// goroutine lands on; and kill -9 must kill pqedge, not the test. The
// routes are read from the router's BIRD (`birdc show route`); clients and
// upstreams are this test's, with their sockets made inside the namespaces.
//
// The 1 s bounds are what the issue promises operators; BIRD itself takes
// tens of milliseconds here.

var anycastSvc = netip.MustParsePrefix("192.0.2.53/32")

const (
	anycastConvergence = time.Second
	anycastHoldDown    = time.Second
)

// nsDial dials from inside a namespace; the connection stays there.
func nsDial(ns *birdtest.NetNS, ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// nsClient is an HTTP client whose every request is a new connection made
// inside ns, so each one follows the namespace's current routes.
func nsClient(ns *birdtest.NetNS, tlsConfig *tls.Config) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return nsDial(ns, ctx, network, addr)
			},
			TLSClientConfig:   tlsConfig,
			DisableKeepAlives: true,
		},
	}
}

// edgeApp is the upstream of an edge's pqedge, in the edge's namespace:
// /name answers the edge's name, /slow answers once released, /ws echoes.
type edgeApp struct {
	t       *testing.T
	ns      *birdtest.NetNS
	name    string
	addr    string
	entered chan struct{}
	release chan struct{}

	mu  sync.Mutex // guards srv
	srv *http.Server
}

func startEdgeApp(t *testing.T, ns *birdtest.NetNS, name string) *edgeApp {
	a := &edgeApp{t: t, ns: ns, name: name, entered: make(chan struct{}, 1), release: make(chan struct{})}
	a.up()
	t.Cleanup(a.down)
	return a
}

// up serves (again, on the same address).
func (a *edgeApp) up() {
	mux := http.NewServeMux()
	mux.HandleFunc("/name", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, a.name) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		a.entered <- struct{}{}
		<-a.release
		io.WriteString(w, "slow done")
	})
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }))
	addr := a.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	if err := a.ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		a.t.Fatalf("upstream in %s: %v", a.ns.Name, err)
	}
	a.addr = ln.Addr().String()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	a.mu.Lock()
	a.srv = srv
	a.mu.Unlock()
}

// down stops serving and drops its connections: the upstream is dead.
func (a *edgeApp) down() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil {
		a.srv.Close()
		a.srv = nil
	}
}

// anycastEdge is pqedge running on one edge of the lab.
type anycastEdge struct {
	t     *testing.T
	node  *birdtest.Node
	dir   string
	app   *edgeApp
	proc  *pqedgeProcess
	admin *http.Client
}

// edgeOptions are the timings of an edge's config.
type edgeOptions struct {
	grace, shutdown string
}

// startEdge writes an edge's config and runs pqedge there: an https
// listener on the service address, whose one route goes to the edge's
// app, with fast health checks and flap control; the prefix depends on
// that listener.
func startEdge(t *testing.T, node *birdtest.Node, o edgeOptions) *anycastEdge {
	t.Helper()
	e := &anycastEdge{t: t, node: node, dir: t.TempDir()}
	e.app = startEdgeApp(t, node.NS, node.Name)
	cfg := fmt.Sprintf(`
data_dir = %q
[admin]
listen = "127.0.0.1:9180"
[timeouts]
withdraw_grace = %q
shutdown = %q
[[listener]]
name = "https"
address = "%s:8443"
[[site]]
name = "svc"
server_names = ["svc.example"]
[[site.route]]
path = "/"
pool = "app"
[[pool]]
name = "app"
upstreams = [%q]
[pool.health]
interval = "100ms"
unhealthy_threshold = 1
healthy_threshold = 1
[anycast]
rise = 2
interval = "200ms"
hold_down = %q
[[anycast.prefix]]
prefix = %q
listeners = ["https"]
`, filepath.Join(e.dir, "data"), o.grace, o.shutdown, anycastSvc.Addr(), e.app.addr, anycastHoldDown.String(), anycastSvc.String())
	file := filepath.Join(e.dir, "pqedge.toml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.admin = nsClient(node.NS, nil)
	e.proc = startPqedgeIn(t, node.NS, file)
	return e
}

// startPqedgeIn runs pqedge in a namespace (`ip netns exec`, which execs,
// so the process is pqedge itself and signals reach it).
func startPqedgeIn(t *testing.T, ns *birdtest.NetNS, configFile string) *pqedgeProcess {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pqedge")
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	p := &pqedgeProcess{cmd: ns.Command(context.Background(), bin, "run", "-config", configFile), stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("pqedge stderr (%s):\n%s", ns.Name, p.stderr.String())
		}
	})
	return p
}

// readyz returns /readyz's status code, 0 when it cannot be asked.
func (e *anycastEdge) readyz() int {
	resp, err := e.admin.Get("http://127.0.0.1:9180/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitReady polls /readyz until 200; the first start makes a local CA.
func (e *anycastEdge) waitReady() {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.readyz() != http.StatusOK {
		select {
		case err := <-e.proc.done:
			e.t.Fatalf("pqedge in %s exited before it was ready: %v", e.node.Name, err)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("pqedge in %s not ready after 30s", e.node.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// anycastState is the part of /anycast?format=json the tests read.
type anycastState struct {
	Transitions []struct {
		Action, Cause, Reason string
		At                    time.Time
	}
}

func (e *anycastEdge) anycastState() anycastState {
	e.t.Helper()
	resp, err := e.admin.Get("http://127.0.0.1:9180/anycast?format=json")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st anycastState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		e.t.Fatalf("/anycast: %v", err)
	}
	return st
}

// clientTLS trusts the local CAs of the edges.
func clientTLS(t *testing.T, edges ...*anycastEdge) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	for _, e := range edges {
		pem, err := os.ReadFile(filepath.Join(e.dir, "data", "local", "classical-ca.crt"))
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("local CA of %s: %v", e.node.Name, err)
		}
	}
	return &tls.Config{RootCAs: pool, ServerName: "svc.example"}
}

// svcURL is the service on its anycast address.
var svcURL = "https://" + net.JoinHostPort(anycastSvc.Addr().String(), "8443")

// get fetches path from the service and returns the body.
func get(c *http.Client, path string) (string, error) {
	resp, err := c.Get(svcURL + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), err
}

// TestAnycastHealthWithBIRD: the prefix is announced within 1 s of
// pqedge being ready, withdrawn within 1 s of its pool's only upstream
// dying, announced again after rise and the hold-down once it is back, and
// withdrawn within 1 s when pqedge is killed with SIGKILL.
func TestAnycastHealthWithBIRD(t *testing.T) {
	lab := birdtest.Start(t, birdtest.Options{Interface: "pqedge-any0"})
	e := startEdge(t, lab.Edges[0], edgeOptions{grace: "5s", shutdown: "15s"})
	e.waitReady()
	t.Logf("ready; announced %v later", lab.WaitRoute(t, anycastSvc, true, anycastConvergence))

	e.app.down()
	t.Logf("upstream dead; withdrawn %v later", lab.WaitRoute(t, anycastSvc, false, anycastConvergence))
	e.app.up()
	t.Logf("upstream back; announced again %v later", lab.WaitRoute(t, anycastSvc, true, anycastHoldDown+5*time.Second))
	st := e.anycastState()
	n := len(st.Transitions)
	if n < 3 {
		t.Fatalf("transitions %+v, want announce, withdraw, announce", st.Transitions)
	}
	wd, back := st.Transitions[n-2], st.Transitions[n-1]
	if wd.Action != "withdraw" || wd.Cause != "unhealthy" || back.Action != "announce" {
		t.Fatalf("last transitions %+v, %+v: want a withdrawal for health, then an announcement", wd, back)
	}
	if gap := back.At.Sub(wd.At); gap < anycastHoldDown {
		t.Errorf("announced again %v after the withdrawal, within the %v hold-down", gap, anycastHoldDown)
	}

	if err := e.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("kill -9; withdrawn %v later", lab.WaitRoute(t, anycastSvc, false, anycastConvergence))
}

// TestAnycastSIGTERMWithBIRD: on SIGTERM the route goes first, while the
// listener keeps accepting new connections for the withdraw grace; a
// second SIGTERM ends the grace, the listener closes, and an in-flight
// request and an open WebSocket both finish before pqedge exits 0.
//
// The router keeps a static route to the edge beside BIRD's: it stands for
// the routers elsewhere that have not converged yet, whose clients still
// arrive here during the grace.
func TestAnycastSIGTERMWithBIRD(t *testing.T) {
	lab := birdtest.Start(t, birdtest.Options{Interface: "pqedge-any0"})
	edge := lab.Edges[0]
	lab.Router.NS.IP(t, "route", "add", anycastSvc.String(), "via", edge.Addr4.String())
	e := startEdge(t, edge, edgeOptions{grace: "1m", shutdown: "2m"})
	e.waitReady()
	lab.WaitRoute(t, anycastSvc, true, anycastConvergence)
	tlsConf := clientTLS(t, e)
	client := nsClient(lab.Router.NS, tlsConf)
	if name, err := get(client, "/name"); err != nil || name != edge.Name {
		t.Fatalf("GET /name through the anycast address: %q, %v", name, err)
	}

	ws := dialWebSocketIn(t, lab.Router.NS, tlsConf)
	slow := make(chan string, 1)
	go func() {
		body, err := get(client, "/slow")
		if err != nil {
			body = err.Error()
		}
		slow <- body
	}()
	select {
	case <-e.app.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never reached the upstream")
	}

	if err := e.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGTERM; withdrawn %v later", lab.WaitRoute(t, anycastSvc, false, anycastConvergence))
	// Withdrawn, and still accepting: the route went before the listener.
	for i := range 3 {
		if name, err := get(client, "/name"); err != nil || name != edge.Name {
			t.Fatalf("new connection %d during the withdraw grace: %q, %v", i, name, err)
		}
	}
	if code := e.readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the grace: %d, want 503", code)
	}

	if err := e.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e.proc.waitLog(t, "stopped accepting; draining")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := nsDial(lab.Router.NS, context.Background(), "tcp", net.JoinHostPort(anycastSvc.Addr().String(), "8443"))
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts after the grace")
		}
		time.Sleep(10 * time.Millisecond)
	}
	wsEcho(t, ws, "after the listener closed")
	close(e.app.release)
	if body := <-slow; body != "slow done" {
		t.Fatalf("in-flight request: %q", body)
	}
	ws.Close()
	select {
	case err := <-e.proc.done:
		if err != nil {
			t.Fatalf("pqedge exited with %v, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pqedge did not exit after the drain")
	}
}

// dialWebSocketIn opens a WebSocket to the service from inside ns.
func dialWebSocketIn(t *testing.T, ns *birdtest.NetNS, tlsConf *tls.Config) *websocket.Conn {
	t.Helper()
	raw, err := nsDial(ns, context.Background(), "tcp", net.JoinHostPort(anycastSvc.Addr().String(), "8443"))
	if err != nil {
		t.Fatal(err)
	}
	conf := tlsConf.Clone()
	conf.NextProtos = []string{"http/1.1"}
	cfg, err := websocket.NewConfig("wss://svc.example/ws", "https://svc.example")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, tls.Client(raw, conf))
	if err != nil {
		raw.Close()
		t.Fatalf("WebSocket through the anycast address: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	wsEcho(t, ws, "before SIGTERM")
	return ws
}

func wsEcho(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	ws.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := ws.Write([]byte(msg)); err != nil {
		t.Fatalf("WebSocket write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(ws, buf); err != nil || string(buf) != msg {
		t.Fatalf("WebSocket echo of %q: %q, %v", msg, buf, err)
	}
}

// TestAnycastFailoverWithBIRD: two edges announce the same prefix and the
// router installs the best route; killing the edge that serves the client
// moves the client's new connections to the other.
func TestAnycastFailoverWithBIRD(t *testing.T) {
	lab := birdtest.Start(t, birdtest.Options{Interface: "pqedge-any0", Edges: 2, Install: true})
	edges := map[string]*anycastEdge{}
	var all []*anycastEdge
	for _, node := range lab.Edges {
		e := startEdge(t, node, edgeOptions{grace: "5s", shutdown: "15s"})
		edges[node.Name] = e
		all = append(all, e)
	}
	for _, e := range all {
		e.waitReady()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rs, err := lab.Learned(context.Background(), anycastSvc)
		if err == nil && len(rs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the router does not have a route from each edge: %+v, %v", rs, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	client := nsClient(lab.Router.NS, clientTLS(t, all...))
	first := pollName(t, client, func(string) bool { return true })
	serving, ok := edges[first]
	if !ok {
		t.Fatalf("GET /name answered %q, not an edge", first)
	}

	if err := serving.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	second := pollName(t, client, func(name string) bool { return name != first })
	t.Logf("kill -9 of %s: new connections reach %s %v later", first, second, time.Since(start))
	if rs, err := lab.Learned(context.Background(), anycastSvc); err != nil || len(rs) != 1 {
		t.Errorf("after the kill the router has %+v, %v; want the other edge's route only", rs, err)
	}
}

// pollName asks /name on new connections until the answer satisfies ok,
// for at most 5 s; failures in between (the route moving) are retried.
func pollName(t *testing.T, c *http.Client, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		name, err := get(c, "/name")
		if err == nil && ok(name) {
			return name
		}
		last = err
		if err == nil {
			last = fmt.Errorf("answered %q", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no fitting answer from the anycast address within 5s: %v", last)
	return ""
}
