package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pqedge/pqedge/bench"
	"github.com/pqedge/pqedge/pqtls"
)

const benchOverloadAbout = `Measures whether a flood of new TLS handshakes starves connections a front
has already established (issue 12): for pqedge with its default [limits],
the plain Go floor (no limits) and nginx (one worker, OpenSSL 3.5, no
limits: an event loop's answer to the same flood), each pinned to CPU 0
before an nginx upstream, it measures the front's handshake capacity (closed loop), then the
latency of keep-alive HTTP/1.1 requests sent at a fixed rate (open loop)
alone, and again while new handshakes are offered at -flood times that
capacity (open loop, pqedge bench handshake in a child process, on CPU 1
with the upstream and this harness). The flood client (-flood-client)
replays ClientHellos by default (bench handshake -replay: the front does
all its cryptography, the client none, as an attacker's flood); full makes
full handshakes, which cost the client's core as much as the front's and
reach only 1-2x. A flood attempt waits -flood-timeout for the front's
answer, as an attacker would not wait long either: a front that queues
every connection would otherwise hold the flood to about its own capacity.
In both phases a control (-control-rate) sends requests straight to the
upstream, past the front: its flooded/unloaded p99 is what the flood costs
the clients' core and the kernel, not the front. Reports p50/p99/p99.9 of
both phases, the flooded/unloaded p99 ratio (target: at most 2x), the
control's, failed requests, the rate the flood client attempted against
the rate asked, its outcomes, and pqedge's handshakes completed, queued
and refused (from its metrics). Writes DIR/overload.json. Needs root
(chroot into the peer root).

On a shared machine, run it in a real-time class (chrt -r 10 pqedge bench
overload ...): the clients and the upstream then keep their core against
other processes' load. The fronts leave the real-time class once started
(SCHED_OTHER at nice -10, as an edge runs in production; a saturated
real-time front would measure the real-time class: see docs/BENCHMARKS.md),
and the flood runs at nice -10 below the clients; without a real-time
harness the flood runs in SCHED_IDLE. See docs/BENCHMARKS.md.
`

func benchOverload(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench overload", "bench overload [-fronts LIST] [-flood X] [-runs N] [-duration D] [-out DIR] [flags]", benchOverloadAbout, stdout)
	var (
		fronts, group, cert, out, peersDir = strings.Join(benchFronts, ","), "", "", "", ""
		floodClient                        string
		runs, conns, capConc, floodConns   int
		sources                            int
		flood, rate, controlRate           float64
		duration, lead, capDur, timeout    time.Duration
		floodTimeout                       time.Duration
		pin                                bool
	)
	fs.StringVar(&fronts, "fronts", fronts, "fronts to measure, comma-separated `LIST` of pqedge, plain (the Go floor) and nginx")
	fs.Float64Var(&flood, "flood", 5, "offered rate of new handshakes as a multiple `X` of the front's measured capacity")
	fs.IntVar(&runs, "runs", 3, "repetitions `N` per front, each on a freshly started front")
	fs.IntVar(&conns, "conns", 16, "keep-alive connections `N` carrying the measured requests")
	fs.Float64Var(&rate, "rate", 200, "requests per second `R` over all keep-alive connections (open loop)")
	fs.Float64Var(&controlRate, "control-rate", 50, "requests per second `R` the control sends straight to the upstream (on 4 connections) in both phases; 0: no control")
	fs.DurationVar(&duration, "duration", 5*time.Second, "length `D` of each phase (unloaded, flooded)")
	fs.DurationVar(&lead, "flood-lead", time.Second, "how long `D` the flood runs before the flooded phase starts")
	fs.DurationVar(&capDur, "capacity-duration", 3*time.Second, "length `D` of the closed-loop capacity run")
	fs.IntVar(&capConc, "capacity-concurrency", 16, "handshakes in flight `N` in the capacity run")
	fs.StringVar(&floodClient, "flood-client", bench.FloodReplay, "how the flood makes handshakes, `replay|full`: replay sends ClientHellos made before the run and reads\nthe front's flight (the front's cryptography, no client cryptography); full makes whole handshakes")
	fs.IntVar(&floodConns, "flood-conns", 4096, "flood handshakes in flight at most, `N` (with -flood-timeout, what bounds the flood against a front that\nholds every connection)")
	fs.IntVar(&sources, "flood-sources", 256, "loopback source addresses `N` the flood comes from (127.1.x.y): a distributed flood; 1 is one client, which limits.connections_per_client stops at accept")
	fs.StringVar(&group, "group", "X25519MLKEM768", "key-exchange `GROUP` every client offers")
	fs.StringVar(&cert, "cert", "ecdsa-p256", "certificate algorithm `ALG` of the fronts (as in bench matrix -certs)")
	fs.DurationVar(&timeout, "timeout", 5*time.Second, "deadline `D` of every request, connection and handshake but the flood's")
	fs.DurationVar(&floodTimeout, "flood-timeout", 250*time.Millisecond, "how long `D` a flood attempt waits for the front's answer: the flood offers at most\n-flood-conns / D attempts per second beyond what the front answers")
	fs.StringVar(&out, "out", "bench-out", "output `DIR` for overload.json (certificates and configs go to a work directory inside, removed at the end)")
	fs.BoolVar(&pin, "pin", true, "pin each front to CPU 0 and the upstream, clients and harness to CPU 1; -pin=false on a one-core machine")
	fs.StringVar(&peersDir, "peers-dir", "/var/cache/pqedge/peers", "`DIR` where scripts/peers made the trixie root (nginx)")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return benchFlagError("overload", fmt.Errorf("unexpected argument %q", pos[0]))
	}
	if runs < 1 || conns < 1 || capConc < 1 || floodConns < 1 || sources < 1 {
		return benchFlagError("overload", errors.New("-runs, -conns, -capacity-concurrency, -flood-conns and -flood-sources must be at least 1"))
	}
	if sources > bench.MaxSources {
		return benchFlagError("overload", fmt.Errorf("-flood-sources %d: at most %d", sources, bench.MaxSources))
	}
	if flood <= 0 || rate <= 0 {
		return benchFlagError("overload", fmt.Errorf("-flood %v and -rate %v must be positive", flood, rate))
	}
	if controlRate < 0 || controlRate/4 > 1000 {
		return benchFlagError("overload", fmt.Errorf("-control-rate %v: want 0 (no control) up to 4000 requests/s", controlRate))
	}
	if duration <= 0 || lead <= 0 || capDur <= 0 || timeout <= 0 || floodTimeout <= 0 {
		return benchFlagError("overload", errors.New("-duration, -flood-lead, -capacity-duration, -timeout and -flood-timeout must be positive"))
	}
	// Every flood connection is a file descriptor here and one in the
	// front; stay well inside the usual limit of 20,000.
	if floodConns > 8000 {
		return benchFlagError("overload", fmt.Errorf("-flood-conns %d: at most 8000", floodConns))
	}
	if rate/float64(conns) > 1000 {
		return benchFlagError("overload", fmt.Errorf("-rate %v over -conns %d: more than 1,000 requests/s per connection", rate, conns),
			"the measured traffic is meant to be modest: lower -rate or raise -conns")
	}
	if floodClient != bench.FloodReplay && floodClient != bench.FloodFull {
		return benchFlagError("overload", fmt.Errorf("-flood-client %q: want replay or full", floodClient))
	}
	g, err := pqtls.ParseServableGroup(group)
	if err != nil {
		return benchFlagError("overload", fmt.Errorf("-group: %w", err), "use a group crypto/tls serves, such as X25519MLKEM768 or x25519")
	}
	alg, err := bench.ParseCertAlg(cert)
	if err != nil {
		return benchFlagError("overload", fmt.Errorf("-cert: %w", err))
	}
	self, err := selfCommand()
	if err != nil {
		return err
	}
	opts := bench.OverloadOptions{
		Self: self, Cert: alg, Group: g, Runs: runs, Flood: flood, Conns: conns, RequestRate: rate, ControlRate: controlRateOption(controlRate),
		Duration: duration, FloodLead: lead, CapacityDuration: capDur, CapacityConcurrency: capConc,
		FloodConns: floodConns, FloodSources: sources, FloodClient: floodClient, FloodTimeout: floodTimeout, Timeout: timeout, Pin: pin, Log: stderr,
	}
	names := splitList(fronts)
	if len(names) == 0 {
		return benchFlagError("overload", errors.New("no front to measure"), "list at least one of "+strings.Join(benchFronts, ", ")+" in -fronts")
	}
	if err := checkFronts("overload", names); err != nil {
		return err
	}
	root, err := bench.NginxRoot(peersDir)
	if err != nil {
		return withHint(fmt.Errorf("bench overload needs the trixie peer root: %w", err),
			"the upstream (nginx) runs from it; `make peers` (as root) makes it, -peers-dir says where it is")
	}
	opts.Fronts = frontLaunchers(names, self, root)
	opts.PeerRoot = root

	work, err := benchWorkDir(out)
	if err != nil {
		return err
	}
	defer os.RemoveAll(work) // keys and configs; the results stay
	opts.Dir = work

	ctx, stop := benchContext()
	defer stop()
	res, err := bench.Overload(ctx, opts)
	if err != nil {
		return err
	}
	if err := bench.WriteOverloadTable(stdout, res); err != nil {
		return err
	}
	path, err := bench.WriteOverloadJSON(out, res)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s\n", path)
	for _, f := range res.Fronts {
		if f.Error == "" {
			return nil
		}
	}
	failed := make([]string, 0, len(res.Fronts))
	for _, f := range res.Fronts {
		failed = append(failed, f.Front)
	}
	return withHint(fmt.Errorf("every front failed (%s)", strings.Join(failed, ", ")), "the FAILED lines above say why")
}

// controlRateOption is -control-rate as OverloadOptions.ControlRate, whose
// zero means the default: 0 (no control) becomes negative.
func controlRateOption(r float64) float64 {
	if r == 0 {
		return -1
	}
	return r
}
