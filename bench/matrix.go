package bench

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/pqtls"
)

// DefaultMatrixGroups is the matrix's default group axis.
var DefaultMatrixGroups = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024, tls.X25519, tls.CurveP256}

// SpreadLimit is the largest (max-min)/median of a cell's repeated runs
// that is not flagged.
const SpreadLimit = 0.10

// MatrixOptions configure Matrix.
type MatrixOptions struct {
	Groups []tls.CurveID // default DefaultMatrixGroups
	Certs  []CertAlg     // default CertAlgs()
	// Transports are TransportTCP and/or TransportQUIC (default tcp
	// alone). QUIC cells are measured against servers that serve it (see
	// QUICServer); the others get none.
	Transports []string
	// ShapeRTT is the emulated round-trip time of the QUIC cells' shape
	// handshakes (default DefaultShapeRTT).
	ShapeRTT time.Duration
	// Servers start the servers under test, in order.
	Servers []Launcher
	Dir     string // where certificates and server configs go

	Runs        int           // repetitions of each cell (default 3)
	Duration    time.Duration // of each run (default 2s)
	Concurrency int           // handshakes in flight (default 8)
	Timeout     time.Duration // per handshake (default 5s)
	// PrimitiveTime is the CPU spent timing each primitive (default 200ms).
	PrimitiveTime time.Duration
	Network       Network // the TTFB model's path; zero means DefaultNetwork

	// Request, when set, is a path every handshake asks for (Options.
	// Request): each cell then measures handshake + one request + close,
	// a first visit, and every server proxies the request to one upstream
	// (ServerSpec.Upstream). TCP only.
	Request string
	// Upstream is that upstream's host:port; empty means nginx from
	// PeerRoot serving UpstreamBody bytes at BenchPath (StartNginxUpstream),
	// started after the pinning so it shares the client's core, not the
	// servers'.
	Upstream     string
	PeerRoot     string
	UpstreamBody int // default 1024

	// Pin puts each server on CPU 0 and this process on CPU 1 (ignored on
	// a machine with one CPU).
	Pin bool
	// Log receives one line per cell and run; nil discards them.
	Log io.Writer
}

// Cell is one server x group x certificate combination.
type Cell struct {
	Server    string `json:"server"`
	Transport string `json:"transport"` // tcp or quic
	Group     string `json:"group"`
	Cert      string `json:"cert"`   // CertAlg.Name
	Signer    string `json:"signer"` // who signs: circl, stdlib, openssl, or "" (classical)

	Runs []RunSummary `json:"runs"`
	// Error is why the cell has no numbers; every field below is zero then.
	Error string `json:"error,omitempty"`
	// Skipped says the cell was not measured on purpose (Error says why),
	// rather than failed.
	Skipped bool `json:"skipped,omitempty"`

	HandshakesPerSec float64       `json:"handshakes_per_sec"`
	ServerCPU        time.Duration `json:"server_cpu_ns"` // median over runs, per handshake
	ClientCPU        time.Duration `json:"client_cpu_ns"`
	P50              time.Duration `json:"p50_ns"` // of the last run
	P99              time.Duration `json:"p99_ns"`
	Spread           float64       `json:"spread"` // of ServerCPU over runs
	Noisy            bool          `json:"noisy"`  // Spread > SpreadLimit
	// OtherLoad is the median over runs of the CPUs other processes kept
	// busy (Report.OtherLoad): high values explain noisy cells.
	OtherLoad float64 `json:"other_load"`

	ClientBytes       float64 `json:"client_bytes"`
	ServerBytes       float64 `json:"server_bytes"`
	ServerFlightBytes int     `json:"server_flight_bytes"`
	// ExtraRoundTrips is modeled over TCP (slow start, see ttfb.go) and
	// measured over QUIC (QUIC.RoundTrips - 1 on an emulated path).
	ExtraRoundTrips int           `json:"extra_round_trips"`
	TTFB            time.Duration `json:"ttfb_model_ns"`
	// QUIC is the shape of a QUIC cell's handshakes; nil over TCP.
	QUIC *QUICShape `json:"quic,omitempty"`

	// Primitives is the Go cost of the server's key exchange and signature
	// for this cell; Overhead = ServerCPU - Primitives. Both are zero for
	// nginx, whose primitives are OpenSSL's.
	Primitives time.Duration `json:"primitives_ns,omitempty"`
	Overhead   time.Duration `json:"overhead_ns,omitempty"`
}

// RunSummary is one repetition of a cell.
type RunSummary struct {
	HandshakesPerSec float64       `json:"handshakes_per_sec"`
	ServerCPU        time.Duration `json:"server_cpu_ns"`
	ClientCPU        time.Duration `json:"client_cpu_ns"`
	OtherLoad        float64       `json:"other_load"`
}

// MatrixResult is everything Matrix measured.
type MatrixResult struct {
	Date        time.Time     `json:"date"`
	Machine     string        `json:"machine"`
	CPUs        int           `json:"cpus"`
	Pinned      bool          `json:"pinned"`
	Runs        int           `json:"runs"`
	Duration    time.Duration `json:"duration_ns"`
	Concurrency int           `json:"concurrency"`
	// Request is MatrixOptions.Request: with it ServerCPU and the bytes
	// are per handshake + request + close.
	Request string     `json:"request,omitempty"`
	Network Network    `json:"network"`
	Model   string     `json:"ttfb_model"`
	KEM     []KEMCost  `json:"kem"`
	Sign    []SignCost `json:"sign"`
	Cells   []Cell     `json:"cells"`
	Checks  []Check    `json:"checks"`
}

// Matrix measures every cell of the grid. A server that cannot start or a
// cell whose handshakes all fail is recorded in that cell's Error; Matrix
// itself fails only for setup errors or when ctx ends.
func Matrix(ctx context.Context, opts MatrixOptions) (*MatrixResult, error) {
	m := &matrixRun{opts: opts}
	return m.run(ctx)
}

type matrixRun struct {
	opts   MatrixOptions
	res    *MatrixResult
	chains map[certs.Alg]*Chain
	kem    map[string]KEMCost
	sign   map[string]SignCost // by CertAlg.Name
}

func (m *matrixRun) run(ctx context.Context) (*MatrixResult, error) {
	if err := m.defaults(); err != nil {
		return nil, err
	}
	if err := m.makeChains(); err != nil {
		return nil, err
	}
	if err := m.pinClient(); err != nil {
		return nil, err
	}
	stopUpstream, err := m.startUpstream(ctx)
	if err != nil {
		return nil, err
	}
	defer stopUpstream()
	if err := m.measurePrimitives(); err != nil {
		return nil, err
	}
	for _, l := range m.opts.Servers {
		for _, alg := range m.opts.Certs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			m.runServer(ctx, l, alg)
		}
	}
	m.res.Checks = Checks(m.res)
	return m.res, nil
}

func (m *matrixRun) defaults() error {
	o := &m.opts
	if len(o.Groups) == 0 {
		o.Groups = DefaultMatrixGroups
	}
	if len(o.Certs) == 0 {
		o.Certs = CertAlgs()
	}
	if len(o.Transports) == 0 {
		o.Transports = []string{TransportTCP}
	}
	for _, tr := range o.Transports {
		if tr != TransportTCP && tr != TransportQUIC {
			return fmt.Errorf("unknown transport %q, want %s or %s", tr, TransportTCP, TransportQUIC)
		}
		if tr == TransportQUIC && o.Request != "" {
			return errors.New("cells with a request are measured over tcp only")
		}
	}
	if err := CheckRequestPath(o.Request); err != nil {
		return fmt.Errorf("request %w", err)
	}
	if o.Request != "" && o.Upstream == "" && o.PeerRoot == "" {
		return errors.New("cells with a request need an upstream or the peer root to run one")
	}
	if o.UpstreamBody <= 0 {
		o.UpstreamBody = 1024
	}
	if len(o.Servers) == 0 {
		return errors.New("no servers to measure")
	}
	var err error
	if o.Dir, err = absWorkDir(o.Dir); err != nil {
		return err
	}
	o.Runs = max(o.Runs, 1)
	if o.Duration <= 0 {
		o.Duration = 2 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.PrimitiveTime <= 0 {
		o.PrimitiveTime = 200 * time.Millisecond
	}
	if o.Network == (Network{}) {
		o.Network = DefaultNetwork
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	m.res = &MatrixResult{
		Date: time.Now().UTC(), Machine: cpuModel(), CPUs: runtime.NumCPU(),
		Runs: o.Runs, Duration: o.Duration, Concurrency: o.Concurrency,
		Network: o.Network, Model: ModelDescription, Request: o.Request,
	}
	return nil
}

// startUpstream starts the nginx upstream of the request cells unless
// one was given. It runs on the client's core: its CPU is not the
// servers', and serving a small file costs nginx a few µs per request.
func (m *matrixRun) startUpstream(ctx context.Context) (stop func(), err error) {
	if m.opts.Request == "" || m.opts.Upstream != "" {
		return func() {}, nil
	}
	u, err := StartNginxUpstream(ctx, m.opts.PeerRoot, m.opts.UpstreamBody, m.opts.Concurrency*2)
	if err != nil {
		return nil, err
	}
	m.opts.Upstream = u.Addr
	return u.Stop, nil
}

// makeChains makes one chain per key algorithm: the cells of one key with
// different signers serve the very same certificate.
func (m *matrixRun) makeChains() error {
	chains, err := makeChains(m.opts.Dir, m.opts.Certs)
	if err != nil {
		return err
	}
	m.chains = chains
	return nil
}

// pinClient moves this process to CPU 1 before any server starts, so the
// servers (pinned to CPU 0 once running) never share a core with it.
func (m *matrixRun) pinClient() error {
	if !m.opts.Pin || runtime.NumCPU() < 2 {
		return nil
	}
	if err := PinSelf(1); err != nil {
		return err
	}
	m.res.Pinned = true
	return nil
}

func (m *matrixRun) measurePrimitives() error {
	m.kem, m.sign = map[string]KEMCost{}, map[string]SignCost{}
	for _, g := range m.opts.Groups {
		c, err := MeasureKEM(g, m.opts.PrimitiveTime)
		if err != nil {
			return err
		}
		m.kem[c.Group] = c
		m.res.KEM = append(m.res.KEM, c)
	}
	for _, a := range m.opts.Certs {
		c, err := MeasureSign(a, m.chains[a.Alg].Cert.PrivateKey.(crypto.Signer), m.opts.PrimitiveTime)
		if err != nil {
			return err
		}
		m.sign[a.Name] = c
		m.res.Sign = append(m.res.Sign, c)
	}
	return nil
}

// runServer starts one server for alg and measures every group against it.
func (m *matrixRun) runServer(ctx context.Context, l Launcher, alg CertAlg) {
	signer, ok := l.Signer(alg)
	if !ok {
		return
	}
	transports := m.transportsOf(l)
	if len(transports) == 0 {
		return
	}
	var cells []Cell
	for _, tr := range transports {
		for _, g := range m.opts.Groups {
			cells = append(cells, Cell{Server: l.Kind(), Transport: tr, Group: pqtls.GroupName(g), Cert: alg.Name, Signer: signer})
		}
	}
	if signer == "openssl" {
		for i := range cells {
			cells[i].Cert = alg.KeyName() // one nginx cell per key, not per Go signer
		}
	}
	defer func() { m.res.Cells = append(m.res.Cells, cells...) }()

	dir, err := os.MkdirTemp(m.opts.Dir, l.Kind()+"-"+alg.Name+"-")
	if err != nil {
		m.failAll(cells, err)
		return
	}
	p, err := l.Start(ctx, ServerSpec{Dir: dir, Chain: m.chains[alg.Alg], Alg: alg, Groups: m.opts.Groups,
		QUIC: slices.Contains(transports, TransportQUIC), Upstream: m.opts.Upstream, MaxConns: m.opts.Concurrency})
	if err != nil {
		m.failAll(cells, fmt.Errorf("failed to start %s: %w", l.Kind(), err))
		return
	}
	defer p.Stop()
	// Unlike overload's and proxy's fronts (placeFront), the matrix's
	// stays in a real-time harness's class: it measures CPU time per
	// handshake, not latency, and the real-time class keeps the
	// machine's other processes off its core (docs/BENCHMARKS.md,
	// "Handshake with one request": every cell's spread under 5%).
	if m.res.Pinned {
		if err := PinTree(p.PID, 0); err != nil {
			m.failAll(cells, err)
			return
		}
	}
	for i := range cells {
		if why := unmeasurable(l.Kind(), cells[i].Transport, alg); why != "" {
			cells[i].Error, cells[i].Skipped = why, true
			continue
		}
		m.runCell(ctx, &cells[i], m.opts.Groups[i%len(m.opts.Groups)], p, alg)
	}
}

// unmeasurable says why a cell cannot be measured with the matrix's own
// clients, or "" when it can. Over QUIC the load client is quic-go driving
// Go 1.27's crypto/tls, which leaves ML-DSA out of
// signature_algorithms_cert (go.dev/issue/82536); pqedge serves a chain
// only to a client that can verify every signature in it (RFC 8446
// Section 4.4.2.2, certs.Selector.VerifiableChainsOnly), so it refuses
// that client an ML-DSA chain signed by an ML-DSA intermediate (the
// handshake_failure alert). The plain floor and nginx serve the
// chain regardless. Clients that do offer ML-DSA there (curl 8.14 over
// HTTP/3) get it: see the compat suite.
func unmeasurable(server, transport string, alg CertAlg) string {
	if server == ServerPQEdge && transport == TransportQUIC && alg.PostQuantum() {
		return "not measured: the QUIC load client (Go 1.27 crypto/tls) leaves ML-DSA out of signature_algorithms_cert (go.dev/issue/82536), so pqedge, serving only chains a client can verify (RFC 8446 section 4.4.2.2), refuses it the ML-DSA chain; curl --http3 gets it (docs/COMPAT.md)"
	}
	return ""
}

func (m *matrixRun) failAll(cells []Cell, err error) {
	for i := range cells {
		cells[i].Error = err.Error()
	}
	fmt.Fprintf(m.opts.Log, "%s %s: %v\n", cells[0].Server, cells[0].Cert, err)
}

func (m *matrixRun) runCell(ctx context.Context, c *Cell, g tls.CurveID, p *Process, alg CertAlg) {
	var cpu, rate []float64
	var last *Report
	for run := range m.opts.Runs {
		opts := Options{
			Target: p.Addr, Groups: []tls.CurveID{g}, Concurrency: m.opts.Concurrency,
			Duration: m.opts.Duration, Timeout: m.opts.Timeout, Precompute: c.Transport == TransportTCP, ServerPID: p.PID,
			Transport: c.Transport, ShapeRTT: m.opts.ShapeRTT, Request: m.opts.Request,
		}
		if run > 0 {
			opts.ShapeCount = -1 // the shape does not vary: measure it in the first run
		}
		r, err := Run(ctx, opts)
		if err == nil && r.Failed > 0 {
			err = fmt.Errorf("%d of %d handshakes failed: %s", r.Failed, r.Attempts, r.Errors[0].Example)
		}
		if err == nil && r.Group != c.Group {
			err = fmt.Errorf("negotiated %s, not %s", r.Group, c.Group)
		}
		if err != nil {
			if r != nil && len(r.Errors) > 0 && errors.Is(err, ErrNoSuccess) {
				err = fmt.Errorf("%w: %d× %s, e.g. %s", err, r.Errors[0].Count, r.Errors[0].Kind, r.Errors[0].Example)
			}
			*c = Cell{Server: c.Server, Transport: c.Transport, Group: c.Group, Cert: c.Cert, Signer: c.Signer, Error: err.Error()}
			fmt.Fprintf(m.opts.Log, "%-7s %-4s %-19s %-15s run %d: %v\n", c.Server, c.Transport, c.Group, c.Cert, run+1, err)
			return
		}
		if r.QUIC != nil {
			c.QUIC = r.QUIC
		}
		c.Runs = append(c.Runs, RunSummary{HandshakesPerSec: r.HandshakesPerSec, ServerCPU: r.ServerCPU, ClientCPU: r.ClientCPU, OtherLoad: r.OtherLoad})
		cpu = append(cpu, float64(r.ServerCPU))
		rate = append(rate, r.HandshakesPerSec)
		last = r
		fmt.Fprintf(m.opts.Log, "%-7s %-4s %-19s %-15s run %d: %7.0f/s  server %s  client %s  others %.2f CPUs\n",
			c.Server, c.Transport, c.Group, c.Cert, run+1, r.HandshakesPerSec, fmtDur(r.ServerCPU), fmtDur(r.ClientCPU), r.OtherLoad)
	}
	var client, other []float64
	for _, r := range c.Runs {
		client = append(client, float64(r.ClientCPU))
		other = append(other, r.OtherLoad)
	}
	c.OtherLoad = Median(other)
	c.HandshakesPerSec = Median(rate)
	c.ServerCPU = time.Duration(Median(cpu))
	c.ClientCPU = time.Duration(Median(client))
	c.P50, c.P99 = last.Latency.P50, last.Latency.P99
	c.Spread = Spread(cpu)
	c.Noisy = c.Spread > SpreadLimit
	c.ClientBytes, c.ServerBytes = last.ClientBytes, last.ServerBytes
	c.ServerFlightBytes = last.ServerFlightBytes
	c.ExtraRoundTrips = m.opts.Network.ExtraRoundTrips(c.ServerFlightBytes)
	c.TTFB = m.opts.Network.ModelTTFB(c.ServerFlightBytes, c.ServerCPU)
	if c.QUIC != nil && c.QUIC.Handshakes > 0 {
		// Measured, not modeled: the QUIC handshake's own round trips,
		// and its flight as the shape handshakes of the first run saw it.
		c.ServerFlightBytes = c.QUIC.ServerHandshakeBytes
		c.ExtraRoundTrips = max(0, c.QUIC.RoundTrips-1)
		c.TTFB = time.Duration(1+c.ExtraRoundTrips)*m.opts.Network.RTT + c.ServerCPU
	}
	if c.Signer != "openssl" {
		c.Primitives = m.kem[c.Group].Encaps + m.signCost(alg, c.Signer)
		c.Overhead = c.ServerCPU - c.Primitives
	}
}

// signCost is the measured signature cost for the signer a server uses,
// which for pqedge may differ from the cell's nominal signer.
func (m *matrixRun) signCost(alg CertAlg, signer string) time.Duration {
	for _, a := range m.opts.Certs {
		if a.Alg == alg.Alg && string(a.Signer) == signer {
			return m.sign[a.Name].Sign
		}
	}
	return m.sign[alg.Name].Sign
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// QUICServer is a Launcher that can also serve HTTP/3 on UDP at the same
// address (ServerSpec.QUIC).
type QUICServer interface {
	ServesQUIC() bool
}

// transportsOf is the cell transports the matrix measures against l.
func (m *matrixRun) transportsOf(l Launcher) []string {
	var out []string
	for _, tr := range m.opts.Transports {
		if tr == TransportQUIC {
			if q, ok := l.(QUICServer); !ok || !q.ServesQUIC() {
				fmt.Fprintf(m.opts.Log, "%s: no quic cells (it does not serve HTTP/3)\n", l.Kind())
				continue
			}
		}
		out = append(out, tr)
	}
	return out
}
