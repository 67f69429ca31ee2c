package bench

import (
	"context"
	"fmt"
	"time"
)

// Memory per connection: the front's RSS before and after opening
// IdleConns connections, divided by their number.

// memState is a front's memory at one moment.
type memState struct {
	rss, fds   int64
	heap       int64 // Go: live heap after a collection
	stack      int64 // Go: goroutine stacks
	goroutines int64 // Go
}

// settleLimit bounds the wait for a front's memory to stop moving; the
// pre-handshake mode must finish well within the fronts' handshake
// timeouts (10s for the Go fronts).
const settleLimit = 3 * time.Second

func (p *proxyRun) measureMemory(ctx context.Context, m *meter, mode string, prof *profiler) (ProxyRun, []ErrorCount, error) {
	hc := newHTTPConnector(m.front.HTTPS, p.groups(), mode == ModeIdleH2, p.opts.Timeout)
	// Warm up: a few connections with a request each, closed again, so
	// that the upstream pool, TLS state and lazily made tables exist
	// before the baseline.
	warm := openIdle(ctx, hc, min(p.opts.IdleConns, 64))
	warm.Close()
	if errs := warm.errs.list(); len(errs) > 0 {
		return ProxyRun{}, errs, fmt.Errorf("warm-up: %s", errs[0].Example)
	}
	before, err := p.settle(ctx, m, 0)
	if err != nil {
		return ProxyRun{}, nil, err
	}
	var held *idleConns
	if mode == ModePreHandshake {
		held = openTCP(ctx, m.front.HTTPS, p.opts.IdleConns, p.opts.Timeout)
	} else {
		held = openIdle(ctx, hc, p.opts.IdleConns)
	}
	defer held.Close()
	if errs := held.errs.list(); len(errs) > 0 {
		return ProxyRun{}, errs, nil
	}
	n := len(held.closers)
	after, err := p.settle(ctx, m, before.fds+int64(n))
	if err != nil {
		return ProxyRun{}, nil, err
	}
	if err := prof.snapshot(ctx); err != nil {
		return ProxyRun{}, nil, err
	}
	r := ProxyRun{
		Conns: n, Units: float64(n), RSS: after.rss,
		RSSDelta: after.rss - before.rss, HeapDelta: after.heap - before.heap,
		StackDelta: after.stack - before.stack, GoroutineAdd: after.goroutines - before.goroutines,
	}
	return r, nil, nil
}

// settle waits until the front holds at least fds open files (it has
// accepted the connections) and its RSS has stopped moving (three reads
// 100ms apart within 64 KiB), for at most settleLimit, then reads its
// memory. For a Go front it then runs a collection and reads the live
// heap, stacks and goroutines; the RSS is read first, as the collection
// does not return memory to the system at once.
func (p *proxyRun) settle(ctx context.Context, m *meter, fds int64) (memState, error) {
	var st memState
	pid := m.front.PID
	deadline := time.Now().Add(settleLimit)
	var last []int64
	for {
		rss, err := TreeRSS(pid)
		if err != nil {
			return st, fmt.Errorf("the front exited: %w", err)
		}
		open, err := TreeOpenFiles(pid)
		if err != nil {
			return st, fmt.Errorf("the front exited: %w", err)
		}
		st.rss, st.fds = rss, open
		if open >= fds {
			last = append(last, rss)
		}
		if n := len(last); n >= 3 && spreadBytes(last[n-3:]) <= 64<<10 {
			break
		}
		if time.Now().After(deadline) {
			if open < fds {
				return st, fmt.Errorf("the front holds %d open files after %s, want at least %d: it did not accept every connection", open, settleLimit, fds)
			}
			break // RSS still moving: take the last reading
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if m.dbg == nil {
		return st, nil
	}
	if err := m.dbg.collect(ctx); err != nil {
		return st, err
	}
	mem, err := m.dbg.memStats(ctx)
	if err != nil {
		return st, err
	}
	st.heap, st.stack = int64(mem.HeapAlloc), int64(mem.StackInuse)
	if st.goroutines, err = m.dbg.goroutines(ctx); err != nil {
		return st, err
	}
	return st, nil
}

func spreadBytes(v []int64) int64 {
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	return hi - lo
}
