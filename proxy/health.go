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

// Defaults applied to zero fields of HealthOptions. A zero Interval means
// no active checks (the product's default too: see internal/config).
const (
	DefaultHealthTimeout      = 2 * time.Second
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
)

// HealthOptions configure the active checks of a pool. Zero fields take the
// documented default.
type HealthOptions struct {
	// Interval between two checks of one upstream. Zero or negative: no
	// active checks; probes after data-path errors still run, and repeat
	// every PoolOptions.EjectFor while the upstream is unhealthy.
	Interval time.Duration
	// Timeout bounds one check (connect, request and response), so a
	// hung upstream fails its check instead of stalling the checker.
	// Default DefaultHealthTimeout.
	Timeout time.Duration
	// Path, if set, makes the check an HTTP/1.1 GET of this path (e.g.
	// "/healthz") that must answer 2xx or 3xx. Empty means a plain connect,
	// which is what stream pools use.
	Path string
	// Host is the Host header of HTTP checks. Default: the upstream address
	// (for an https:// upstream, its TLS server name).
	Host string
	// HealthyThreshold consecutive passing checks make an unhealthy upstream
	// healthy again. Default DefaultHealthyThreshold.
	HealthyThreshold int
	// UnhealthyThreshold consecutive failing checks make a healthy upstream
	// unhealthy. Default DefaultUnhealthyThreshold.
	UnhealthyThreshold int
}

func (h *HealthOptions) setDefaults() error {
	if h.Interval < 0 {
		h.Interval = 0
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

// checker runs the active checks of one upstream until its state is
// released. The first check runs at once so a dead upstream is found before
// the first interval passes.
func (st *upstreamState) checker() {
	defer st.reg.wg.Done()
	t := time.NewTicker(st.key.spec.Interval)
	defer t.Stop()
	for {
		st.recordCheck(st.check())
		select {
		case <-st.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startProbeLocked runs one out-of-band check unless one is in flight.
// Called on the data path after an error; it never blocks. Registry.mu must
// be held: Close cancels under it, so this wg.Add cannot race its wg.Wait,
// and nothing starts once the state is released.
//
// With active checks disabled, no traffic reaches an upstream the probe
// found unhealthy, so nothing else would ever look at it again: the probe
// then repeats every ejection period until the upstream is healthy.
func (st *upstreamState) startProbeLocked() {
	if st.ctx.Err() != nil || !st.probing.CompareAndSwap(false, true) {
		return
	}
	st.reg.wg.Add(1)
	go func() {
		defer st.reg.wg.Done()
		defer st.probing.Store(false)
		for {
			st.recordCheck(st.check())
			if st.key.spec.Interval > 0 || st.isHealthy() {
				return
			}
			t := time.NewTimer(st.key.spec.ejectFor)
			select {
			case <-st.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
}

func (st *upstreamState) isHealthy() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.healthy
}

// recordCheck applies one check result to the thresholds.
func (st *upstreamState) recordCheck(err error) {
	if st.ctx.Err() != nil {
		return // released mid-check; the result means nothing
	}
	spec := st.key.spec
	st.mu.Lock()
	defer st.mu.Unlock()
	if err == nil {
		st.failStreak = 0
		st.okStreak++
		if !st.healthy && st.okStreak >= spec.HealthyThreshold {
			st.healthy = true
		}
		st.updateUsableLocked(fmt.Sprintf("%d health checks passed", st.okStreak))
		return
	}
	st.reg.log.Debug("health check failed", "upstream", st.key.addr, "err", err)
	st.okStreak = 0
	st.failStreak++
	if st.healthy && st.failStreak >= spec.UnhealthyThreshold {
		st.healthy = false
	}
	st.updateUsableLocked(fmt.Sprintf("%d health checks failed, the last: %v", st.failStreak, err))
}

// check runs one health check. An https:// upstream's check includes the
// TLS handshake, under the pool's TLS settings: an origin that fails it
// (pq_required refused, a certificate that does not verify) is as
// unusable as one that refuses connections.
func (st *upstreamState) check() error {
	h := st.key.spec.HealthOptions
	// The timeout covers connect, handshake, request and response: a
	// check must end even if the upstream accepts and then says nothing.
	ctx, cancel := context.WithTimeout(st.ctx, h.Timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, st.network, st.dialTo)
	if err != nil {
		return err
	}
	if st.tls != nil {
		tc, err := st.tls.handshake(ctx, c, st.key.addr, h.Timeout)
		if err != nil {
			return err
		}
		c = tc
	}
	defer c.Close()
	if h.Path == "" {
		return nil
	}
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+st.checkHost()+h.Path, nil)
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
		if st.tls != nil {
			if te := st.tls.lateFailure(st.key.addr, err); te != nil {
				return te
			}
		}
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

// checkHost is the Host header of HTTP checks: HealthOptions.Host, else
// for an https:// upstream the TLS server name (the virtual host the
// certificate names), else the address dialed.
func (st *upstreamState) checkHost() string {
	switch {
	case st.key.spec.Host != "":
		return st.key.spec.Host
	case st.network == "unix":
		return "localhost"
	case st.tls != nil && net.ParseIP(st.tls.conf.ServerName) == nil:
		return st.tls.conf.ServerName
	}
	return st.dialTo
}
