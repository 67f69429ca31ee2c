package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// measure starts a fresh front for mode, warms it up and measures one run.
// With profile it also saves the Go front's profiles to ProfileDir; the
// caller then drops the numbers (profiling costs CPU).
func (p *proxyRun) measure(ctx context.Context, l ProxyLauncher, mode string, profile bool) (ProxyRun, []ErrorCount, error) {
	dir, err := os.MkdirTemp(p.opts.Dir, l.Kind()+"-"+mode+"-")
	if err != nil {
		return ProxyRun{}, nil, fmt.Errorf("failed to make a work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	spec := ProxySpec{Dir: dir, Chain: p.chain, Groups: []tls.CurveID{p.opts.Group}, MaxConns: p.maxConns()}
	if isMemoryMode(mode) {
		spec.HeldConns = p.opts.IdleConns
	} else {
		spec.ClientConns = p.maxConns()
	}
	if mode == ModeStream {
		spec.StreamUpstream = p.echo.Addr
	} else {
		spec.Upstream = p.upstream.Addr
	}
	f, err := l.StartProxy(ctx, spec)
	if err != nil {
		return ProxyRun{}, nil, fmt.Errorf("failed to start %s: %w", l.Kind(), err)
	}
	defer f.Stop()
	if err := placeFront(f.PID, p.res.Pinned, l.Kind()); err != nil {
		return ProxyRun{}, nil, err
	}
	m := &meter{front: f, dbg: newDebugClient(f.Debug)}
	if mode != ModeStream {
		m.upstream = p.upstream
	}
	var prof *profiler
	if profile && m.dbg != nil {
		prof = &profiler{dbg: m.dbg, base: filepath.Join(p.opts.ProfileDir, l.Kind()+"-"+mode)}
	}
	switch {
	case isMemoryMode(mode):
		return p.measureMemory(ctx, m, mode, prof)
	case mode == ModeStream:
		return p.measureStream(ctx, m, prof)
	case mode == ModeH1 || mode == ModeH2:
		return p.measureH2Load(ctx, m, mode, prof)
	default:
		return p.measureHandshakes(ctx, m, mode, prof)
	}
}

// meter reads the CPU of the front, the upstream, this process and the
// whole machine, and the Go front's allocation counters, at the start and
// the end of a measured run.
type meter struct {
	front    *Front
	upstream *Upstream    // nil when the mode does not use it
	dbg      *debugClient // nil for nginx
	loadPID  int          // h2load, when it generates the load

	t0                               time.Time
	front0, up0, load0, self0, busy0 time.Duration
	accepts0                         int64
	mem0                             goMemStats
}

// sample is what happened between start and stop.
type sample struct {
	elapsed                     time.Duration
	front, upstream, load, self time.Duration // CPU; load is h2load's
	busy                        time.Duration // CPU of the whole machine
	upstreamConns               int64
	mallocs, allocBytes         uint64
	gcs                         uint32
}

// start reads the counters. The debug listener and the upstream's status
// page are read before the CPU times, so their own cost stays outside the
// measurement.
func (m *meter) start(ctx context.Context) error {
	var err error
	if m.upstream != nil {
		if m.accepts0, err = m.upstream.Accepts(ctx); err != nil {
			return err
		}
	}
	if m.dbg != nil {
		if m.mem0, err = m.dbg.memStats(ctx); err != nil {
			return err
		}
	}
	if m.front0, err = TreeCPU(m.front.PID); err != nil {
		return err
	}
	if m.upstream != nil {
		if m.up0, err = TreeCPU(m.upstream.PID); err != nil {
			return err
		}
	}
	if m.loadPID > 0 {
		if m.load0, err = ProcessCPU(m.loadPID); err != nil {
			return err
		}
	}
	m.self0 = SelfCPU()
	m.busy0, _ = MachineBusy()
	m.t0 = time.Now()
	return nil
}

// stop reads the counters again, CPU times first.
func (m *meter) stop(ctx context.Context) (sample, error) {
	s := sample{elapsed: time.Since(m.t0)}
	busy, _ := MachineBusy()
	s.self = SelfCPU() - m.self0
	if m.loadPID > 0 {
		load, err := ProcessCPU(m.loadPID)
		if err != nil {
			return s, fmt.Errorf("h2load exited during the run: %w", err)
		}
		s.load = load - m.load0
	}
	front, err := TreeCPU(m.front.PID)
	if err != nil {
		return s, fmt.Errorf("the front exited during the run: %w", err)
	}
	s.front = front - m.front0
	if busy > 0 {
		s.busy = busy - m.busy0
	}
	if m.upstream != nil {
		up, err := TreeCPU(m.upstream.PID)
		if err != nil {
			return s, fmt.Errorf("the upstream exited during the run: %w", err)
		}
		s.upstream = up - m.up0
		acc, err := m.upstream.Accepts(ctx)
		if err != nil {
			return s, err
		}
		// Minus the connection that read the counter at the start.
		s.upstreamConns = max(0, acc-m.accepts0-1)
	}
	if m.dbg != nil {
		mem, err := m.dbg.memStats(ctx)
		if err != nil {
			return s, err
		}
		s.mallocs, s.allocBytes, s.gcs = mem.Mallocs-m.mem0.Mallocs, mem.TotalAlloc-m.mem0.TotalAlloc, mem.NumGC-m.mem0.NumGC
	}
	return s, nil
}

// fill sets a run's numbers from a sample, for units done.
func (s sample) fill(r *ProxyRun, units float64, front *Front) {
	r.Elapsed, r.Units = s.elapsed, units
	load := s.upstream + s.self + s.load
	if units > 0 {
		r.FrontCPU = time.Duration(float64(s.front) / units)
		r.LoadCPU = time.Duration(float64(load) / units)
	}
	if sec := s.elapsed.Seconds(); sec > 0 {
		r.FrontCores = s.front.Seconds() / sec
		r.LoadCores = load.Seconds() / sec
		if s.busy > 0 {
			r.OtherLoad = max(0, (s.busy-s.front-load).Seconds()/sec)
		}
	}
	r.UpstreamConns = s.upstreamConns
	r.Mallocs, r.AllocBytes, r.GCs = s.mallocs, s.allocBytes, s.gcs
	r.RSS, _ = TreeRSS(front.PID)
}

func (p *proxyRun) groups() []tls.CurveID { return []tls.CurveID{p.opts.Group} }

func (p *proxyRun) measureH2Load(ctx context.Context, m *meter, mode string, prof *profiler) (ProxyRun, []ErrorCount, error) {
	var s sample
	o := H2LoadOptions{
		URL: "https://localhost" + BenchPath, ConnectTo: m.front.HTTPS,
		Clients: p.opts.Connections, Streams: p.opts.Streams, HTTP1: mode == ModeH1,
		Groups: p.groups(), Timeout: p.opts.Timeout, Warmup: p.opts.Warmup, Duration: p.opts.Duration,
		MainStarted: func(pid int) error {
			m.loadPID = pid
			if err := m.start(ctx); err != nil {
				return err
			}
			prof.during(ctx, p.opts.Duration)
			return nil
		},
		MainEnded: func(int) error {
			var err error
			s, err = m.stop(ctx)
			return err
		},
	}
	res, err := p.h2load.Run(ctx, o)
	if perr := prof.wait(); err == nil {
		err = perr
	}
	if err != nil {
		return ProxyRun{}, nil, err
	}
	errs := h2loadErrors(res.Summary)
	var r ProxyRun
	// h2load's counts and log hold the measured phase only.
	s.fill(&r, float64(res.Summary.Succeeded), m.front)
	r.Rate = float64(res.Summary.Succeeded) / s.elapsed.Seconds()
	r.Latency = summarize(res.Latencies)
	return r, errs, nil
}

// h2loadErrors turns h2load's counts into errors by kind. h2load counts
// answers other than 2xx as failed, next to connection errors and
// timeouts; a run without a single success is an error too.
func h2loadErrors(s H2LoadSummary) []ErrorCount {
	var t errorTally
	t.addCount("errored", s.Errored, fmt.Sprintf("h2load: %d requests errored (connection or stream errors)", s.Errored))
	t.addCount("timeout", s.TimedOut, fmt.Sprintf("h2load: %d requests timed out", s.TimedOut))
	rest := s.Failed - s.Errored - s.TimedOut
	for i, n := range s.Status[1:] {
		t.addCount(fmt.Sprintf("status:%dxx", i+3), n, fmt.Sprintf("h2load: %d answers %dxx", n, i+3))
		rest -= n
	}
	t.addCount("failed", rest, fmt.Sprintf("h2load: %d requests failed", s.Failed))
	if s.Succeeded == 0 && s.Failed == 0 {
		t.addCount("none", 1, "h2load: no request completed")
	}
	return t.list()
}

func (p *proxyRun) measureStream(ctx context.Context, m *meter, prof *profiler) (ProxyRun, []ErrorCount, error) {
	nop := func() error { return nil }
	warm, err := runStreamLoad(ctx, m.front.Stream, p.groups(), p.opts.StreamConns, p.opts.Warmup, p.opts.Timeout, nop, nop)
	if err != nil {
		return ProxyRun{}, nil, err
	}
	if errs := warm.errs.list(); len(errs) > 0 {
		return ProxyRun{}, errs, fmt.Errorf("warm-up: %s", errs[0].Example)
	}
	var s sample
	load, err := runStreamLoad(ctx, m.front.Stream, p.groups(), p.opts.StreamConns, p.opts.Duration, p.opts.Timeout,
		func() error {
			if err := m.start(ctx); err != nil {
				return err
			}
			prof.during(ctx, p.opts.Duration)
			return nil
		},
		func() error {
			var err error
			s, err = m.stop(ctx)
			return err
		})
	if perr := prof.wait(); err == nil {
		err = perr
	}
	if err != nil {
		return ProxyRun{}, nil, err
	}
	var r ProxyRun
	mib := float64(load.echoed.Load()) / (1 << 20)
	s.fill(&r, mib, m.front)
	r.Rate = mib / p.opts.Duration.Seconds()
	errs := load.errs.list()
	if mib == 0 && len(errs) == 0 {
		errs = []ErrorCount{{Kind: "none", Count: 1, Example: "no byte came back through the front"}}
	}
	return r, errs, nil
}

func (p *proxyRun) measureHandshakes(ctx context.Context, m *meter, mode string, prof *profiler) (ProxyRun, []ErrorCount, error) {
	hc := newHTTPConnector(m.front.HTTPS, p.groups(), mode == ModeHandshakeH2, p.opts.Timeout)
	if warm := handshakeLoad(ctx, hc, p.opts.HandshakeConcurrency, p.opts.Warmup); len(warm.errs.list()) > 0 {
		errs := warm.errs.list()
		return ProxyRun{}, errs, fmt.Errorf("warm-up: %s", errs[0].Example)
	}
	if err := m.start(ctx); err != nil {
		return ProxyRun{}, nil, err
	}
	prof.during(ctx, p.opts.Duration)
	load := handshakeLoad(ctx, hc, p.opts.HandshakeConcurrency, p.opts.Duration)
	s, err := m.stop(ctx)
	if perr := prof.wait(); err == nil {
		err = perr
	}
	if err != nil {
		return ProxyRun{}, nil, err
	}
	var r ProxyRun
	s.fill(&r, float64(load.completed), m.front)
	r.Rate = float64(load.completed) / s.elapsed.Seconds()
	r.Latency = summarize(load.latencies)
	errs := load.errs.list()
	if load.completed == 0 && len(errs) == 0 {
		errs = []ErrorCount{{Kind: "none", Count: 1, Example: "no connection completed"}}
	}
	return r, errs, nil
}

// profiler saves a Go front's profiles next to base ("DIR/pqedge-h2"):
// base.cpu.pprof and base.allocs.pprof over a load, base.heap.pprof and
// base.goroutine.pprof of held connections. A nil profiler does nothing.
type profiler struct {
	dbg  *debugClient
	base string

	wg  sync.WaitGroup
	mu  sync.Mutex // guards err
	err error
}

// during starts taking CPU and allocation profiles over d (whole seconds,
// at least one) in the background; wait collects them.
func (pr *profiler) during(ctx context.Context, d time.Duration) {
	if pr == nil {
		return
	}
	sec := max(1, int(d/time.Second))
	for _, kind := range []struct{ path, name string }{
		{"/debug/pprof/profile", "cpu"},
		{"/debug/pprof/allocs", "allocs"},
	} {
		pr.wg.Go(func() {
			if err := pr.dbg.saveProfile(ctx, kind.path, sec, pr.base+"."+kind.name+".pprof"); err != nil {
				pr.mu.Lock()
				pr.err = err
				pr.mu.Unlock()
			}
		})
	}
}

func (pr *profiler) wait() error {
	if pr == nil {
		return nil
	}
	pr.wg.Wait()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.err
}

// snapshot saves the heap (in use) and goroutine profiles now.
func (pr *profiler) snapshot(ctx context.Context) error {
	if pr == nil {
		return nil
	}
	for _, kind := range []string{"heap", "goroutine"} {
		if err := pr.dbg.saveProfile(ctx, "/debug/pprof/"+kind, 0, pr.base+"."+kind+".pprof"); err != nil {
			return err
		}
	}
	return nil
}
