package proxy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Registry keeps the health of upstreams across the pools that use them. A
// server builds a new set of pools on every config reload; pools made from
// one Registry share the state of each upstream they have in common, so a
// reload neither forgets that an upstream is down nor restarts its checks,
// and two generations draining side by side agree on it.
//
// State is keyed by the upstream's configured address and its health
// settings (HealthOptions plus the ejection settings, and for an https://
// upstream its TLS settings): pools that check one address the same way
// share one state, one active checker and one probe.
// When a pool asks for an address under new settings (a reload changed its
// health block), the new state starts from the verdict of the existing one,
// so the change does not make a dead upstream usable again.
//
// A Registry's methods are safe for concurrent use. Close it after every
// pool made from it is closed.
type Registry struct {
	log      *slog.Logger
	onChange func(UpstreamChange)

	ctx    context.Context // canceled by Close; stops checkers, probes, notifier
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Lock order: mu before any upstreamState.mu before evMu.
	mu     sync.Mutex // guards states and every state's refs
	states map[stateKey]*upstreamState

	evMu   sync.Mutex // guards events
	events []UpstreamChange
	wake   chan struct{} // signals the notifier; buffered 1
}

// RegistryOptions configure a Registry.
type RegistryOptions struct {
	// OnChange, if set, is called each time an upstream becomes usable or
	// unusable, whether by an active check, a probe, a passive ejection or
	// the end of one. It is called from the registry's single notifier
	// goroutine, one call at a time and in the order the changes happened,
	// so a slow hook delays later notifications but never the data path.
	// It is not called for the initial state (every upstream starts
	// usable) nor after Close.
	OnChange func(UpstreamChange)
	// Logger receives health transitions at Info and check errors at Debug.
	// Default slog.Default().
	Logger *slog.Logger
}

// UpstreamChange is one change of an upstream's usability.
type UpstreamChange struct {
	Addr   string // as configured
	Usable bool
	// Reason says why, for logs: "active check failed: dial tcp ...",
	// "ejected after 3 consecutive failures: ...", "ejection ended",
	// "active checks passed".
	Reason string
}

// NewRegistry returns an empty registry with its notifier running.
func NewRegistry(opts RegistryOptions) *Registry {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Registry{log: log, onChange: opts.OnChange, states: map[stateKey]*upstreamState{}, wake: make(chan struct{}, 1)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.notifier()
	return r
}

// Close stops every checker, probe and the notifier and waits for them.
func (r *Registry) Close() {
	r.mu.Lock()
	r.cancel()
	for _, st := range r.states {
		st.stopLocked()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// stateKey identifies an upstream checked one way.
type stateKey struct {
	addr string
	spec healthSpec
}

// healthSpec is everything that decides an upstream's verdict.
type healthSpec struct {
	HealthOptions
	maxFails int
	ejectFor time.Duration
	tls      [sha256.Size]byte // UpstreamTLS.id of an https:// upstream
}

// upstreamState is the health of one upstream under one healthSpec, shared
// by every pool that uses it. Fields below mu are guarded by it; refs by
// Registry.mu.
type upstreamState struct {
	reg     *Registry
	key     stateKey
	network string       // "tcp" or "unix"
	dialTo  string       // address handed to net.Dialer
	tls     *upstreamTLS // the handshake of an https:// upstream's checks
	refs    int
	ctx     context.Context    // ends when the last pool releases it or the registry closes
	stop    context.CancelFunc // cancels ctx

	probing  atomic.Bool  // a data-path-triggered probe is in flight
	inflight atomic.Int64 // requests and streams using it now, across pools

	mu           sync.Mutex
	healthy      bool // verdict of active checks and probes
	okStreak     int  // consecutive successful checks
	failStreak   int  // consecutive failed checks
	consecFails  int  // consecutive data-path failures
	lastFailure  error
	ejectedUntil time.Time
	ejectTimer   *time.Timer
	usable       bool // healthy && not ejected, as last reported
}

// acquire returns the shared state of u under spec, creating it (and its
// checker) on first use.
func (r *Registry) acquire(u *upstream, spec healthSpec) (*upstreamState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return nil, fmt.Errorf("upstream %q: the health registry is closed", u.addr)
	}
	k := stateKey{addr: u.addr, spec: spec}
	if st, ok := r.states[k]; ok {
		st.refs++
		return st, nil
	}
	st := &upstreamState{reg: r, key: k, network: u.network, dialTo: u.dialTo, tls: u.tls, refs: 1, healthy: true, usable: true}
	// Another spec for the same address (a reload changed the health
	// settings): start from its verdict, not from "usable".
	for ok, o := range r.states {
		if ok.addr == u.addr {
			o.mu.Lock()
			st.healthy, st.usable, st.ejectedUntil = o.healthy, o.usable, o.ejectedUntil
			o.mu.Unlock()
			break
		}
	}
	st.ctx, st.stop = context.WithCancel(r.ctx)
	r.states[k] = st
	if spec.Interval > 0 {
		r.wg.Add(1)
		go st.checker()
	} else if !st.healthy {
		// Inherited a down verdict without active checks: a probe is what
		// will find it back.
		st.startProbeLocked()
	}
	return st, nil
}

// release drops one reference; the last one stops the state's goroutines.
func (r *Registry) release(st *upstreamState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st.refs--
	if st.refs > 0 {
		return
	}
	st.stopLocked()
	if r.states[st.key] == st {
		delete(r.states, st.key)
	}
}

// stopLocked stops the state's checker, probe and ejection timer. r.mu held.
func (st *upstreamState) stopLocked() {
	st.stop()
	st.mu.Lock()
	if st.ejectTimer != nil {
		st.ejectTimer.Stop()
	}
	st.mu.Unlock()
}

// queue records a usability change for the notifier. st.mu must be held.
func (st *upstreamState) queueLocked(usable bool, reason string) {
	r := st.reg
	r.evMu.Lock()
	defer r.evMu.Unlock()
	if r.ctx.Err() != nil {
		return
	}
	r.events = append(r.events, UpstreamChange{Addr: st.key.addr, Usable: usable, Reason: reason})
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// notifier delivers OnChange calls one at a time, in order, off the data
// path.
func (r *Registry) notifier() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.wake:
		}
		r.evMu.Lock()
		evs := r.events
		r.events = nil
		r.evMu.Unlock()
		for _, e := range evs {
			if e.Usable {
				r.log.Info("upstream usable", "upstream", e.Addr, "reason", e.Reason)
			} else {
				r.log.Warn("upstream unusable", "upstream", e.Addr, "reason", e.Reason)
			}
			if r.onChange != nil && r.ctx.Err() == nil {
				r.onChange(e)
			}
		}
	}
}

// usableNow reports whether the upstream may get new traffic.
func (st *upstreamState) usableNow(now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.healthy && !now.Before(st.ejectedUntil)
}

// updateUsableLocked queues a notification if the usability changed.
// st.mu must be held.
func (st *upstreamState) updateUsableLocked(reason string) {
	usable := st.healthy && !time.Now().Before(st.ejectedUntil)
	if usable == st.usable {
		return
	}
	st.usable = usable
	st.queueLocked(usable, reason)
}

// reportFailure records a data-path failure caused by the upstream: it may
// eject it, and it starts a probe unless one is already in flight (CoreDNS
// forward does the same), so a dead upstream is noticed before the next
// check interval.
func (st *upstreamState) reportFailure(cause error) {
	st.mu.Lock()
	st.consecFails++
	st.lastFailure = cause
	spec := st.key.spec
	if st.consecFails >= spec.maxFails && !time.Now().Before(st.ejectedUntil) {
		n := st.consecFails
		st.consecFails = 0
		st.ejectedUntil = time.Now().Add(spec.ejectFor)
		if st.ejectTimer != nil {
			st.ejectTimer.Stop()
		}
		// The timer reports the end of the ejection; it only takes the
		// lock and queues an event.
		st.ejectTimer = time.AfterFunc(spec.ejectFor, func() {
			st.mu.Lock()
			// Failures of requests in flight during the ejection must
			// not re-eject on the first new error.
			st.consecFails = 0
			st.updateUsableLocked("ejection ended")
			st.mu.Unlock()
		})
		st.updateUsableLocked(fmt.Sprintf("ejected for %s after %d consecutive failures, the last: %v", spec.ejectFor, n, cause))
	}
	st.mu.Unlock()
	st.reg.mu.Lock()
	st.startProbeLocked()
	st.reg.mu.Unlock()
}

// reportSuccess records that the upstream served a request.
func (st *upstreamState) reportSuccess() {
	st.mu.Lock()
	st.consecFails = 0
	st.mu.Unlock()
}

// snapshot returns the state for Pool.Upstreams.
func (st *upstreamState) snapshot(now time.Time) UpstreamState {
	st.mu.Lock()
	defer st.mu.Unlock()
	ejected := now.Before(st.ejectedUntil)
	return UpstreamState{Addr: st.key.addr, Healthy: st.healthy && !ejected, Ejected: ejected,
		ConsecutiveFailures: st.consecFails, InFlight: int(st.inflight.Load())}
}
