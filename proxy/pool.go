package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoHealthyUpstream is returned by Pool.Dial when every upstream of the
// pool is failing its health checks or is ejected.
var ErrNoHealthyUpstream = errors.New("no healthy upstream")

// Defaults applied by NewPool to zero fields of PoolOptions.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultMaxFails    = 3
	DefaultEjectFor    = 10 * time.Second
)

// PoolOptions configure a Pool. Zero fields take the documented default.
type PoolOptions struct {
	// Addresses lists the upstreams: "host:port" for TCP or "unix:/path" for
	// a Unix stream socket. At least one is required.
	Addresses []string

	// DialTimeout bounds one connection attempt to an upstream, so a
	// blackholed address (SYN without answer) fails fast instead of holding
	// the client for the kernel's multi-minute connect timeout.
	// Default DefaultDialTimeout.
	DialTimeout time.Duration

	// MaxFails is the number of consecutive data-path failures (dial errors,
	// transport errors answered with 502/504) after which an upstream is
	// ejected for EjectFor. Default DefaultMaxFails.
	MaxFails int
	// EjectFor is the passive-ejection cool-down. Default DefaultEjectFor.
	EjectFor time.Duration

	// Health configures active health checks.
	Health HealthOptions

	// OnHealthChange, if set, is called each time an upstream becomes usable
	// (healthy is true) or unusable (false), whether by an active check, a
	// probe, a passive ejection or the end of one. It is called from the
	// pool's single notifier goroutine, one call at a time and in the order
	// the changes happened, so a slow hook delays later notifications but
	// never the data path. It is not called for the initial state (every
	// upstream starts usable) nor after Close.
	OnHealthChange func(pool, addr string, healthy bool)

	// Logger receives health transitions at Info and probe errors at Debug.
	// Default slog.Default().
	Logger *slog.Logger
}

// UpstreamState is a snapshot of one upstream, for metrics and status pages.
type UpstreamState struct {
	Addr string // as configured: "host:port" or "unix:/path"
	// Healthy is true when the upstream is picked for new requests: it passes
	// active health checks and is not ejected.
	Healthy bool
	// Ejected is true during a passive-ejection cool-down.
	Ejected bool
	// ConsecutiveFailures counts data-path failures since the last success.
	ConsecutiveFailures int
}

// Pool is a named set of upstreams picked round-robin among the healthy ones.
// It is safe for concurrent use.
type Pool struct {
	name string
	opts PoolOptions
	log  *slog.Logger
	ups  []*upstream
	next atomic.Uint64 // round-robin cursor

	ctx    context.Context // canceled by Close; stops checkers and probes
	cancel context.CancelFunc
	wg     sync.WaitGroup // checker, probe and notifier goroutines

	mu sync.Mutex // guards the health fields of every upstream and events
	// events queues OnHealthChange notifications for the notifier goroutine.
	events []healthEvent
	wake   chan struct{} // signals the notifier; buffered 1
}

// upstream is one member of a pool. Fields below mu are guarded by Pool.mu.
type upstream struct {
	addr    string // as configured
	network string // "tcp" or "unix"
	dialTo  string // address handed to net.Dialer
	// key is the host[:port] the HTTP transport sees for this upstream; for a
	// unix socket it is a synthetic name the transport's dialer maps back.
	key string

	probing atomic.Bool // a data-path-triggered probe is in flight

	// Guarded by Pool.mu.
	healthy      bool // verdict of active checks and probes
	okStreak     int  // consecutive successful checks
	failStreak   int  // consecutive failed checks
	consecFails  int  // consecutive data-path failures
	ejectedUntil time.Time
	ejectTimer   *time.Timer
	usable       bool // healthy && not ejected, as last reported
}

type healthEvent struct {
	addr    string
	healthy bool
}

// NewPool checks the addresses and starts the active health checkers (unless
// opts.Health.Interval is negative). Call Close to stop them.
func NewPool(name string, opts PoolOptions) (*Pool, error) {
	if len(opts.Addresses) == 0 {
		return nil, fmt.Errorf("failed to create pool %q: no upstream addresses", name)
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.MaxFails <= 0 {
		opts.MaxFails = DefaultMaxFails
	}
	if opts.EjectFor <= 0 {
		opts.EjectFor = DefaultEjectFor
	}
	if err := opts.Health.setDefaults(); err != nil {
		return nil, fmt.Errorf("failed to create pool %q: %w", name, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	p := &Pool{name: name, opts: opts, log: log.With("pool", name), wake: make(chan struct{}, 1)}
	// Both maps matter: unix keys are distinct by index, and two TCP
	// addresses differing only in the host's case share a transport key,
	// so byKey would send the second one's requests to the first.
	seenAddr, seenKey := map[string]bool{}, map[string]bool{}
	for i, a := range opts.Addresses {
		u, err := parseUpstream(a, i)
		if err != nil {
			return nil, fmt.Errorf("failed to create pool %q: %w", name, err)
		}
		if seenAddr[u.addr] || seenKey[u.key] {
			return nil, fmt.Errorf("failed to create pool %q: upstream %q listed twice", name, a)
		}
		seenAddr[u.addr], seenKey[u.key] = true, true
		p.ups = append(p.ups, u)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.notifier()
	if opts.Health.Interval > 0 {
		for _, u := range p.ups {
			p.wg.Add(1)
			go p.checker(u)
		}
	}
	return p, nil
}

// CheckUpstream reports what is wrong with an upstream address, as NewPool
// would; config loaders call it to point at the line.
func CheckUpstream(addr string) error {
	_, err := parseUpstream(addr, 0)
	return err
}

func parseUpstream(a string, index int) (*upstream, error) {
	u := &upstream{addr: a, healthy: true, usable: true}
	if path, ok := strings.CutPrefix(a, "unix:"); ok {
		if path == "" {
			return nil, fmt.Errorf("upstream %q: empty unix socket path", a)
		}
		if !filepath.IsAbs(path) {
			// Relative to whatever directory pqedge was started in: a
			// restart from elsewhere would dial another socket.
			return nil, fmt.Errorf("upstream %q: unix socket path %q is not absolute", a, path)
		}
		u.network, u.dialTo = "unix", path
		// The transport keys idle connections by host:port, so each socket
		// gets a distinct name in the reserved .invalid TLD (RFC 6761).
		u.key = fmt.Sprintf("unix-%d.pqedge.invalid:80", index)
		return u, nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: want host:port or unix:/path: %w", a, err)
	}
	if port == "" || host == "" {
		return nil, fmt.Errorf("upstream %q: want host:port or unix:/path", a)
	}
	// A service name or an out-of-range port would only fail at the first
	// dial, on a client's request.
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return nil, fmt.Errorf("upstream %q: port %q is not a number from 1 to 65535", a, port)
	}
	// The transport lower-cases the host it dials; match it.
	u.network, u.dialTo, u.key = "tcp", a, net.JoinHostPort(strings.ToLower(host), port)
	return u, nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Upstreams returns a snapshot of every upstream in configuration order.
func (p *Pool) Upstreams() []UpstreamState {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	out := make([]UpstreamState, len(p.ups))
	for i, u := range p.ups {
		ejected := now.Before(u.ejectedUntil)
		out[i] = UpstreamState{Addr: u.addr, Healthy: u.healthy && !ejected, Ejected: ejected, ConsecutiveFailures: u.consecFails}
	}
	return out
}

// Close stops the health checkers, probes and the notifier and waits for
// them. Connections already handed out are not touched.
func (p *Pool) Close() error {
	// Cancel under mu: reportFailure checks ctx and starts probes (wg.Add)
	// under mu, so no probe or ejection timer starts once Wait may run.
	p.mu.Lock()
	p.cancel()
	p.mu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	for _, u := range p.ups {
		if u.ejectTimer != nil {
			u.ejectTimer.Stop()
		}
	}
	p.mu.Unlock()
	return nil
}

// pick returns the next usable upstream in round-robin order, skipping
// those in skip.
func (p *Pool) pick(skip map[*upstream]bool) (*upstream, error) {
	now := time.Now()
	n := uint64(len(p.ups))
	start := p.next.Add(1) - 1
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range n {
		u := p.ups[(start+i)%n]
		if u.healthy && !now.Before(u.ejectedUntil) && !skip[u] {
			return u, nil
		}
	}
	return nil, ErrNoHealthyUpstream
}

// byKey finds the upstream the HTTP transport is dialing.
func (p *Pool) byKey(key string) *upstream {
	for _, u := range p.ups {
		if u.key == key {
			return u
		}
	}
	return nil
}

// Dial connects to the next healthy upstream. A failed attempt counts
// against that upstream and the next one is tried, so a single dead upstream
// costs latency, not an error; it returns the configured address of the
// upstream it connected to. ctx bounds the whole call, DialTimeout each
// attempt.
func (p *Pool) Dial(ctx context.Context) (net.Conn, string, error) {
	tried := map[*upstream]bool{}
	var lastErr error
	for range p.ups {
		u, err := p.pick(tried)
		if err != nil {
			break
		}
		tried[u] = true
		c, err := p.dialUpstream(ctx, u)
		if err == nil {
			// For a stream a connect is the whole of what the pool can
			// judge, so it counts as a success.
			p.reportSuccess(u)
			return c, u.addr, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	if lastErr == nil {
		lastErr = ErrNoHealthyUpstream
	}
	return nil, "", fmt.Errorf("failed to dial pool %q: %w", p.name, lastErr)
}

// DialContext returns a dial function for the pool in the shape
// net.Dialer.DialContext has; network and address are ignored, the pool
// picks the upstream.
func (p *Pool) DialContext() func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, _, err := p.Dial(ctx)
		return c, err
	}
}

// dialError marks a failure to connect, as opposed to a failure after
// the connection was made; the HTTP error handler answers it with 502.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return fmt.Sprintf("failed to connect to %s: %v", e.addr, e.err) }
func (e *dialError) Unwrap() error { return e.err }

// dialUpstream connects to u and reports the outcome to the health state.
func (p *Pool) dialUpstream(ctx context.Context, u *upstream) (net.Conn, error) {
	d := net.Dialer{Timeout: p.opts.DialTimeout}
	c, err := d.DialContext(ctx, u.network, u.dialTo)
	if err != nil {
		// A dial the client abandoned says nothing about the upstream.
		if ctx.Err() == nil {
			p.reportFailure(u)
		}
		return nil, &dialError{addr: u.addr, err: err}
	}
	return c, nil
}

// reportFailure records a data-path failure: it may eject the upstream and
// it starts a probe unless one is already in flight (CoreDNS forward does
// the same), so a dead upstream is noticed before the next check interval.
func (p *Pool) reportFailure(u *upstream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return // a request that outlived Close: nobody reads the verdict
	}
	u.consecFails++
	if u.consecFails >= p.opts.MaxFails && !time.Now().Before(u.ejectedUntil) {
		u.consecFails = 0
		u.ejectedUntil = time.Now().Add(p.opts.EjectFor)
		p.log.Info("upstream ejected", "upstream", u.addr, "for", p.opts.EjectFor)
		if u.ejectTimer != nil {
			u.ejectTimer.Stop()
		}
		// The timer reports the end of the ejection; its goroutine only
		// takes the lock and queues an event.
		u.ejectTimer = time.AfterFunc(p.opts.EjectFor, func() {
			p.mu.Lock()
			// Failures of requests in flight during the ejection must
			// not re-eject on the first new error.
			u.consecFails = 0
			p.updateUsableLocked(u)
			p.mu.Unlock()
		})
		p.updateUsableLocked(u)
	}
	p.startProbeLocked(u)
}

// reportSuccess records that u served a request.
func (p *Pool) reportSuccess(u *upstream) {
	p.mu.Lock()
	u.consecFails = 0
	p.mu.Unlock()
}

// updateUsableLocked queues a notification if u's usability changed.
// p.mu must be held.
func (p *Pool) updateUsableLocked(u *upstream) {
	usable := u.healthy && !time.Now().Before(u.ejectedUntil)
	if usable == u.usable {
		return
	}
	u.usable = usable
	if p.ctx.Err() != nil {
		return
	}
	p.events = append(p.events, healthEvent{addr: u.addr, healthy: usable})
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// notifier delivers OnHealthChange calls one at a time, in order, off the
// data path.
func (p *Pool) notifier() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		}
		p.mu.Lock()
		evs := p.events
		p.events = nil
		p.mu.Unlock()
		for _, e := range evs {
			if e.healthy {
				p.log.Info("upstream usable", "upstream", e.addr)
			} else {
				p.log.Info("upstream unusable", "upstream", e.addr)
			}
			if p.opts.OnHealthChange != nil && p.ctx.Err() == nil {
				p.opts.OnHealthChange(p.name, e.addr, e.healthy)
			}
		}
	}
}
