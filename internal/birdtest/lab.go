//go:build linux

package birdtest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/peers"
)

// Options shape a Lab.
type Options struct {
	// Interface is the BIRD interface pattern whose addresses every edge
	// announces (`protocol direct`), e.g. "pqedge-any0". Required.
	Interface string
	// Edges is the number of edge nodes; default 1.
	Edges int
	// Install makes the router install its best route to each prefix in
	// its namespace's kernel table (`protocol kernel`), so a client there
	// reaches whichever edge the routing picked, and moves with it.
	Install bool
}

// Lab is a router and edge nodes, each in its own network namespace and
// running its own BIRD. Edge i is joined to the router by a veth, 10.99.i.1
// and fd00:99:i::1 on its side, .2 and ::2 on the router's, with an eBGP
// session per address family: the edge (AS 65001+i) exports the routes of
// its direct protocol, the router (AS 65000) imports everything and
// installs nothing (unless Options.Install), so its table is exactly what
// the edges announce.
type Lab struct {
	Router *Node
	Edges  []*Node
}

// Node is one namespace with its BIRD.
type Node struct {
	Name   string // "router", "edge0", "edge1", ...
	NS     *NetNS
	AS     int
	Addr4  netip.Addr // on the veth (the router has one per edge: the first)
	Addr6  netip.Addr
	Socket string // BIRD's control socket, for birdc -s
	Config string // the BIRD configuration file

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  syncBuffer    // BIRD's stderr
}

// Start builds the lab and waits until every BGP session is established.
// It skips t (or fails it under PQEDGE_REQUIRE_PEERS=1) without root, ip
// or BIRD 2. Everything is stopped and deleted when t ends, failed or not.
func Start(t testing.TB, opts Options) *Lab {
	t.Helper()
	RequireNetNS(t)
	peers.Binary(t, "bird")
	peers.Binary(t, "birdc")
	if opts.Interface == "" || strings.ContainsAny(opts.Interface, "\"\\\n") {
		t.Fatalf("birdtest: bad interface pattern %q", opts.Interface)
	}
	if opts.Edges == 0 {
		opts.Edges = 1
	}
	if opts.Edges < 0 || opts.Edges > 200 {
		t.Fatalf("birdtest: %d edges, want 1 to 200", opts.Edges)
	}
	dir := t.TempDir()
	if len(dir) > 90 { // sun_path holds 108 bytes, "/router.ctl" included
		t.Fatalf("birdtest: temp dir %q is too long for a control socket; shorten the test name", dir)
	}
	l := &Lab{Router: &Node{Name: "router", AS: 65000}}
	l.Router.NS = NewNetNS(t, "router")
	for i := range opts.Edges {
		e := &Node{Name: fmt.Sprintf("edge%d", i), AS: 65001 + i,
			Addr4: netip.AddrFrom4([4]byte{10, 99, byte(i), 1}),
			Addr6: netip.MustParseAddr(fmt.Sprintf("fd00:99:%x::1", i))}
		e.NS = NewNetNS(t, e.Name)
		l.link(t, i, e)
		l.Edges = append(l.Edges, e)
	}
	l.Router.Addr4, l.Router.Addr6 = peerOf(l.Edges[0].Addr4), peerOf(l.Edges[0].Addr6)

	l.Router.write(t, dir, l.routerConfig(opts.Install))
	for _, e := range l.Edges {
		e.write(t, dir, edgeConfig(e, opts.Interface))
	}
	for _, n := range l.nodes() {
		n.start(t)
	}
	l.waitEstablished(t, 10*time.Second)
	return l
}

func (l *Lab) nodes() []*Node { return append([]*Node{l.Router}, l.Edges...) }

// link joins edge i to the router with a veth: veth0 in the edge, edgeI in
// the router.
func (l *Lab) link(t testing.TB, i int, e *Node) {
	t.Helper()
	r := l.Router.NS
	peer := fmt.Sprintf("edge%d", i)
	e.NS.IP(t, "link", "add", "veth0", "type", "veth", "peer", "name", peer, "netns", r.Name)
	e.NS.IP(t, "addr", "add", e.Addr4.String()+"/30", "dev", "veth0")
	e.NS.IP(t, "addr", "add", e.Addr6.String()+"/64", "dev", "veth0", "nodad")
	e.NS.IP(t, "link", "set", "veth0", "up")
	r.IP(t, "addr", "add", peerOf(e.Addr4).String()+"/30", "dev", peer)
	r.IP(t, "addr", "add", peerOf(e.Addr6).String()+"/64", "dev", peer, "nodad")
	r.IP(t, "link", "set", peer, "up")
}

// peerOf is the router's address on an edge's link: .2 for .1.
func peerOf(a netip.Addr) netip.Addr { return a.Next() }

// bgpTimers make sessions come up in about a second instead of BIRD's
// default 5 s start delay and 120 s retry, and notice a silent peer in 6 s.
const bgpTimers = `
	connect delay time 1;
	connect retry time 1;
	error wait time 1, 2;
	hold time 6;
	keepalive time 2;`

func (l *Lab) routerConfig(install bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log stderr all;\nrouter id 10.99.255.254;\nprotocol device {}\n")
	if install {
		// The best route of each prefix goes to the kernel; BIRD scans the
		// table every second and leaves routes it did not make alone.
		fmt.Fprintf(&b, "protocol kernel { ipv4 { export all; }; }\nprotocol kernel { ipv6 { export all; }; }\n")
	}
	for i, e := range l.Edges {
		for _, af := range []struct {
			name       string
			local, nbr netip.Addr
		}{{"ipv4", peerOf(e.Addr4), e.Addr4}, {"ipv6", peerOf(e.Addr6), e.Addr6}} {
			fmt.Fprintf(&b, "protocol bgp edge%d_%s {\n\tlocal %s as %d;\n\tneighbor %s as %d;%s\n\t%s { import all; export none; };\n}\n",
				i, af.name[2:], af.local, l.Router.AS, af.nbr, e.AS, bgpTimers, af.name)
		}
	}
	return b.String()
}

func edgeConfig(e *Node, iface string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log stderr all;\nrouter id %s;\nprotocol device {}\n", e.Addr4)
	fmt.Fprintf(&b, "protocol direct announce {\n\tipv4;\n\tipv6;\n\tinterface %q;\n}\n", iface)
	for _, af := range []struct {
		name       string
		local, nbr netip.Addr
	}{{"ipv4", e.Addr4, peerOf(e.Addr4)}, {"ipv6", e.Addr6, peerOf(e.Addr6)}} {
		fmt.Fprintf(&b, "protocol bgp router_%s {\n\tlocal %s as %d;\n\tneighbor %s as 65000;%s\n\t%s { import none; export where source = RTS_DEVICE; };\n}\n",
			af.name[2:], af.local, e.AS, af.nbr, bgpTimers, af.name)
	}
	return b.String()
}

func (n *Node) write(t testing.TB, dir, config string) {
	t.Helper()
	n.Config = filepath.Join(dir, n.Name+".conf")
	n.Socket = filepath.Join(dir, n.Name+".ctl")
	if err := os.WriteFile(n.Config, []byte(config), 0o644); err != nil {
		t.Fatalf("failed to write BIRD config: %v", err)
	}
}

// start runs `bird -f` in the node's namespace and waits for its control
// socket. t.Cleanup stops it (before the namespaces go: cleanups run last
// registered first) and prints its log if t failed.
func (n *Node) start(t testing.TB) {
	t.Helper()
	n.cmd = n.NS.Command(context.Background(), "bird", "-f", "-c", n.Config, "-s", n.Socket)
	n.cmd.Stdout, n.cmd.Stderr = &n.log, &n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("failed to start BIRD in %s: %v", n.Name, err)
	}
	n.done = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("BIRD log of %s:\n%s", n.Name, n.log.String())
		}
	})
	err := poll(5*time.Second, func() error {
		select {
		case <-n.done:
			return fmt.Errorf("bird exited: %s", n.log.String())
		default:
		}
		_, err := n.Birdc(context.Background(), "show", "status")
		return err
	})
	if err != nil {
		t.Fatalf("BIRD in %s did not start: %v", n.Name, err)
	}
}

// stop ends BIRD: SIGTERM, then SIGKILL if it lingers.
func (n *Node) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(3 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// Birdc runs `birdc -s SOCKET args...` and returns its output; a failure
// (no BIRD, an error reply) is an error carrying the output.
func (n *Node) Birdc(ctx context.Context, args ...string) ([]byte, error) {
	// A BIRD that accepts and never answers must not hang the test.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "birdc", append([]string{"-s", n.Socket}, args...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("birdc %s in %s: %v: %s", strings.Join(args, " "), n.Name, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Routes returns the node's routing table (`show route`).
func (n *Node) Routes(ctx context.Context) ([]Route, error) {
	out, err := n.Birdc(ctx, "show", "route")
	if err != nil {
		return nil, err
	}
	return ParseRoutes(out)
}

// Protocols returns the node's protocols (`show protocols`).
func (n *Node) Protocols(ctx context.Context) ([]Protocol, error) {
	out, err := n.Birdc(ctx, "show", "protocols")
	if err != nil {
		return nil, err
	}
	return ParseProtocols(out)
}

func (l *Lab) waitEstablished(t testing.TB, within time.Duration) {
	t.Helper()
	want := 2 * len(l.Edges)
	err := poll(within, func() error {
		ps, err := l.Router.Protocols(context.Background())
		if err != nil {
			return err
		}
		up := 0
		for _, p := range ps {
			if p.Proto == "BGP" && strings.HasPrefix(p.Info, "Established") {
				up++
			}
		}
		if up < want {
			return fmt.Errorf("%d of %d BGP sessions established: %+v", up, want, ps)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("birdtest: %v", err)
	}
}

// Learned returns the router's routes for p, one per edge announcing it.
func (l *Lab) Learned(ctx context.Context, p netip.Prefix) ([]Route, error) {
	rs, err := l.Router.Routes(ctx)
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, r := range rs {
		if r.Prefix == p {
			out = append(out, r)
		}
	}
	return out, nil
}

// WaitRoute polls the router's table until p is there (present) or gone
// (!present), and returns how long that took. It fails t if it takes more
// than within.
func (l *Lab) WaitRoute(t testing.TB, p netip.Prefix, present bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	err := poll(within, func() error {
		rs, err := l.Learned(context.Background(), p)
		switch {
		case err != nil:
			return err
		case present && len(rs) == 0:
			return fmt.Errorf("the router has no route for %s", p)
		case !present && len(rs) > 0:
			return fmt.Errorf("the router still has %+v", rs)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after %v: %v", within, err)
	}
	return time.Since(start)
}

// poll calls f every 10 ms until it returns nil or within has passed, and
// returns f's last error.
func poll(within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer for a process's output, read while the
// process may still write.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	const max = 1 << 20 // a chatty BIRD must not eat the test's memory
	if s.b.Len()+len(p) > max {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
