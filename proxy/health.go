package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Defaults applied to zero fields of HealthOptions.
const (
	DefaultHealthInterval     = 10 * time.Second
	DefaultHealthTimeout      = 2 * time.Second
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
)

// HealthOptions configure the active checks of a pool. Zero fields take the
// documented default.
type HealthOptions struct {
	// Interval between two checks of one upstream. A negative Interval
	// disables active checks; probes after data-path errors still run, and
	// repeat every PoolOptions.EjectFor while the upstream is unhealthy.
	// Default DefaultHealthInterval.
	Interval time.Duration
	// Timeout bounds one check (connect, request and response), so a
	// hung upstream fails its check instead of stalling the checker.
	// Default DefaultHealthTimeout.
	Timeout time.Duration
	// Path, if set, makes the check an HTTP/1.1 GET of this path (e.g.
	// "/healthz") that must answer 2xx or 3xx. Empty means a plain connect,
	// which is what stream pools use.
	Path string
	// Host is the Host header of HTTP checks. Default: the upstream address.
	Host string
	// HealthyThreshold consecutive passing checks make an unhealthy upstream
	// healthy again. Default DefaultHealthyThreshold.
	HealthyThreshold int
	// UnhealthyThreshold consecutive failing checks make a healthy upstream
	// unhealthy. Default DefaultUnhealthyThreshold.
	UnhealthyThreshold int
}

func (h *HealthOptions) setDefaults() error {
	if h.Interval == 0 {
		h.Interval = DefaultHealthInterval
	}
	if h.Timeout <= 0 {
		h.Timeout = DefaultHealthTimeout
	}
	if h.HealthyThreshold <= 0 {
		h.HealthyThreshold = DefaultHealthyThreshold
	}
	if h.UnhealthyThreshold <= 0 {
		h.UnhealthyThreshold = DefaultUnhealthyThreshold
	}
	if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
		return fmt.Errorf("health check path %q must start with /", h.Path)
	}
	return nil
}

// checker runs the active checks of one upstream until the pool closes. The
// first check runs at once so a dead upstream is found before the first
// interval passes.
func (p *Pool) checker(u *upstream) {
	defer p.wg.Done()
	t := time.NewTicker(p.opts.Health.Interval)
	defer t.Stop()
	for {
		p.recordCheck(u, p.check(u))
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startProbeLocked runs one out-of-band check of u unless one is in flight.
// Called on the data path after an error; it never blocks. p.mu must be
// held and the pool open: Close cancels under p.mu, so this wg.Add cannot
// race its wg.Wait.
//
// With active checks disabled, no traffic reaches an upstream the probe
// found unhealthy, so nothing else would ever look at it again: the probe
// then repeats every EjectFor until the upstream is healthy.
func (p *Pool) startProbeLocked(u *upstream) {
	if !u.probing.CompareAndSwap(false, true) {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer u.probing.Store(false)
		for {
			p.recordCheck(u, p.check(u))
			if p.opts.Health.Interval > 0 || p.isHealthy(u) {
				return
			}
			t := time.NewTimer(p.opts.EjectFor)
			select {
			case <-p.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
}

func (p *Pool) isHealthy(u *upstream) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return u.healthy
}

// recordCheck applies one check result to the thresholds.
func (p *Pool) recordCheck(u *upstream, err error) {
	if p.ctx.Err() != nil {
		return // the pool closed mid-check; the result means nothing
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		u.failStreak = 0
		u.okStreak++
		if !u.healthy && u.okStreak >= p.opts.Health.HealthyThreshold {
			u.healthy = true
		}
	} else {
		p.log.Debug("health check failed", "upstream", u.addr, "err", err)
		u.okStreak = 0
		u.failStreak++
		if u.healthy && u.failStreak >= p.opts.Health.UnhealthyThreshold {
			u.healthy = false
		}
	}
	p.updateUsableLocked(u)
}

// check runs one health check of u.
func (p *Pool) check(u *upstream) error {
	h := p.opts.Health
	// The timeout covers connect, request and response: a check must end
	// even if the upstream accepts and then says nothing.
	ctx, cancel := context.WithTimeout(p.ctx, h.Timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, u.network, u.dialTo)
	if err != nil {
		return err
	}
	defer c.Close()
	if h.Path == "" {
		return nil
	}
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	host := h.Host
	if host == "" {
		host = u.addr
		if u.network == "unix" {
			host = "localhost"
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+h.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "pqedge-health-check")
	req.Close = true // one check, one connection
	if err := req.Write(c); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return err
	}
	// Read a little of the body so the upstream does not see a reset, but
	// never wait on a large or endless one.
	_, _ = io.CopyN(io.Discard, resp.Body, 4096)
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("health check %s: status %d", h.Path, resp.StatusCode)
	}
	return nil
}
