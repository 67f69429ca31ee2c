package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pqedge/pqedge/internal/freeport"
	"github.com/pqedge/pqedge/pqtls"
)

// measure is one run of one front: the steps of the file's comment in
// overload.go.
func (o *overloadRun) measure(ctx context.Context, l ProxyLauncher, run int) (OverloadRun, error) {
	var r OverloadRun
	dir, err := os.MkdirTemp(o.opts.Dir, l.Kind()+"-overload-")
	if err != nil {
		return r, fmt.Errorf("failed to make a work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	spec := ProxySpec{Dir: dir, Chain: o.chain, Groups: []tls.CurveID{o.opts.Group}, Upstream: o.upstream.Addr,
		MaxConns: o.opts.Conns + o.opts.FloodConns}
	if l.Kind() == ServerPQEdge {
		if spec.AdminAddr, err = freeport.Addr(); err != nil {
			return r, err
		}
	}
	f, err := l.StartProxy(ctx, spec)
	if err != nil {
		return r, fmt.Errorf("failed to start %s: %w", l.Kind(), err)
	}
	defer f.Stop()
	if err := placeFront(f.PID, o.res.Pinned, l.Kind()); err != nil {
		return r, err
	}
	step := func(what string) { fmt.Fprintf(o.opts.Log, "overload %-7s run %d: %s\n", l.Kind(), run+1, what) }

	step("capacity")
	capRep, err := o.handshakes(ctx, f, 0, o.opts.CapacityConcurrency, o.opts.CapacityDuration, o.opts.Timeout, false)
	if err != nil {
		return r, fmt.Errorf("capacity: %w", err)
	}
	r.Capacity = capRep.HandshakesPerSec
	r.CapacityCores = capRep.ServerCPU.Seconds() * capRep.HandshakesPerSec
	if r.Capacity <= 0 {
		return r, errors.New("capacity: no handshake succeeded")
	}

	ka, err := openKeepAlive(ctx, f.HTTPS, frontTLS(o.opts.Group), o.opts.Conns, o.opts.Timeout)
	if err != nil {
		return r, fmt.Errorf("failed to open the keep-alive connections: %w", err)
	}
	defer ka.Close()
	var ctl *keepAlive
	if o.opts.ControlRate > 0 {
		if ctl, err = openKeepAlive(ctx, o.upstream.Addr, nil, controlConns, o.opts.Timeout); err != nil {
			return r, fmt.Errorf("failed to open the control's connections to the upstream: %w", err)
		}
		defer ctl.Close()
		r.Control = &OverloadControl{}
	}
	// A short warm-up, not counted: the front's upstream connections and
	// both processes' buffers settle.
	o.phase(ctx, ka, ctl, min(time.Second, o.opts.Duration))
	step(fmt.Sprintf("unloaded, %.0f requests/s on %d connections", o.opts.RequestRate, o.opts.Conns))
	var unloadedCtl OverloadPhase
	r.Unloaded, unloadedCtl = o.phase(ctx, ka, ctl, o.opts.Duration)

	rate := o.opts.Flood * r.Capacity
	step(fmt.Sprintf("flood of %.0f handshakes/s (%.1fx %.0f/s), %s client", rate, o.opts.Flood, r.Capacity, o.opts.FloodClient))
	var before map[string]float64
	if spec.AdminAddr != "" {
		if before, err = scrapeCounters(ctx, spec.AdminAddr); err != nil {
			return r, err
		}
	}
	flood := o.startFlood(ctx, f, rate, o.opts.FloodLead+o.opts.Duration)
	select {
	case <-time.After(o.opts.FloodLead):
	case <-ctx.Done():
		<-flood
		return r, ctx.Err()
	}
	cpu0, err := TreeCPU(f.PID)
	if err != nil {
		return r, fmt.Errorf("the front exited during the flood: %w", err)
	}
	busy0, _ := MachineBusy()
	self0 := SelfCPU()
	t0 := time.Now()
	var floodedCtl OverloadPhase
	r.Flooded, floodedCtl = o.phase(ctx, ka, ctl, o.opts.Duration)
	elapsed := time.Since(t0)
	cpu1, err := TreeCPU(f.PID)
	if err != nil {
		return r, fmt.Errorf("the front exited during the flood: %w", err)
	}
	busy1, _ := MachineBusy()
	r.FrontCores = (cpu1 - cpu0).Seconds() / elapsed.Seconds()
	if busy1 > 0 {
		// The flood's own CPU is other load here: it is not the front's.
		r.OtherLoad = max(0, (busy1-busy0-(cpu1-cpu0)-(SelfCPU()-self0)).Seconds()/elapsed.Seconds())
	}
	fr := <-flood
	if fr.err != nil {
		return r, fmt.Errorf("flood: %w", fr.err)
	}
	r.Flood = fr.report
	r.Flood.Rate = rate
	r.Flood.Reached = r.Flood.AttemptRate / rate
	if spec.AdminAddr != "" {
		after, err := scrapeCounters(ctx, spec.AdminAddr)
		if err != nil {
			return r, err
		}
		r.Server = frontCounters(before, after)
	}
	if r.Unloaded.Requests == 0 || r.Flooded.Requests == 0 {
		return r, fmt.Errorf("no keep-alive request answered in a phase (unloaded %d, flooded %d): %s",
			r.Unloaded.Requests, r.Flooded.Requests, firstError(r.Unloaded.Errors, r.Flooded.Errors))
	}
	if r.Flood.Attempted == 0 {
		return r, errors.New("the flood made no handshake attempt")
	}
	if r.Unloaded.Latency.P99 > 0 {
		r.Ratio = float64(r.Flooded.Latency.P99) / float64(r.Unloaded.Latency.P99)
	}
	if c := r.Control; c != nil {
		c.Unloaded, c.Flooded = unloadedCtl, floodedCtl
		if c.Unloaded.Latency.P99 > 0 {
			c.Ratio = float64(c.Flooded.Latency.P99) / float64(c.Unloaded.Latency.P99)
		}
	}
	return r, nil
}

// phase sends the measured requests (ka) and the control's (ctl, if any)
// for d at once, and returns what each got.
func (o *overloadRun) phase(ctx context.Context, ka, ctl *keepAlive, d time.Duration) (measured, control OverloadPhase) {
	if ctl == nil {
		return ka.phase(ctx, o.opts.RequestRate, d), control
	}
	var wg sync.WaitGroup
	wg.Go(func() { control = ctl.phase(ctx, o.opts.ControlRate, d) })
	measured = ka.phase(ctx, o.opts.RequestRate, d)
	wg.Wait()
	return measured, control
}

func firstError(lists ...[]ErrorCount) string {
	for _, l := range lists {
		if len(l) > 0 {
			return l[0].Example
		}
	}
	return "no error recorded"
}

// handshakes runs `pqedge bench handshake` against the front in a child
// process: closed loop with concurrency workers (rate 0) or open loop at
// rate, for d, with the front's CPU read (-server-pid). idle marks the
// flood: its child runs under floodPriority, below the keep-alive client
// and the upstream on the clients' core.
func (o *overloadRun) handshakes(ctx context.Context, f *Front, rate float64, concurrency int, d, timeout time.Duration, idle bool) (*Report, error) {
	args := append(append([]string{}, o.opts.Self[1:]...), "bench", "handshake", "-json",
		"-target", f.HTTPS, "-groups", pqtls.GroupName(o.opts.Group),
		"-concurrency", strconv.Itoa(concurrency), "-duration", d.String(),
		"-timeout", timeout.String(), "-server-pid", strconv.Itoa(f.PID))
	if rate > 0 {
		args = append(args, "-rate", strconv.FormatFloat(rate, 'f', 1, 64))
	}
	name := o.opts.Self[0]
	if idle {
		args = append(args, "-sources", strconv.Itoa(o.opts.FloodSources))
		if o.opts.FloodClient == FloodReplay {
			args = append(args, "-replay")
		}
		if prefix := floodPriority(); len(prefix) > 0 {
			args = append(append(prefix[1:], name), args...)
			name = prefix[0]
		}
	}
	// The child's handshakes end within Timeout of d.
	ctx, cancel := context.WithTimeout(ctx, d+max(timeout, o.opts.Timeout)+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout bytes.Buffer
	stderr := &limitedBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	runErr := cmd.Run()
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		// Exit 1 with a report is "no handshake succeeded": the report
		// says why. Without one, the command itself failed.
		if runErr == nil {
			runErr = err
		}
		return nil, fmt.Errorf("bench handshake: %w: %s", runErr, strings.TrimSpace(stderr.String()))
	}
	return &rep, nil
}

// floodResult is what startFlood's channel delivers once the flood ended.
type floodResult struct {
	report FloodReport
	err    error
}

// startFlood starts the flood of new handshakes for d in the background.
func (o *overloadRun) startFlood(ctx context.Context, f *Front, rate float64, d time.Duration) <-chan floodResult {
	ch := make(chan floodResult, 1)
	go func() {
		rep, err := o.handshakes(ctx, f, rate, o.opts.FloodConns, d, o.opts.FloodTimeout, true)
		if err != nil {
			ch <- floodResult{err: err}
			return
		}
		fr := FloodReport{Client: o.opts.FloodClient, Attempted: rep.Attempts, Succeeded: rep.Succeeded, Failed: rep.Failed, Errors: rep.Errors, Elapsed: rep.Elapsed}
		if rep.Elapsed > 0 {
			fr.AttemptRate = float64(rep.Attempts) / rep.Elapsed.Seconds()
		}
		ch <- floodResult{report: fr}
	}()
	return ch
}

// scrapeTimeout bounds one read of pqedge's /metrics.
const scrapeTimeout = 5 * time.Second

// maxMetricsBytes caps what a scrape reads.
const maxMetricsBytes = 16 << 20

// The counters frontCounters reads, summed over their labels except
// pqedge_connections_refused_total, which is kept by reason.
const (
	metricHandshakes = "pqedge_handshakes_total"
	metricHSFailures = "pqedge_handshake_failures_total"
	metricQueued     = "pqedge_handshakes_queued_total"
	metricRefused    = "pqedge_connections_refused_total"
	// metricBudgetWaited is read when present: older builds lack it.
	metricBudgetWaited = "pqedge_handshakes_cpu_budget_waited_seconds_total"
)

// scrapeCounters reads pqedge's /metrics at addr and returns the counters
// frontCounters needs, keyed "name" or "name{reason}".
func scrapeCounters(ctx context.Context, addr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("failed to read pqedge's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("failed to read pqedge's metrics: status %d", resp.StatusCode)
	}
	return parseCounters(io.LimitReader(resp.Body, maxMetricsBytes))
}

// parseCounters parses the Prometheus text format.
func parseCounters(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("failed to parse pqedge's metrics: %w", err)
	}
	out := map[string]float64{}
	for _, name := range []string{metricHandshakes, metricHSFailures, metricQueued, metricRefused, metricBudgetWaited} {
		mf := families[name]
		if mf == nil && name == metricBudgetWaited {
			continue
		}
		if mf == nil {
			return nil, fmt.Errorf("pqedge's metrics lack %s", name)
		}
		for _, m := range mf.GetMetric() {
			v := counterValue(m)
			out[name] += v
			if name == metricRefused {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "reason" {
						out[name+"{"+lp.GetValue()+"}"] += v
					}
				}
			}
		}
	}
	return out, nil
}

func counterValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetUntyped().GetValue()
}

// frontCounters is after minus before.
func frontCounters(before, after map[string]float64) *FrontCounters {
	c := &FrontCounters{
		Handshakes:        after[metricHandshakes] - before[metricHandshakes],
		HandshakeFailures: after[metricHSFailures] - before[metricHSFailures],
		Queued:            after[metricQueued] - before[metricQueued],
		Refused:           map[string]float64{},
		BudgetWaited:      after[metricBudgetWaited] - before[metricBudgetWaited],
	}
	prefix := metricRefused + "{"
	for k, v := range after {
		if reason, ok := strings.CutPrefix(k, prefix); ok {
			c.Refused[strings.TrimSuffix(reason, "}")] = v - before[k]
		}
	}
	return c
}

// RefusedTotal is every connection the limits refused.
func (c *FrontCounters) RefusedTotal() float64 {
	var n float64
	for _, v := range c.Refused {
		n += v
	}
	return n
}
