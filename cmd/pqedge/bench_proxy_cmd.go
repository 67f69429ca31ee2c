package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pqedge/pqedge/bench"
	"github.com/pqedge/pqedge/pqtls"
)

// benchProxyFlags are the flags of `bench proxy`, parsed into options by
// proxyOptions.
type benchProxyFlags struct {
	fronts, modes, group, cert, out, profile, peersDir                string
	runs, connections, streams, streamConns, hsConns, idleConns, body int
	duration, warmup, timeout                                         time.Duration
	pin                                                               bool
	maxOthers                                                         float64
}

const benchProxyAbout = `Measures what proxied traffic costs pqedge, the plain Go reverse proxy (the
floor: crypto/tls, net/http, httputil.ReverseProxy) and nginx + OpenSSL 3.5,
all in front of the same nginx upstream, each front pinned to CPU 0 and the
upstream, the load generator (h2load, from the trixie peer root) and this
harness to CPU 1: CPU per request over HTTP/1.1 and HTTP/2, per MiB through
a TLS stream and per connection with one request, latency percentiles, RSS,
upstream re-dials, allocations per request (Go fronts), and memory per idle
and pre-handshake connection. Each front x mode runs -runs times on a fresh
front; writes DIR/proxy.csv and proxy.json. Needs root (chroot into the
peer root). See docs/BENCHMARKS.md for the method and results.
`

func benchProxy(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench proxy", "bench proxy [-fronts LIST] [-modes LIST] [-runs N] [-duration D] [-out DIR] [flags]", benchProxyAbout, stdout)
	var f benchProxyFlags
	fs.StringVar(&f.fronts, "fronts", "pqedge,plain,nginx", "fronts to measure, comma-separated `LIST` of pqedge, plain (the Go floor) and nginx")
	fs.StringVar(&f.modes, "modes", strings.Join(bench.ProxyModes, ","), "modes, comma-separated `LIST`: h1 and h2 (keep-alive requests), stream (bytes through a TLS stream), handshake and handshake-h2 (connect, one request, close), idle and idle-h2 (memory of idle connections), prehandshake (memory of connections before their ClientHello)")
	fs.IntVar(&f.runs, "runs", 3, "repetitions `N` of each front x mode, each on a freshly started front")
	fs.DurationVar(&f.duration, "duration", 2*time.Second, "length `D` of each measured run")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "load `D` before each measured run, not counted")
	fs.IntVar(&f.connections, "connections", 32, "h1, h2: client connections, `N`")
	fs.IntVar(&f.streams, "streams", 10, "h2: requests in flight per connection, `N`")
	fs.IntVar(&f.streamConns, "stream-conns", 8, "stream: TLS connections pumping bytes, `N`")
	fs.IntVar(&f.hsConns, "handshake-conns", 8, "handshake modes: connections in flight, `N`")
	fs.IntVar(&f.idleConns, "idle-conns", 2000, "memory modes: connections held open, `N`")
	fs.IntVar(&f.body, "body", 1024, "size `N` of the upstream's answer, bytes")
	fs.StringVar(&f.group, "group", "X25519MLKEM768", "key-exchange `GROUP` every client offers")
	fs.StringVar(&f.cert, "cert", "ecdsa-p256", "certificate algorithm `ALG` of the fronts (as in bench matrix -certs)")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "deadline `D` of every connection, handshake and request")
	fs.StringVar(&f.out, "out", "bench-out", "output `DIR` for proxy.csv and proxy.json (certificates and configs go to a work directory inside, removed at the end)")
	fs.StringVar(&f.profile, "profile", "", "also write CPU and allocation (load modes), heap and goroutine (memory modes) profiles of the Go fronts to `DIR`, from one extra run per cell")
	fs.Float64Var(&f.maxOthers, "max-others", 0, "measure a load run again (up to 3 times) when other processes kept more than `CPUS` busy during it; 0: never")
	fs.BoolVar(&f.pin, "pin", true, "pin each front to CPU 0 and the load generator, upstream and harness to CPU 1; -pin=false on a one-core machine")
	fs.StringVar(&f.peersDir, "peers-dir", "/var/cache/pqedge/peers", "`DIR` where scripts/peers made the trixie root (nginx, h2load)")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return benchFlagError("proxy", fmt.Errorf("unexpected argument %q", pos[0]))
	}
	self, err := selfCommand()
	if err != nil {
		return err
	}
	opts, err := f.proxyOptions(self, stderr)
	if err != nil {
		return err
	}
	work, err := benchWorkDir(f.out)
	if err != nil {
		return err
	}
	defer os.RemoveAll(work) // keys and configs; the results stay
	opts.Dir = work

	ctx, stop := benchContext()
	defer stop()
	res, err := bench.Proxy(ctx, opts)
	if err != nil {
		return err
	}
	if err := bench.WriteProxyTable(stdout, res); err != nil {
		return err
	}
	paths, err := bench.WriteProxyFiles(f.out, res)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s\n", strings.Join(paths, ", "))
	for _, c := range res.Cells {
		if c.Error == "" {
			return nil
		}
	}
	return withHint(errors.New("every cell failed"), "the FAILED lines above say why")
}

// proxyOptions checks the flags and turns them into bench.ProxyOptions
// (without Dir). The peer root is required: the upstream and h2load come
// from it.
func (f *benchProxyFlags) proxyOptions(self []string, stderr io.Writer) (bench.ProxyOptions, error) {
	var o bench.ProxyOptions
	if f.runs < 1 || f.connections < 1 || f.streams < 1 || f.streamConns < 1 || f.hsConns < 1 || f.idleConns < 1 || f.body < 1 {
		return o, benchFlagError("proxy", errors.New("-runs, -connections, -streams, -stream-conns, -handshake-conns, -idle-conns and -body must be at least 1"))
	}
	if f.maxOthers < 0 {
		return o, benchFlagError("proxy", fmt.Errorf("-max-others %v: must not be negative", f.maxOthers))
	}
	if f.duration <= 0 || f.warmup < 0 || f.timeout <= 0 {
		return o, benchFlagError("proxy", errors.New("-duration and -timeout must be positive, -warmup not negative"))
	}
	// Each held connection is a file descriptor in the harness and one in
	// the front; stay well inside the usual limit of 20,000.
	if f.idleConns > 8000 {
		return o, benchFlagError("proxy", fmt.Errorf("-idle-conns %d: at most 8000", f.idleConns), "a few thousand connections measure the per-connection memory as well as more")
	}
	modes, err := bench.ParseProxyModes(splitList(f.modes))
	if err != nil {
		return o, benchFlagError("proxy", fmt.Errorf("-modes: %w", err))
	}
	if len(modes) == 0 {
		return o, benchFlagError("proxy", fmt.Errorf("-modes %q names no mode", f.modes))
	}
	group, err := pqtls.ParseServableGroup(f.group)
	if err != nil {
		return o, benchFlagError("proxy", fmt.Errorf("-group: %w", err), "use a group crypto/tls and OpenSSL both serve, such as X25519MLKEM768 or x25519")
	}
	cert, err := bench.ParseCertAlg(f.cert)
	if err != nil {
		return o, benchFlagError("proxy", fmt.Errorf("-cert: %w", err))
	}
	o = bench.ProxyOptions{
		Modes: modes, Group: group, Cert: cert, Runs: f.runs, Duration: f.duration, Warmup: f.warmup,
		Connections: f.connections, Streams: f.streams, StreamConns: f.streamConns, HandshakeConcurrency: f.hsConns,
		IdleConns: f.idleConns, BodyBytes: f.body, Timeout: f.timeout, Pin: f.pin, ProfileDir: f.profile, Log: stderr,
		MaxOtherLoad: f.maxOthers,
	}
	if f.warmup == 0 {
		o.Warmup = time.Millisecond // bench.Proxy's zero means its default
	}
	fronts := splitList(f.fronts)
	if err := checkFronts("proxy", fronts); err != nil {
		return o, err
	}
	if len(fronts) == 0 {
		return o, benchFlagError("proxy", errors.New("no front to measure"), "list at least one of "+strings.Join(benchFronts, ", ")+" in -fronts")
	}
	root, err := bench.NginxRoot(f.peersDir)
	if err != nil {
		return o, withHint(fmt.Errorf("bench proxy needs the trixie peer root: %w", err),
			"the upstream (nginx) and the load generator (h2load) run from it; `make peers` (as root) makes it, -peers-dir says where it is")
	}
	o.PeerRoot = root
	o.Fronts = frontLaunchers(fronts, self, root)
	return o, nil
}

// splitList splits a comma-separated flag value, dropping empty names.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// benchFronts are the fronts bench proxy and bench overload measure, in
// their default order.
var benchFronts = []string{bench.ServerPQEdge, bench.ServerPlain, bench.ServerNginx}

// checkFronts fails with a usage error naming the first front of names
// that is not one of benchFronts.
func checkFronts(cmd string, names []string) error {
	for _, s := range names {
		if !slices.Contains(benchFronts, s) {
			return benchFlagError(cmd, fmt.Errorf("-fronts: unknown front %q", s), "fronts are "+strings.Join(benchFronts, ", "))
		}
	}
	return nil
}

// frontLaunchers are the launchers of names (checked by checkFronts), in
// order; nginx runs from the peer root.
func frontLaunchers(names, self []string, root string) []bench.ProxyLauncher {
	var out []bench.ProxyLauncher
	for _, s := range names {
		switch s {
		case bench.ServerPQEdge:
			out = append(out, bench.PQEdgeLauncher{Self: self})
		case bench.ServerPlain:
			out = append(out, bench.PlainLauncher{Self: self})
		case bench.ServerNginx:
			out = append(out, bench.NginxLauncher{Root: root})
		}
	}
	return out
}
