package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// `bench overload` asks whether a flood of new TLS handshakes starves the
// connections a front has already established (issue 12, kind 10: their
// p99 request latency under a flood of 5x the front's handshake capacity
// must stay within 2x of its unloaded value). Per front and run:
//
//  1. start a fresh front pinned to CPU 0 before the shared nginx upstream;
//  2. measure its handshake capacity: full handshakes per second, closed
//     loop, nothing else running;
//  3. open Conns keep-alive HTTP/1.1 connections and send requests on them
//     at RequestRate in all, open loop, for Duration: the unloaded phase;
//  4. start a flood of new handshakes at Flood x the capacity (open loop,
//     `pqedge bench handshake` in a child process at the lowest CPU
//     priority, so the keep-alive client on the same core comes first;
//     with FloodReplay it replays ClientHellos, see Options.Replay), let
//     it run FloodLead, and send the same requests for Duration again: the
//     flooded phase;
//  5. read what the flood got (the child's report) and, from pqedge's
//     metrics, what the front did with it: handshakes completed, queued,
//     refused by reason.

// OverloadOptions configure Overload. Zero fields take the documented
// default.
type OverloadOptions struct {
	// Fronts are the fronts measured, in order: pqedge (whose [limits]
	// are its defaults), the plain Go floor and nginx (NginxLauncher:
	// one worker, OpenSSL), which have no limits.
	Fronts []ProxyLauncher
	// Self runs this binary: the flood and the capacity runs are its
	// `bench handshake` in child processes.
	Self []string
	// PeerRoot is the Debian root holding nginx, the upstream.
	PeerRoot string
	Dir      string // where certificates, configs and logs go

	Cert  CertAlg     // default ecdsa-p256
	Group tls.CurveID // of every client; default X25519MLKEM768

	Runs int // per front, each on a fresh front (default 3)
	// Flood is the offered rate of new handshakes as a multiple of the
	// measured capacity (default 5).
	Flood float64
	// Conns keep-alive connections (default 16) carry RequestRate
	// requests per second in all (default 200): a modest load, far from
	// saturating the front, whose latency is what the flood may hurt.
	Conns       int
	RequestRate float64
	// ControlRate is the requests per second (default 50; negative:
	// none) that ControlConns keep-alive connections send in clear text
	// straight to the upstream in both phases, alongside the measured
	// requests: the control. The front is not on their path, so their
	// flooded p99 over their unloaded p99 is what the flood costs the
	// clients, the upstream and the kernel on this machine.
	ControlRate float64
	// Duration is the length of each measured phase (default 5s);
	// FloodLead how long the flood runs before the flooded phase starts,
	// so that queues have filled (default 1s).
	Duration  time.Duration
	FloodLead time.Duration
	// CapacityDuration and CapacityConcurrency shape the closed-loop
	// capacity run (defaults 3s and 16).
	CapacityDuration    time.Duration
	CapacityConcurrency int
	// FloodConns bounds the flood's handshakes in flight (default 4096):
	// with FloodTimeout, enough that a front holding every connection in
	// its queue does not throttle the offered rate (see FloodTimeout).
	FloodConns int
	// FloodClient is how the flood makes its handshakes: FloodReplay (the
	// default) replays ClientHellos and reads the server's flight, so the
	// server does all its cryptography and the client none, as an
	// attacker would; FloodFull makes full handshakes with the lean
	// client, which costs the client's one core as much as the server's
	// and so offers at most 1-2x the capacity.
	FloodClient string
	// FloodSources is how many loopback source addresses the flood comes
	// from (default 256, see SpreadDial): a distributed flood, which
	// pqedge's per-client-address cap does not stop. 1 is one client.
	FloodSources int
	// Timeout bounds every request, connection and handshake (default 5s)
	// but the flood's.
	Timeout time.Duration
	// FloodTimeout is how long a flood attempt waits for the front's
	// flight or handshake (default 250ms). An attacker does not wait: with
	// FloodConns attempts in flight at most, the flood offers at most
	// FloodConns/FloodTimeout attempts per second beyond what the front
	// answers (4,096 / 250 ms = 16,384/s), and a front that queues every
	// connection (the Go floor) would otherwise hold the flood to about
	// its own capacity. An abandoned attempt still costs a front that
	// reads its ClientHello all its cryptography.
	FloodTimeout time.Duration

	// Pin puts each front on CPU 0 and this process, the upstream and the
	// clients on CPU 1.
	Pin bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// OverloadPhase is the keep-alive requests of one phase.
type OverloadPhase struct {
	Requests int64        `json:"requests"` // answered 200 within the phase
	Failed   int64        `json:"failed"`
	Errors   []ErrorCount `json:"errors,omitempty"`
	Rate     float64      `json:"rate"` // answered per second
	// Latency runs from each request's intended start (open loop), so a
	// request held up behind a slow one counts the wait.
	Latency Latency `json:"latency_ns"`
}

// The flood clients of OverloadOptions.FloodClient.
const (
	FloodReplay = "replay"
	FloodFull   = "full"
)

// floodClientNames says in reports what each flood client does.
var floodClientNames = map[string]string{
	FloodReplay: ReplayClient,
	FloodFull:   "full TLS 1.3 handshakes by the lean client: as much cryptography as the server's",
}

// FloodReport is what the flood's client saw. With FloodReplay an attempt
// succeeded when the front's whole flight (ServerHello..Finished) arrived;
// with FloodFull when the handshake completed.
type FloodReport struct {
	Client    string       `json:"client"`       // FloodReplay or FloodFull
	Rate      float64      `json:"offered_rate"` // handshakes per second asked for
	Attempted int          `json:"attempted"`    // started (a free client slot was found)
	Succeeded int          `json:"succeeded"`
	Failed    int          `json:"failed"`
	Errors    []ErrorCount `json:"errors,omitempty"`
	// AttemptRate is what the client managed to start per second: below
	// Rate when its own core could not keep up.
	AttemptRate float64 `json:"attempt_rate"`
	// Reached is AttemptRate over Rate: 1 when the client kept up.
	Reached float64       `json:"reached"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// FrontCounters are pqedge's metrics over the whole flood (after minus
// before); fronts without metrics have none.
type FrontCounters struct {
	Handshakes        float64            `json:"handshakes"`         // pqedge_handshakes_total
	HandshakeFailures float64            `json:"handshake_failures"` // pqedge_handshake_failures_total
	Queued            float64            `json:"queued"`             // pqedge_handshakes_queued_total
	Refused           map[string]float64 `json:"refused"`            // pqedge_connections_refused_total by reason
	// BudgetWaited is the seconds the crypto gate's relay waited for its
	// CPU budget (pqedge_handshakes_cpu_budget_waited_seconds_total;
	// limits.handshake_cpu), zero for a pqedge without one.
	BudgetWaited float64 `json:"budget_waited_s"`
}

// OverloadRun is one run of one front.
type OverloadRun struct {
	// Capacity is full handshakes per second, closed loop; CapacityCores
	// the front's CPU over that run (near 1: its core was the limit).
	Capacity      float64 `json:"capacity"`
	CapacityCores float64 `json:"capacity_cores"`

	Unloaded OverloadPhase `json:"unloaded"`
	Flooded  OverloadPhase `json:"flooded"`
	// Ratio is the flooded phase's p99 over the unloaded phase's.
	Ratio float64 `json:"ratio"`

	// Control is the requests sent straight to the upstream in the same
	// phases (OverloadOptions.ControlRate); nil without a control.
	Control *OverloadControl `json:"control,omitempty"`

	Flood  FloodReport    `json:"flood"`
	Server *FrontCounters `json:"server,omitempty"`
	// FrontCores is the front's CPU over the flooded phase; OtherLoad the
	// CPUs other processes kept busy then (the machine's noise).
	FrontCores float64 `json:"front_cores"`
	OtherLoad  float64 `json:"other_load"`
}

// OverloadControl is the control's requests in one run: the same phases
// as the measured requests, sent straight to the upstream.
type OverloadControl struct {
	Unloaded OverloadPhase `json:"unloaded"`
	Flooded  OverloadPhase `json:"flooded"`
	// Ratio is the flooded phase's p99 over the unloaded phase's.
	Ratio float64 `json:"ratio"`
}

// controlConns is how many connections carry the control's requests.
const controlConns = 4

// OverloadFront is one front over its runs; the numbers are medians.
type OverloadFront struct {
	Front string        `json:"front"`
	Runs  []OverloadRun `json:"runs"`
	// Error is why the front has no numbers.
	Error string `json:"error,omitempty"`

	Capacity    float64       `json:"capacity"`
	UnloadedP99 time.Duration `json:"unloaded_p99_ns"`
	FloodedP99  time.Duration `json:"flooded_p99_ns"`
	Ratio       float64       `json:"ratio"`
	RatioMin    float64       `json:"ratio_min"`
	RatioMax    float64       `json:"ratio_max"`
	// Failed is keep-alive requests that failed in either phase, all runs.
	Failed int64 `json:"failed"`
	// FloodReached is the median of the runs' FloodReport.Reached: the
	// share of the asked flood rate the client attempted.
	FloodReached float64 `json:"flood_reached"`
	// ControlRatio is the median of the runs' OverloadControl.Ratio; 0
	// without a control.
	ControlRatio float64 `json:"control_ratio,omitempty"`
}

// OverloadResult is everything Overload measured.
type OverloadResult struct {
	Date    time.Time  `json:"date"`
	Machine string     `json:"machine"`
	CPUs    int        `json:"cpus"`
	Pinned  bool       `json:"pinned"`
	LoadAvg [2]float64 `json:"loadavg"` // 1-minute, before and after

	Group       string        `json:"group"`
	Cert        string        `json:"cert"`
	Runs        int           `json:"runs"`
	Flood       float64       `json:"flood"`
	Conns       int           `json:"conns"`
	RequestRate float64       `json:"request_rate"`
	ControlRate float64       `json:"control_rate"` // 0: no control
	Duration    time.Duration `json:"duration_ns"`
	FloodLead   time.Duration `json:"flood_lead_ns"`
	Sources     int           `json:"flood_sources"`
	// FloodClient is OverloadOptions.FloodClient; FloodClientAbout says
	// what it does.
	FloodClient      string        `json:"flood_client"`
	FloodClientAbout string        `json:"flood_client_about"`
	FloodTimeout     time.Duration `json:"flood_timeout_ns"`

	Fronts []OverloadFront `json:"fronts"`
	Checks []Check         `json:"checks"`
}

// OverloadTarget is issue 12's bound on the flooded p99 over the unloaded.
const OverloadTarget = 2.0

// Overload measures every front under a handshake flood. A front that
// cannot start, or a run in which no keep-alive request or no flood
// handshake was made, fails that front (its Error); Overload itself fails
// only for setup errors or when ctx ends.
func Overload(ctx context.Context, opts OverloadOptions) (*OverloadResult, error) {
	o := &overloadRun{opts: opts}
	return o.run(ctx)
}

// overloadRun is the state of one Overload call.
type overloadRun struct {
	opts     OverloadOptions
	res      *OverloadResult
	chain    *Chain
	upstream *Upstream
}

func (o *overloadRun) run(ctx context.Context) (*OverloadResult, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := o.makeChain(); err != nil {
		return nil, err
	}
	pinned, err := pinHarness(o.opts.Pin)
	if err != nil {
		return nil, err
	}
	o.res.Pinned = pinned
	u, err := StartNginxUpstream(ctx, o.opts.PeerRoot, 1024, o.opts.Conns+64)
	if err != nil {
		return nil, err
	}
	o.upstream = u
	defer u.Stop()
	fronts := make([]OverloadFront, len(o.opts.Fronts))
	for i, f := range o.opts.Fronts {
		fronts[i].Front = f.Kind()
	}
	// Fronts alternate run by run, so slow drifts of the machine's noise
	// hit them alike.
	for run := range o.opts.Runs {
		for i, f := range o.opts.Fronts {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if fronts[i].Error != "" {
				continue
			}
			r, err := o.measure(ctx, f, run)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				fronts[i].Error = err.Error()
				fmt.Fprintf(o.opts.Log, "overload %-7s run %d: FAILED: %v\n", f.Kind(), run+1, err)
				continue
			}
			fronts[i].Runs = append(fronts[i].Runs, r)
			fmt.Fprintf(o.opts.Log, "overload %-7s run %d: %s\n", f.Kind(), run+1, overloadLine(r))
		}
	}
	for i := range fronts {
		summarizeOverload(&fronts[i])
	}
	o.res.Fronts = fronts
	o.res.LoadAvg[1] = loadAverage()
	o.res.Checks = OverloadChecks(o.res)
	return o.res, nil
}

func (o *overloadRun) defaults() error {
	p := &o.opts
	if len(p.Fronts) == 0 {
		return errors.New("no fronts to measure")
	}
	if len(p.Self) == 0 {
		return errors.New("no pqedge binary to run the flood with")
	}
	if p.PeerRoot == "" {
		return errors.New("no peer root: the upstream (nginx) comes from it")
	}
	var err error
	if p.Dir, err = absWorkDir(p.Dir); err != nil {
		return err
	}
	if p.Cert.Name == "" {
		p.Cert = CertAlgs()[0]
	}
	if p.Group == 0 {
		p.Group = tls.X25519MLKEM768
	}
	p.Runs = max(p.Runs, 1)
	if p.Flood <= 0 {
		p.Flood = 5
	}
	if p.FloodClient == "" {
		p.FloodClient = FloodReplay
	}
	if floodClientNames[p.FloodClient] == "" {
		return fmt.Errorf("flood client %q: want %s or %s", p.FloodClient, FloodReplay, FloodFull)
	}
	if p.RequestRate <= 0 {
		p.RequestRate = 200
	}
	switch {
	case p.ControlRate == 0:
		p.ControlRate = 50
	case p.ControlRate < 0:
		p.ControlRate = 0
	}
	setDefault(&p.Conns, 16)
	setDefault(&p.Duration, 5*time.Second)
	setDefault(&p.FloodLead, time.Second)
	setDefault(&p.CapacityDuration, 3*time.Second)
	setDefault(&p.CapacityConcurrency, 16)
	setDefault(&p.FloodConns, 4096)
	setDefault(&p.FloodSources, 256)
	setDefault(&p.Timeout, 5*time.Second)
	setDefault(&p.FloodTimeout, 250*time.Millisecond)
	if p.Log == nil {
		p.Log = io.Discard
	}
	o.res = &OverloadResult{
		Date: time.Now().UTC(), Machine: cpuModel(), CPUs: runtime.NumCPU(), LoadAvg: [2]float64{loadAverage(), 0},
		Group: pqtls.GroupName(p.Group), Cert: p.Cert.Name, Runs: p.Runs, Flood: p.Flood, Conns: p.Conns,
		RequestRate: p.RequestRate, ControlRate: p.ControlRate, Duration: p.Duration, FloodLead: p.FloodLead, Sources: p.FloodSources,
		FloodClient: p.FloodClient, FloodClientAbout: floodClientNames[p.FloodClient], FloodTimeout: p.FloodTimeout,
	}
	return nil
}

func (o *overloadRun) makeChain() error {
	chains, err := makeChains(o.opts.Dir, []CertAlg{o.opts.Cert})
	if err != nil {
		return err
	}
	o.chain = chains[o.opts.Cert.Alg]
	return nil
}

// summarizeOverload sets a front's medians over its runs.
func summarizeOverload(f *OverloadFront) {
	if f.Error != "" || len(f.Runs) == 0 {
		return
	}
	var capacity, unloaded, flooded, ratios, reached, control []float64
	for _, r := range f.Runs {
		if r.Control != nil {
			control = append(control, r.Control.Ratio)
		}
		capacity = append(capacity, r.Capacity)
		reached = append(reached, r.Flood.Reached)
		unloaded = append(unloaded, float64(r.Unloaded.Latency.P99))
		flooded = append(flooded, float64(r.Flooded.Latency.P99))
		ratios = append(ratios, r.Ratio)
		f.Failed += r.Unloaded.Failed + r.Flooded.Failed
	}
	f.Capacity = Median(capacity)
	f.UnloadedP99 = time.Duration(Median(unloaded))
	f.FloodedP99 = time.Duration(Median(flooded))
	f.Ratio = Median(ratios)
	f.FloodReached = Median(reached)
	f.RatioMin, f.RatioMax = slices.Min(ratios), slices.Max(ratios)
	if len(control) > 0 {
		f.ControlRatio = Median(control)
	}
}

// OverloadChecks judges issue 12's target on every front that has numbers:
// the median ratio at most OverloadTarget, and no keep-alive request
// failed. Only pqedge is held to it; the others are shown for comparison.
func OverloadChecks(r *OverloadResult) []Check {
	var out []Check
	for _, f := range r.Fronts {
		if f.Front != ServerPQEdge {
			continue
		}
		c := Check{Name: fmt.Sprintf("%s: flooded p99 <= %.0fx unloaded at %.0fx capacity, no request failed", f.Front, OverloadTarget, r.Flood)}
		if f.Error != "" || len(f.Runs) == 0 {
			c.Skipped = true
			c.Detail = "no runs"
			out = append(out, c)
			continue
		}
		c.Holds = f.Ratio <= OverloadTarget && f.Failed == 0
		c.Detail = fmt.Sprintf("median %.2fx (runs %.2f-%.2f), %d requests failed; the %s flood client attempted %.0f%% of the asked rate",
			f.Ratio, f.RatioMin, f.RatioMax, f.Failed, r.FloodClient, 100*f.FloodReached)
		if f.ControlRatio > 0 {
			c.Detail += fmt.Sprintf("; requests straight to the upstream (the control): median %.2fx", f.ControlRatio)
		}
		out = append(out, c)
	}
	return out
}
