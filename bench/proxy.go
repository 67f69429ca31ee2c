package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// Modes of `bench proxy`: what load the fronts are put under.
const (
	ModeH1           = "h1"           // keep-alive HTTP/1.1 requests (h2load)
	ModeH2           = "h2"           // HTTP/2, several streams per connection (h2load)
	ModeStream       = "stream"       // bytes through a TLS stream listener, echoed by the upstream
	ModeHandshake    = "handshake"    // new connection, TLS handshake, one HTTP/1.1 request, close
	ModeHandshakeH2  = "handshake-h2" // the same over HTTP/2
	ModeIdle         = "idle"         // memory of idle TLS connections after one HTTP/1.1 request
	ModeIdleH2       = "idle-h2"      // the same after one HTTP/2 request
	ModePreHandshake = "prehandshake" // memory of TCP connections that sent nothing yet
)

// ProxyModes lists every mode in the order of the tables.
var ProxyModes = []string{ModeH1, ModeH2, ModeStream, ModeHandshake, ModeHandshakeH2, ModeIdle, ModeIdleH2, ModePreHandshake}

// ModeUnit names what a mode counts: the unit of its rate and of its CPU
// (or memory) per unit.
func ModeUnit(mode string) string {
	switch mode {
	case ModeH1, ModeH2:
		return "request"
	case ModeStream:
		return "MiB"
	}
	return "connection"
}

// isMemoryMode reports whether mode measures memory per connection
// instead of CPU per unit.
func isMemoryMode(mode string) bool {
	return mode == ModeIdle || mode == ModeIdleH2 || mode == ModePreHandshake
}

// ParseProxyModes checks a list of mode names.
func ParseProxyModes(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		if !slices.Contains(ProxyModes, n) {
			return nil, fmt.Errorf("unknown mode %q (known: %s)", n, strings.Join(ProxyModes, ", "))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// ProxyOptions configure Proxy. Zero fields take the documented default.
type ProxyOptions struct {
	// Fronts are the proxies measured, in order.
	Fronts []ProxyLauncher
	Modes  []string // default ProxyModes
	// PeerRoot is the Debian root holding nginx (the upstream) and h2load.
	PeerRoot string
	Dir      string // where certificates, configs and logs go

	Cert  CertAlg     // default ecdsa-p256
	Group tls.CurveID // offered alone, with its key share; default X25519MLKEM768

	Runs     int           // repetitions of each cell (default 3), each on a fresh front
	Duration time.Duration // of each measured run (default 2s)
	Warmup   time.Duration // load before each measured run, not counted (default 1s)

	Connections int // HTTP modes: client connections (default 32)
	Streams     int // h2: requests in flight per connection (default 10)
	StreamConns int // stream: TLS connections pumping (default 8)
	// HandshakeConcurrency is the number of connections in flight in
	// the handshake modes (default 8).
	HandshakeConcurrency int
	IdleConns            int // memory modes: connections opened (default 2000)
	BodyBytes            int // size of the upstream's answer (default 1024)
	// Timeout bounds every connection, handshake and request (default 5s).
	Timeout time.Duration

	// Pin puts each front on CPU 0 and this process, the upstream and the
	// load generator on CPU 1.
	Pin bool
	// MaxOtherLoad, when positive, is the most CPUs other processes may
	// keep busy during a load run: a noisier run is measured again, up to
	// three times, on a machine shared with other work.
	MaxOtherLoad float64
	// ProfileDir, when set, gets CPU and allocation profiles (load modes)
	// and heap and goroutine profiles (memory modes) of the Go fronts,
	// taken in one extra run per cell whose numbers are not counted.
	ProfileDir string
	// Log receives one progress line per run; nil discards them.
	Log io.Writer
}

// ProxyRun is one measured run of a cell.
type ProxyRun struct {
	Elapsed time.Duration `json:"elapsed_ns"`
	Units   float64       `json:"units"` // requests, MiB or connections done
	Rate    float64       `json:"rate"`  // units per second

	// FrontCPU is the front's CPU per unit (/proc); FrontCores its CPU over
	// the wall time (1 = its core was saturated).
	FrontCPU   time.Duration `json:"front_cpu_ns"`
	FrontCores float64       `json:"front_cores"`
	// LoadCPU is what the other core spent per unit: load generator,
	// upstream and harness. LoadCores near 1 means the front was not
	// the bottleneck.
	LoadCPU   time.Duration `json:"load_cpu_ns"`
	LoadCores float64       `json:"load_cores"`
	OtherLoad float64       `json:"other_load"` // CPUs busy with other processes

	Latency Latency `json:"latency_ns"` // per request or connection
	RSS     int64   `json:"rss_bytes"`  // the front's, at the end
	// UpstreamConns is how many connections the front opened to the HTTP
	// upstream during the run.
	UpstreamConns int64 `json:"upstream_conns"`

	// Go fronts only (read from the debug listener): heap allocations and
	// collections during the run.
	Mallocs    uint64 `json:"mallocs,omitempty"`
	AllocBytes uint64 `json:"alloc_bytes,omitempty"`
	GCs        uint32 `json:"gcs,omitempty"`

	// Memory modes: connections held and what they added.
	Conns        int   `json:"conns,omitempty"`
	RSSDelta     int64 `json:"rss_delta_bytes,omitempty"`
	HeapDelta    int64 `json:"heap_delta_bytes,omitempty"`  // live heap after a GC (Go)
	StackDelta   int64 `json:"stack_delta_bytes,omitempty"` // goroutine stacks (Go)
	GoroutineAdd int64 `json:"goroutines_added,omitempty"`  // (Go)
}

// ProxyCell is one front x mode: the median over its runs.
type ProxyCell struct {
	Front string `json:"front"`
	Mode  string `json:"mode"`
	Unit  string `json:"unit"`
	// GoRuntime says the Go-only fields were read (pqedge, plain).
	GoRuntime bool       `json:"go_runtime"`
	Runs      []ProxyRun `json:"runs"`
	// Error is why the cell has no numbers; every field below is zero then.
	Error  string       `json:"error,omitempty"`
	Errors []ErrorCount `json:"errors,omitempty"`

	Rate       float64       `json:"rate"`
	FrontCPU   time.Duration `json:"front_cpu_ns"`
	FrontCores float64       `json:"front_cores"`
	LoadCPU    time.Duration `json:"load_cpu_ns"`
	LoadCores  float64       `json:"load_cores"`
	OtherLoad  float64       `json:"other_load"`
	// Spread is (max-min)/median over runs of the cell's main number:
	// FrontCPU, or RSSPerConn for the memory modes.
	Spread float64       `json:"spread"`
	Noisy  bool          `json:"noisy"`
	P50    time.Duration `json:"p50_ns"`
	P90    time.Duration `json:"p90_ns"`
	P99    time.Duration `json:"p99_ns"`
	RSS    int64         `json:"rss_bytes"`
	// UpstreamPer1k is upstream connections opened per 1,000 units.
	UpstreamPer1k float64 `json:"upstream_conns_per_1k"`
	// Go fronts: heap objects and bytes allocated per unit.
	AllocsPerUnit     float64 `json:"allocs_per_unit,omitempty"`
	AllocBytesPerUnit float64 `json:"alloc_bytes_per_unit,omitempty"`

	// Memory modes, per connection (bytes).
	Conns             int     `json:"conns,omitempty"`
	RSSPerConn        float64 `json:"rss_per_conn,omitempty"`
	HeapPerConn       float64 `json:"heap_per_conn,omitempty"`
	StackPerConn      float64 `json:"stack_per_conn,omitempty"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn,omitempty"`
}

// ProxyResult is everything Proxy measured.
type ProxyResult struct {
	Date    time.Time `json:"date"`
	Machine string    `json:"machine"`
	CPUs    int       `json:"cpus"`
	Pinned  bool      `json:"pinned"`
	// LoadAvg is /proc/loadavg's 1-minute average before and after.
	LoadAvg [2]float64 `json:"loadavg"`

	Group       string        `json:"group"`
	Cert        string        `json:"cert"`
	Runs        int           `json:"runs"`
	Duration    time.Duration `json:"duration_ns"`
	Warmup      time.Duration `json:"warmup_ns"`
	Connections int           `json:"connections"`
	Streams     int           `json:"streams"`
	StreamConns int           `json:"stream_conns"`
	HSConc      int           `json:"handshake_concurrency"`
	IdleConns   int           `json:"idle_conns"`
	BodyBytes   int           `json:"body_bytes"`

	Cells  []ProxyCell `json:"cells"`
	Checks []Check     `json:"checks"`
}

// Proxy measures every front in every mode. A front that cannot start or
// a run with a failure fails its cell (recorded in Error with the errors
// by kind); Proxy itself fails only for setup errors (no upstream, no
// certificate) or when ctx ends.
func Proxy(ctx context.Context, opts ProxyOptions) (*ProxyResult, error) {
	p := &proxyRun{opts: opts}
	return p.run(ctx)
}

// proxyRun is the state of one Proxy call.
type proxyRun struct {
	opts     ProxyOptions
	res      *ProxyResult
	chain    *Chain
	upstream *Upstream
	echo     *EchoUpstream
	h2load   H2Load
}

func (p *proxyRun) run(ctx context.Context) (*ProxyResult, error) {
	if err := p.defaults(); err != nil {
		return nil, err
	}
	if err := p.makeChain(); err != nil {
		return nil, err
	}
	// The upstream and h2load inherit CPU 1.
	pinned, err := pinHarness(p.opts.Pin)
	if err != nil {
		return nil, err
	}
	p.res.Pinned = pinned
	if err := p.startUpstreams(ctx); err != nil {
		return nil, err
	}
	defer p.stopUpstreams()
	for _, mode := range p.opts.Modes {
		if err := p.runMode(ctx, mode); err != nil {
			return nil, err
		}
	}
	p.res.LoadAvg[1] = loadAverage()
	p.res.Checks = ProxyChecks(p.res)
	return p.res, nil
}

func (p *proxyRun) defaults() error {
	o := &p.opts
	if len(o.Fronts) == 0 {
		return errors.New("no fronts to measure")
	}
	if o.PeerRoot == "" {
		return errors.New("no peer root: the upstream (nginx) and h2load come from it")
	}
	var err error
	if o.Dir, err = absWorkDir(o.Dir); err != nil {
		return err
	}
	if len(o.Modes) == 0 {
		o.Modes = ProxyModes
	}
	if o.Cert.Name == "" {
		o.Cert = CertAlgs()[0]
	}
	if o.Group == 0 {
		o.Group = tls.X25519MLKEM768
	}
	o.Runs = max(o.Runs, 1)
	setDefault(&o.Duration, 2*time.Second)
	setDefault(&o.Warmup, time.Second)
	setDefault(&o.Timeout, 5*time.Second)
	setDefault(&o.Connections, 32)
	setDefault(&o.Streams, 10)
	setDefault(&o.StreamConns, 8)
	setDefault(&o.HandshakeConcurrency, 8)
	setDefault(&o.IdleConns, 2000)
	setDefault(&o.BodyBytes, 1024)
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			return fmt.Errorf("failed to make %s: %w", o.ProfileDir, err)
		}
	}
	p.h2load = H2Load{Root: o.PeerRoot}
	p.res = &ProxyResult{
		Date: time.Now().UTC(), Machine: cpuModel(), CPUs: runtime.NumCPU(), LoadAvg: [2]float64{loadAverage(), 0},
		Group: pqtls.GroupName(o.Group), Cert: o.Cert.Name, Runs: o.Runs, Duration: o.Duration, Warmup: o.Warmup,
		Connections: o.Connections, Streams: o.Streams, StreamConns: o.StreamConns, HSConc: o.HandshakeConcurrency,
		IdleConns: o.IdleConns, BodyBytes: o.BodyBytes,
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func (p *proxyRun) makeChain() error {
	chains, err := makeChains(p.opts.Dir, []CertAlg{p.opts.Cert})
	if err != nil {
		return err
	}
	p.chain = chains[p.opts.Cert.Alg]
	return nil
}

func (p *proxyRun) startUpstreams(ctx context.Context) error {
	if slices.Contains(p.opts.Modes, ModeH1) || slices.Contains(p.opts.Modes, ModeH2) {
		if err := H2LoadPresent(p.opts.PeerRoot); err != nil {
			return err
		}
	}
	if slices.ContainsFunc(p.opts.Modes, func(m string) bool { return m != ModeStream }) {
		u, err := StartNginxUpstream(ctx, p.opts.PeerRoot, p.opts.BodyBytes, p.maxConns())
		if err != nil {
			return err
		}
		p.upstream = u
	}
	if slices.Contains(p.opts.Modes, ModeStream) {
		e, err := StartEchoUpstream()
		if err != nil {
			return err
		}
		p.echo = e
	}
	return nil
}

func (p *proxyRun) stopUpstreams() {
	if p.upstream != nil {
		p.upstream.Stop()
	}
	if p.echo != nil {
		p.echo.Close()
	}
}

// maxConns is the most client connections a front holds at once.
func (p *proxyRun) maxConns() int {
	o := p.opts
	return max(o.Connections, o.StreamConns, o.HandshakeConcurrency, o.IdleConns, o.Connections*o.Streams)
}

// runMode measures every front in one mode, alternating fronts run by
// run so that slow drifts of the machine's noise hit them alike.
func (p *proxyRun) runMode(ctx context.Context, mode string) error {
	cells := make([]ProxyCell, len(p.opts.Fronts))
	for i, f := range p.opts.Fronts {
		cells[i] = ProxyCell{Front: f.Kind(), Mode: mode, Unit: ModeUnit(mode), GoRuntime: f.Kind() != ServerNginx}
	}
	for run := range p.opts.Runs {
		for i, f := range p.opts.Fronts {
			if err := ctx.Err(); err != nil {
				return err
			}
			c := &cells[i]
			if c.Error != "" {
				continue
			}
			r, errs, err := p.measureQuiet(ctx, f, mode, run)
			if err == nil && len(errs) > 0 {
				err = fmt.Errorf("%d failures: %s", countErrors(errs), errs[0].Example)
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				*c = ProxyCell{Front: c.Front, Mode: c.Mode, Unit: c.Unit, GoRuntime: c.GoRuntime, Error: err.Error(), Errors: errs}
				fmt.Fprintf(p.opts.Log, "%-12s %-7s run %d: FAILED: %v\n", mode, c.Front, run+1, err)
				continue
			}
			c.Runs = append(c.Runs, r)
			fmt.Fprintf(p.opts.Log, "%-12s %-7s run %d: %s\n", mode, c.Front, run+1, runLine(mode, r))
		}
	}
	for i, f := range p.opts.Fronts {
		summarizeCell(&cells[i])
		if p.opts.ProfileDir != "" && cells[i].GoRuntime && cells[i].Error == "" {
			p.profile(ctx, f, mode)
		}
	}
	p.res.Cells = append(p.res.Cells, cells...)
	return nil
}

// noisyRetries is how many times a run is measured again when other
// processes kept more than MaxOtherLoad CPUs busy.
const noisyRetries = 3

// measureQuiet measures one run and, with MaxOtherLoad set, measures it
// again while other processes were too busy during it, up to noisyRetries
// times; the last run counts whatever its noise (its others column says
// it). Memory modes read no CPU and are measured once.
func (p *proxyRun) measureQuiet(ctx context.Context, f ProxyLauncher, mode string, run int) (ProxyRun, []ErrorCount, error) {
	for try := 0; ; try++ {
		r, errs, err := p.measure(ctx, f, mode, false)
		if err != nil || len(errs) > 0 || p.opts.MaxOtherLoad <= 0 || isMemoryMode(mode) ||
			r.OtherLoad <= p.opts.MaxOtherLoad || try == noisyRetries {
			return r, errs, err
		}
		fmt.Fprintf(p.opts.Log, "%-12s %-7s run %d: noisy (others %.2f CPUs > %.2f), measuring again\n", mode, f.Kind(), run+1, r.OtherLoad, p.opts.MaxOtherLoad)
	}
}

// profile measures one more run of a Go front with its profiles saved,
// and appends the run's numbers to ProfileDir/profiles.txt: what a profile
// holds is divided by the units done to get a cost per request, MiB or
// connection. A failure is logged; it fails nothing.
func (p *proxyRun) profile(ctx context.Context, f ProxyLauncher, mode string) {
	r, errs, err := p.measure(ctx, f, mode, true)
	if err == nil && len(errs) > 0 {
		err = fmt.Errorf("%d failures: %s", countErrors(errs), errs[0].Example)
	}
	if err != nil {
		fmt.Fprintf(p.opts.Log, "%-12s %-7s profile: %v\n", mode, f.Kind(), err)
		return
	}
	line := fmt.Sprintf("%s-%s: %.0f %ss (%s)\n", f.Kind(), mode, r.Units, ModeUnit(mode), runLine(mode, r))
	fmt.Fprintf(p.opts.Log, "%-12s %-7s profile: %s", mode, f.Kind(), line)
	file := filepath.Join(p.opts.ProfileDir, "profiles.txt")
	out, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		_, err = io.WriteString(out, line)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(p.opts.Log, "failed to write %s: %v\n", file, err)
	}
}

func countErrors(errs []ErrorCount) int {
	n := 0
	for _, e := range errs {
		n += e.Count
	}
	return n
}

// runLine is a run's progress line.
func runLine(mode string, r ProxyRun) string {
	if isMemoryMode(mode) {
		return fmt.Sprintf("%d conns: %s/conn RSS (%s in all), RSS %s", r.Conns,
			fmtKiB(float64(r.RSSDelta)/float64(max(1, r.Conns))), fmtMiB(r.RSSDelta), fmtMiB(r.RSS))
	}
	lat := ""
	if r.Latency.P50 > 0 {
		lat = fmt.Sprintf("  p50 %s p99 %s", fmtDur(r.Latency.P50), fmtDur(r.Latency.P99))
	}
	return fmt.Sprintf("%9.1f %s/s  front %s/%s (%.2f cores)  load %s (%.2f cores)%s  RSS %s  others %.2f CPUs",
		r.Rate, ModeUnit(mode), fmtDur(r.FrontCPU), ModeUnit(mode), r.FrontCores, fmtDur(r.LoadCPU), r.LoadCores,
		lat, fmtMiB(r.RSS), r.OtherLoad)
}

// loadAverage is the 1-minute load average, 0 when unreadable.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var v float64
	fmt.Sscanf(string(data), "%f", &v)
	return v
}
