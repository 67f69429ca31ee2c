package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pqedge/pqedge/bench"
	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/pqtls"
)

const benchUsage = `usage: pqedge bench COMMAND [flags]

Measures what post-quantum TLS handshakes and proxied traffic cost. See
docs/BENCHMARKS.md.

commands:
  handshake  TLS 1.3 handshakes against one server, over TCP or QUIC: rate,
             latency, bytes, errors and (with -server-pid) the server's CPU
             per handshake; over QUIC also the Initial packets, the
             anti-amplification budget and the round trips
  matrix     every group x certificate algorithm (x transport) against
             pqedge, a plain crypto/tls server and nginx + OpenSSL 3.5, each
             pinned to one core; writes CSV, JSON and SVG
  proxy      proxied keep-alive requests (HTTP/1.1, HTTP/2), TLS streams,
             handshakes with one request, and memory per idle and
             pre-handshake connection, for pqedge, the plain Go reverse proxy
             and nginx + OpenSSL 3.5, each pinned to one core; writes CSV and
             JSON
  overload   keep-alive request latency alone and under a flood of new
             handshakes at several times the front's capacity, for pqedge
             (default [limits]), the plain Go floor and nginx + OpenSSL 3.5;
             writes JSON

Run 'pqedge bench COMMAND -h' for a command's flags.
`

// runBench runs `pqedge bench ARGS...`: 0 on success or help, 1 when the
// benchmark failed (nothing succeeded, a server did not start), 2 on a
// usage error.
func runBench(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, benchUsage)
		return 2
	case isHelp(args[0]):
		if len(args) > 1 {
			return runBench(append([]string{args[1]}, "-h"), stdout, stderr)
		}
		fmt.Fprint(stdout, benchUsage)
		return 0
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) error{
		"handshake": benchHandshake,
		"matrix":    benchMatrix,
		"proxy":     benchProxy,
		"overload":  benchOverload,
		// serve-plain is the matrix's plain crypto/tls server, run as a
		// child process so that its CPU can be read from /proc.
		"serve-plain": benchServePlain,
	}
	run, ok := cmds[args[0]]
	if !ok {
		return cliFail(stderr, &cliError{err: fmt.Errorf("unknown bench command %q", args[0]), hints: []string{"commands are handshake, matrix, proxy and overload; see `pqedge bench --help`"}, usage: true})
	}
	if err := run(args[1:], stdout, stderr); err != nil {
		return cliFail(stderr, err)
	}
	return 0
}

// benchFlagError is a usage error about one flag of a bench command.
func benchFlagError(cmd string, err error, hints ...string) error {
	return &cliError{err: err, hints: append(hints, "see `pqedge bench "+cmd+" -h`"), usage: true}
}

func parseGroupList(cmd, list string) ([]tls.CurveID, error) {
	var out []tls.CurveID
	for _, name := range strings.Split(list, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		id, err := pqtls.ParseGroup(name)
		if err != nil {
			return nil, benchFlagError(cmd, fmt.Errorf("-groups: %w", err), "group names are IANA names such as X25519MLKEM768, SecP256r1MLKEM768, x25519, secp256r1")
		}
		out = append(out, id)
	}
	return out, nil
}

func parseSigList(cmd, list string) ([]tls.SignatureScheme, error) {
	var out []tls.SignatureScheme
	for _, name := range strings.Split(list, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		s, err := pqtls.ParseSignatureScheme(name)
		if err != nil {
			return nil, benchFlagError(cmd, fmt.Errorf("-sigalgs: %w", err), "signature names are IANA names such as mldsa44, ecdsa_secp256r1_sha256, ed25519, rsa_pss_rsae_sha256")
		}
		out = append(out, s)
	}
	return out, nil
}

// benchContext ends on SIGINT or SIGTERM, so that ^C stops a benchmark
// and the servers it started.
func benchContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

const benchHandshakeAbout = `Makes TLS 1.3 handshakes against the server at -target with pqedge's lean
client, over TCP or (-transport quic) QUIC: full, or resumed with -resume
on; closed loop (-concurrency in flight) or open loop (-rate per second);
for -duration or -count. Reports the rate, latency percentiles, bytes each
way, the server's first flight, HelloRetryRequests, resumptions, errors by
kind and, with -server-pid, the server's CPU per handshake; over QUIC also
the Initial packets, the anti-amplification budget and the round trips to
the server's Finished. With -request PATH each TCP handshake also sends
GET PATH (Host from -servername, Connection: close) and reads the response
to the server's close, as a first visit does: the server CPU is then per
handshake + request, and a status outside 2xx is an error. A pqedge under
test counts the TCP handshakes as client family "pqedge", apart from its
visitors.

With -replay it floods instead, as an attacker would: after one full
handshake that measures the server's flight, each attempt connects, sends
one of 64 ClientHellos made before the run (fresh key shares each), reads
the server's flight up to its Finished (the server has then made its key
share, done the key exchange and signed) and closes. Replayed ClientHellos
cost the server its cryptography and the client none, so one client core
offers several times what one server core can answer. An attempt succeeds
when the whole flight arrived; failures are refused, reset, timeout,
short-flight, or what the server said (an alert, not-tls).
`

func benchHandshake(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench handshake", "bench handshake -target HOST:PORT [-duration D | -count N] [flags]", benchHandshakeAbout, stdout)
	target := fs.String("target", "", "the server `HOST:PORT`")
	groups := fs.String("groups", "X25519MLKEM768", "groups to offer, comma-separated `LIST`, in order; the first gets a key share")
	sigalgs := fs.String("sigalgs", "", "signature algorithms to offer, comma-separated `LIST` (default: ML-DSA, ECDSA, Ed25519, RSA)")
	concurrency := fs.Int("concurrency", 4, "handshakes in flight at most, `N`")
	duration := fs.Duration("duration", 0, "how long to start handshakes, `D` (default 10s unless -count is given)")
	count := fs.Int("count", 0, "how many handshakes to make, `N`")
	rate := fs.Float64("rate", 0, "open loop: start `R` handshakes per second, latency counted from the intended start (0: closed loop)")
	resume := fs.String("resume", "off", "whether to resume, `on|off`. on: each worker's first handshake is full and gets a session ticket, which every later\nhandshake of that worker offers again (psk_dhe_ke: key shares are still sent); a ticket\nthe server declines is replaced by the new one. off: every handshake is full")
	serverPID := fs.Int("server-pid", 0, "the server's process id `PID` on this machine: report its CPU (with its children's) per handshake")
	serverName := fs.String("servername", "localhost", "server `NAME` (SNI)")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline `D` of each handshake, connect included")
	precompute := fs.Bool("precompute", true, "reuse one precomputed key share per group, so the client's CPU goes to the server under\ntest; -precompute=false makes fresh key shares for every handshake. Benchmark only:\nreused key shares give no forward secrecy")
	sources := fs.Int("sources", 0, "tcp, loopback targets: connect from `N` source addresses 127.1.x.y in turn, as N clients\n(a distributed flood, which a per-client-address cap does not stop); 0: the system's choice")
	jsonOut := fs.Bool("json", false, "print the report as JSON instead of a table")
	csvFile := fs.String("csv", "", "also write the report as CSV to `FILE`")
	transport := fs.String("transport", bench.TransportTCP, "`tcp|quic`: TLS over TCP, or QUIC with ALPN h3 on the same port over UDP")
	shapeRTT := fs.Duration("shape-rtt", bench.DefaultShapeRTT, "quic: emulated round-trip time `D` of the 3 handshakes that measure Initial packets and round trips")
	request := fs.String("request", "", "after each handshake send GET `PATH` HTTP/1.1 (Host: -servername, Connection: close) and read the\nresponse to the server's close; non-2xx answers count as errors (tcp only)")
	replay := fs.Bool("replay", false, "flood with replayed ClientHellos: each attempt sends a ClientHello made before the run and reads\nthe server's flight to its Finished, then closes; the server's cryptography, no client cryptography\n(tcp only, not with -resume on or -request)")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return benchFlagError("handshake", fmt.Errorf("unexpected argument %q", pos[0]), "the server goes in -target HOST:PORT")
	}
	switch *transport {
	case bench.TransportTCP:
	case bench.TransportQUIC:
		if *resume == "on" || *sigalgs != "" {
			return benchFlagError("handshake", errors.New("-transport quic measures full handshakes with crypto/tls's own signature algorithms"), "drop -resume on and -sigalgs")
		}
		if *request != "" {
			return benchFlagError("handshake", errors.New("-request is measured over tcp only"), "drop -request or -transport quic")
		}
		if *shapeRTT <= 0 {
			return benchFlagError("handshake", fmt.Errorf("-shape-rtt %s: want a positive duration", *shapeRTT))
		}
	default:
		return benchFlagError("handshake", fmt.Errorf("-transport %q: want tcp or quic", *transport))
	}
	if *target == "" {
		return benchFlagError("handshake", errors.New("handshake needs -target HOST:PORT"), "try `pqedge bench handshake -target 127.0.0.1:8443 -duration 5s`")
	}
	switch *resume {
	case "off", "on":
	default:
		return benchFlagError("handshake", fmt.Errorf("-resume %q: want on or off", *resume))
	}
	if *count < 0 || *duration < 0 || *concurrency < 1 || *rate < 0 {
		return benchFlagError("handshake", errors.New("-count, -duration and -rate must not be negative, -concurrency must be at least 1"))
	}
	if *count == 0 && *duration == 0 {
		*duration = 10 * time.Second
	}
	if *replay && (*transport != bench.TransportTCP || *resume == "on" || *request != "") {
		return benchFlagError("handshake", errors.New("-replay floods over tcp with full handshakes and no request"), "drop -transport quic, -resume on and -request")
	}
	opts := bench.Options{
		Target: *target, ServerName: *serverName, Concurrency: *concurrency,
		Count: *count, Duration: *duration, Rate: *rate, Timeout: *timeout,
		Precompute: *precompute && *transport == bench.TransportTCP, ServerPID: *serverPID, Resume: *resume == "on",
		Transport: *transport, ShapeRTT: *shapeRTT, Request: *request, Replay: *replay,
	}
	if err := bench.CheckRequestPath(*request); err != nil {
		return benchFlagError("handshake", fmt.Errorf("-request: %w", err))
	}
	if *sources != 0 {
		if *transport != bench.TransportTCP {
			return benchFlagError("handshake", errors.New("-sources works over TCP only"))
		}
		if _, err = bench.SpreadConnDial(*sources); err != nil {
			return benchFlagError("handshake", fmt.Errorf("-sources: %w", err))
		}
		opts.Sources = *sources
	}
	if opts.Groups, err = parseGroupList("handshake", *groups); err != nil {
		return err
	}
	if len(opts.Groups) == 0 {
		// Else bench.Run would quietly measure its default group instead.
		return benchFlagError("handshake", fmt.Errorf("-groups %q names no group", *groups))
	}
	if opts.SignatureAlgorithms, err = parseSigList("handshake", *sigalgs); err != nil {
		return err
	}
	if *serverPID > 0 {
		if _, err := bench.TreeCPU(*serverPID); err != nil {
			return benchFlagError("handshake", fmt.Errorf("-server-pid %d: %w", *serverPID, err), "give the pid of the server process on this machine (nginx: the master's)")
		}
	}
	var last bench.Progress
	ok := "ok"
	if *replay {
		ok = "flights"
	}
	opts.Progress = func(p bench.Progress) {
		fmt.Fprintf(stderr, "bench: %4.0fs  %8d %s  %7.0f/s  %d errors\n", p.Elapsed.Seconds(), p.Completed, ok, float64(p.Completed-last.Completed)/(p.Elapsed-last.Elapsed).Seconds(), p.Errors)
		last = p
	}
	ctx, stop := benchContext()
	defer stop()
	rep, runErr := bench.Run(ctx, opts)
	if rep == nil {
		return runErr
	}
	if *csvFile != "" {
		if err := writeFile(*csvFile, func(w io.Writer) error { return bench.WriteReportCSV(w, rep) }); err != nil {
			return err
		}
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := bench.WriteTable(stdout, rep); err != nil {
		return err
	}
	if errors.Is(runErr, bench.ErrNoSuccess) {
		err := fmt.Errorf("no handshake with %s succeeded (%d attempts)", *target, rep.Attempts)
		if *replay {
			err = fmt.Errorf("no replayed ClientHello got the whole flight from %s (%d attempts)", *target, rep.Attempts)
		}
		return withHint(err,
			"check that the server listens on -target and serves TLS 1.3 with one of -groups")
	}
	return runErr
}

func writeFile(path string, f func(io.Writer) error) error {
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("failed to create %s: %w", path, err)
	}
	if err := f(out); err != nil {
		out.Close()
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return nil
}

// selfCommand is how the matrix re-runs this binary. Under testscript the
// binary is the test binary reached through a link named pqedge, so the
// name it was run by wins over /proc/self/exe.
func selfCommand() ([]string, error) {
	if filepath.Base(os.Args[0]) == "pqedge" {
		if p, err := exec.LookPath(os.Args[0]); err == nil {
			if abs, err := filepath.Abs(p); err == nil {
				return []string{abs}, nil
			}
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("failed to find the pqedge binary to run servers with: %w", err)
	}
	return []string{exe}, nil
}

const benchMatrixAbout = `Measures every group x certificate algorithm (x transport, -transports)
against pqedge, a plain crypto/tls server and nginx + OpenSSL 3.5 (from the
trixie peer root that make peers installs), each server pinned to CPU 0 and
the client to CPU 1, and writes DIR/matrix.csv, matrix.json and matrix.svg,
with a time-to-first-byte model of a link with -rtt and -initcwnd.
Certificate names ending in -circl or -stdlib say which ML-DSA signer the Go
servers use. With -request PATH every handshake also sends GET PATH and
reads the response to the server's close (a first visit), and every server
proxies it to one nginx upstream that serves 1 KiB at /bench: pqedge with
its defaults, plain as the Go reverse proxy of serve-plain -upstream, nginx
with proxy_pass. See docs/BENCHMARKS.md for the method and results.
`

func benchMatrix(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench matrix", "bench matrix [-groups LIST] [-certs LIST] [-servers LIST] [-out DIR] [flags]", benchMatrixAbout, stdout)
	var groupNames []string
	for _, g := range bench.DefaultMatrixGroups {
		groupNames = append(groupNames, pqtls.GroupName(g))
	}
	groups := fs.String("groups", strings.Join(groupNames, ","), "groups, comma-separated `LIST`")
	var certNames []string
	for _, a := range bench.CertAlgs() {
		certNames = append(certNames, a.Name)
	}
	certList := fs.String("certs", strings.Join(certNames, ","), "certificate algorithms, comma-separated `LIST` (ML-DSA with its signer: -circl or -stdlib)")
	servers := fs.String("servers", "pqedge,plain,nginx", "servers to measure, comma-separated `LIST` of pqedge, plain, nginx (nginx is skipped when the trixie peer root is missing)")
	runs := fs.Int("runs", 3, "repetitions `N` of each cell")
	duration := fs.Duration("duration", 2*time.Second, "length `D` of each run")
	concurrency := fs.Int("concurrency", 8, "handshakes in flight, `N`")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline `D` of each handshake")
	out := fs.String("out", "bench-out", "output `DIR` for matrix.csv, matrix.json and matrix.svg (certificates and configs go to a work directory inside, removed at the end)")
	rtt := fs.Duration("rtt", 50*time.Millisecond, "round-trip time `D` of the TTFB model")
	initcwnd := fs.Int("initcwnd", 10, "initial congestion window `N` of the TTFB model, in segments of 1460 B")
	pin := fs.Bool("pin", true, "pin each server to CPU 0 and the client to CPU 1 (taskset); -pin=false on a one-core machine")
	transports := fs.String("transports", bench.TransportTCP, "tcp, quic or both, comma-separated `LIST` (quic: servers that serve HTTP/3, today plain)")
	shapeRTT := fs.Duration("shape-rtt", bench.DefaultShapeRTT, "emulated round-trip time `D` of the quic cells' shape handshakes")
	peersDir := fs.String("peers-dir", "/var/cache/pqedge/peers", "`DIR` where scripts/peers made the trixie root with nginx")
	request := fs.String("request", "", "after each handshake send GET `PATH` and read the response to the close; the servers proxy it to\nan nginx upstream serving 1 KiB at "+bench.BenchPath+" (tcp only; needs the trixie peer root)")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return benchFlagError("matrix", fmt.Errorf("unexpected argument %q", pos[0]))
	}
	if err := bench.CheckRequestPath(*request); err != nil {
		return benchFlagError("matrix", fmt.Errorf("-request: %w", err), "the upstream serves "+bench.BenchPath)
	}
	if *runs < 1 || *duration <= 0 || *concurrency < 1 || *rtt < 0 || *initcwnd < 1 {
		return benchFlagError("matrix", errors.New("-runs, -concurrency and -initcwnd must be at least 1, -duration positive, -rtt not negative"))
	}
	opts := bench.MatrixOptions{
		Runs: *runs, Duration: *duration, Concurrency: *concurrency, Timeout: *timeout,
		Network: bench.Network{RTT: *rtt, InitCwnd: *initcwnd, MSS: 1460},
		Pin:     *pin, Log: stderr, ShapeRTT: *shapeRTT,
	}
	for _, tr := range strings.Split(*transports, ",") {
		switch tr = strings.TrimSpace(tr); tr {
		case bench.TransportTCP, bench.TransportQUIC:
			opts.Transports = append(opts.Transports, tr)
		case "":
		default:
			return benchFlagError("matrix", fmt.Errorf("-transports: unknown transport %q", tr), "transports are tcp and quic")
		}
	}
	if len(opts.Transports) == 0 || *shapeRTT <= 0 {
		return benchFlagError("matrix", fmt.Errorf("-transports %q names no transport, or -shape-rtt %s is not positive", *transports, *shapeRTT))
	}
	if *request != "" {
		if slices.Contains(opts.Transports, bench.TransportQUIC) {
			return benchFlagError("matrix", errors.New("-request is measured over tcp only"), "drop quic from -transports")
		}
		root, err := bench.NginxRoot(*peersDir)
		if err != nil {
			return withHint(fmt.Errorf("-request needs the nginx upstream: %w", err), "run `make peers`, or point -peers-dir at the directory holding trixie/")
		}
		opts.Request, opts.PeerRoot = *request, root
	}
	if opts.Groups, err = parseGroupList("matrix", *groups); err != nil {
		return err
	}
	if len(opts.Groups) == 0 {
		return benchFlagError("matrix", fmt.Errorf("-groups %q names no group", *groups))
	}
	for _, g := range opts.Groups {
		if _, err := pqtls.ParseServableGroup(pqtls.GroupName(g)); err != nil {
			return benchFlagError("matrix", fmt.Errorf("-groups: %w", err), "the matrix's servers are Go and OpenSSL servers: use groups crypto/tls can serve")
		}
	}
	for _, name := range strings.Split(*certList, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		a, err := bench.ParseCertAlg(name)
		if err != nil {
			return benchFlagError("matrix", fmt.Errorf("-certs: %w", err))
		}
		opts.Certs = append(opts.Certs, a)
	}
	self, err := selfCommand()
	if err != nil {
		return err
	}
	for _, s := range strings.Split(*servers, ",") {
		switch strings.TrimSpace(s) {
		case bench.ServerPQEdge:
			opts.Servers = append(opts.Servers, bench.PQEdgeLauncher{Self: self})
		case bench.ServerPlain:
			opts.Servers = append(opts.Servers, bench.PlainLauncher{Self: self})
		case bench.ServerNginx:
			root, err := bench.NginxRoot(*peersDir)
			if err != nil {
				fmt.Fprintf(stderr, "bench: skipping nginx: %v\n", err)
				continue
			}
			opts.Servers = append(opts.Servers, bench.NginxLauncher{Root: root})
		case "":
		default:
			return benchFlagError("matrix", fmt.Errorf("-servers: unknown server %q", s), "servers are pqedge, plain and nginx")
		}
	}
	if len(opts.Servers) == 0 {
		return benchFlagError("matrix", errors.New("no server to measure"), "list at least one of pqedge, plain, nginx in -servers")
	}
	work, err := benchWorkDir(*out)
	if err != nil {
		return err
	}
	defer os.RemoveAll(work) // keys and configs; the results stay
	opts.Dir = work

	ctx, stop := benchContext()
	defer stop()
	res, err := bench.Matrix(ctx, opts)
	if err != nil {
		return err
	}
	if err := bench.WriteMatrixTable(stdout, res); err != nil {
		return err
	}
	paths, err := bench.WriteMatrixFiles(*out, res)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s\n", strings.Join(paths, ", "))
	measured := 0
	for _, c := range res.Cells {
		if c.Error == "" {
			measured++
		}
	}
	if measured == 0 {
		return withHint(errors.New("no cell of the matrix was measured"), "the FAILED and SKIPPED lines above say why; check the server names in -servers")
	}
	return nil
}

const benchServePlainAbout = `The plain floors, run by pqedge bench matrix and bench proxy as child
processes so that their CPU can be read from /proc. Alone, a crypto/tls
server on -listen that completes handshakes and nothing else. With -upstream
(and/or -stream-upstream), a minimal Go reverse proxy: crypto/tls, net/http
and httputil.ReverseProxy with a keep-alive upstream pool on -listen, TLS
streams relayed from -stream-listen. Serves until SIGTERM.
`

func benchServePlain(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench serve-plain", "bench serve-plain -cert FILE -key FILE [-listen ADDR] [-groups LIST] [-signer circl|stdlib] [-quic] [-upstream HOST:PORT] [-stream-listen ADDR -stream-upstream HOST:PORT] [-debug-listen ADDR]", benchServePlainAbout, stdout)
	listen := fs.String("listen", "127.0.0.1:0", "the address `ADDR` to listen on (TLS handshakes only, or HTTPS with -upstream)")
	certFile := fs.String("cert", "", "certificate chain `FILE` (PEM, leaf first)")
	keyFile := fs.String("key", "", "private key `FILE` (PEM)")
	groups := fs.String("groups", "", "groups to serve, comma-separated `LIST` (default: crypto/tls's)")
	signer := fs.String("signer", "", "ML-DSA `SIGNER`: circl or stdlib (default: crypto/tls's own, stdlib)")
	quicOn := fs.Bool("quic", false, "also serve HTTP/3 (quic-go) on UDP at the same address (handshakes only, not with -upstream)")
	upstream := fs.String("upstream", "", "proxy HTTPS on -listen to this HTTP/1.1 upstream `HOST:PORT` (the floor of bench proxy)")
	streamListen := fs.String("stream-listen", "", "also relay TLS streams accepted on `ADDR`...")
	streamUpstream := fs.String("stream-upstream", "", "...to this TCP upstream `HOST:PORT`")
	debugListen := fs.String("debug-listen", "", debugListenUsage)
	if _, err := fs.parse(args); err != nil {
		return err
	}
	if *certFile == "" || *keyFile == "" {
		return benchFlagError("serve-plain", errors.New("serve-plain needs -cert FILE and -key FILE"))
	}
	if (*streamListen == "") != (*streamUpstream == "") {
		return benchFlagError("serve-plain", errors.New("-stream-listen and -stream-upstream go together"))
	}
	if *quicOn && (*upstream != "" || *streamUpstream != "") {
		return benchFlagError("serve-plain", errors.New("-quic serves handshakes only: not with -upstream or -stream-upstream"))
	}
	groupIDs, err := parseGroupList("serve-plain", *groups)
	if err != nil {
		return err
	}
	var signerKind certs.SignerKind
	if *signer != "" {
		if signerKind, err = certs.ParseSignerKind(*signer); err != nil {
			return benchFlagError("serve-plain", fmt.Errorf("-signer: %w", err))
		}
	}
	if *debugListen != "" {
		addr, err := startDebugListener(*debugListen)
		if err != nil {
			return benchFlagError("serve-plain", err)
		}
		fmt.Fprintf(stderr, "serve-plain: debug listener on %s\n", addr)
	}
	ctx, stop := benchContext()
	defer stop()
	if *upstream == "" && *streamUpstream == "" {
		opts := bench.PlainOptions{Listen: *listen, CertFile: *certFile, KeyFile: *keyFile, Groups: groupIDs, Signer: signerKind, QUIC: *quicOn}
		opts.Ready = func(addr string) { fmt.Fprintf(stderr, "serve-plain: listening on %s\n", addr) }
		return bench.ServePlain(ctx, opts)
	}
	opts := bench.PlainProxyOptions{
		StreamListen: *streamListen, StreamUpstream: *streamUpstream,
		CertFile: *certFile, KeyFile: *keyFile, Groups: groupIDs, Signer: signerKind,
	}
	if *upstream != "" {
		opts.Listen, opts.Upstream = *listen, *upstream
	}
	opts.Ready = func(https, stream string) {
		fmt.Fprintf(stderr, "serve-plain: proxying https on %q, streams on %q\n", https, stream)
	}
	return bench.ServePlainProxy(ctx, opts)
}

// benchWorkDir makes the -out directory of a bench command and, inside it,
// a fresh work directory for the certificates, keys and configs of one run,
// which the caller removes when done.
func benchWorkDir(out string) (string, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("failed to make -out %s: %w", out, err)
	}
	work, err := os.MkdirTemp(out, "work-")
	if err != nil {
		return "", fmt.Errorf("failed to make a work directory in %s: %w", out, err)
	}
	return work, nil
}
