package anycast

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Announcer adds and removes the announcement of a prefix. [*Device] is the
// real one. Both calls must be idempotent: announcing an announced prefix
// or withdrawing a withdrawn one succeeds and changes nothing.
type Announcer interface {
	Announce(p netip.Prefix) error
	Withdraw(p netip.Prefix) error
}

var _ Announcer = (*Device)(nil)

// Policy is the flap control of one prefix. Health is sampled when a
// report changes it and then every Interval while it stays, as long as a
// count is running; Rise and Fall count consecutive samples.
//
// A prefix is withdrawn after Fall unhealthy samples, that is
// (Fall-1)×Interval after the health turned bad. It is announced again
// after Rise healthy samples, but never sooner than HoldDown after its last
// withdrawal, so an upstream that flaps every few seconds moves the route at
// most once per HoldDown. The first announcement after the prefix was
// configured needs a single healthy sample: there is no history to damp
// yet, and the server reports healthy only once it is ready.
type Policy struct {
	Rise     int           // healthy samples to re-announce; at least 1
	Fall     int           // unhealthy samples to withdraw; at least 1
	Interval time.Duration // between samples while counting; positive
	HoldDown time.Duration // from a withdrawal to the next announcement; 0 or more
}

// Check reports what is wrong with the policy, naming the field.
func (p Policy) Check() error {
	switch {
	case p.Rise < 1:
		return fmt.Errorf("rise must be at least 1, not %d", p.Rise)
	case p.Fall < 1:
		return fmt.Errorf("fall must be at least 1, not %d", p.Fall)
	case p.Interval <= 0:
		return fmt.Errorf("interval must be positive, not %v", p.Interval)
	case p.HoldDown < 0:
		return fmt.Errorf("hold_down must not be negative, not %v", p.HoldDown)
	}
	return nil
}

// Announcement is a prefix the Controller manages, with its policy.
type Announcement struct {
	Prefix netip.Prefix // a single address: IPv4 /32 or IPv6 /128
	Policy Policy
}

// Cause is why a transition happened, a short fixed word fit for a metric
// label. The free-text detail is in Transition.Reason.
type Cause string

// Causes of transitions.
const (
	CauseHealthy   Cause = "healthy"   // announced: healthy for long enough
	CauseUnhealthy Cause = "unhealthy" // withdrawn: unhealthy for Fall samples
	CauseShutdown  Cause = "shutdown"  // withdrawn by WithdrawAll
	CauseRemoved   Cause = "removed"   // withdrawn: no longer configured
)

// Transition is one announce or withdraw of a prefix.
type Transition struct {
	Prefix    netip.Prefix
	Announced bool // true: announced; false: withdrawn
	Cause     Cause
	// Reason is the text of the health report that led here, or the reason
	// given to WithdrawAll.
	Reason string
	At     time.Time
	// Err is non-nil when the device refused the change. The prefix then
	// keeps its previous state, and the change is tried again at the next
	// sample (for Cause healthy and unhealthy).
	Err error
}

// PrefixState is a snapshot of one prefix, for an admin page or metrics.
type PrefixState struct {
	Prefix    netip.Prefix
	Announced bool
	Healthy   bool   // as last reported; false before the first report
	Reason    string // the last report's reason
	// Since is the time of the last announce or withdraw; zero if none.
	Since time.Time
	// HoldUntil is when a withdrawn prefix may be announced again; zero
	// when no hold-down applies.
	HoldUntil time.Time
	// LastError is the last refusal by the device; nil after a success.
	LastError error
}

// Options are a Controller's hooks.
type Options struct {
	// Clock is the time source; nil means the real clock.
	Clock Clock
	// OnTransition is called after every announce and withdraw, or attempt
	// that failed, in order. It runs with the Controller's lock held, on the
	// goroutine of the call or timer that caused it, so it must be quick (a
	// metric, a log line) and must not call the Controller. Nil: none.
	OnTransition func(Transition)
}

// ErrClosed is returned by a Controller's methods after Close.
var ErrClosed = errors.New("anycast controller is closed")

// Controller runs the flap control of every configured prefix and drives
// an Announcer. It is a server component: it outlives config generations,
// each of which calls Configure. All methods are safe for concurrent use.
type Controller struct {
	ann          Announcer
	clock        Clock
	onTransition func(Transition)

	mu       sync.Mutex // guards the fields below, and serializes calls to ann
	prefixes map[netip.Prefix]*prefixState
	stopped  bool // WithdrawAll was called: nothing is announced again
	closed   bool
}

// prefixState is one prefix's state machine.
type prefixState struct {
	policy    Policy
	announced bool
	reported  bool // Update was called at least once
	healthy   bool
	reason    string
	// fresh is true until the prefix's first withdrawal: one healthy sample
	// announces it.
	fresh bool
	// streak is the number of consecutive samples at the current health.
	streak     int
	nextSample time.Time
	holdUntil  time.Time
	since      time.Time
	lastErr    error
	timer      Timer
	timerGen   uint64 // a fired timer whose generation is stale does nothing
}

// NewController returns a Controller with no prefixes; call Configure.
func NewController(a Announcer, opts Options) *Controller {
	c := &Controller{ann: a, clock: opts.Clock, onTransition: opts.OnTransition,
		prefixes: map[netip.Prefix]*prefixState{}}
	if c.clock == nil {
		c.clock = realClock{}
	}
	return c
}

// Configure makes anns the set of managed prefixes, all or nothing: an
// invalid prefix or policy, or a prefix listed twice, returns an error and
// changes nothing. A new prefix starts withdrawn and waits for Update. A
// kept prefix keeps its state and counts under its new policy. A removed
// prefix is withdrawn (Cause removed) and forgotten; a failed withdrawal is
// returned, and the address copy stays on the device until it is closed.
func (c *Controller) Configure(anns []Announcement) error {
	seen := map[netip.Prefix]bool{}
	for _, a := range anns {
		if err := CheckPrefix(a.Prefix); err != nil {
			return err
		}
		if err := a.Policy.Check(); err != nil {
			return fmt.Errorf("prefix %s: %w", a.Prefix, err)
		}
		if seen[a.Prefix] {
			return fmt.Errorf("prefix %s is listed twice", a.Prefix)
		}
		seen[a.Prefix] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	now := c.clock.Now()
	var errs []error
	for _, p := range c.sortedPrefixes() {
		if seen[p] {
			continue
		}
		st := c.prefixes[p]
		c.stopTimer(st)
		if st.announced {
			errs = append(errs, c.withdraw(p, st, CauseRemoved, "removed from the configuration", now))
		}
		delete(c.prefixes, p)
	}
	for _, a := range anns {
		st, ok := c.prefixes[a.Prefix]
		if !ok {
			c.prefixes[a.Prefix] = &prefixState{policy: a.Policy, fresh: true}
			continue
		}
		st.policy = a.Policy
		c.evaluate(a.Prefix, st, now)
	}
	return errors.Join(errs...)
}

// Update reports the health of prefix p: whether pqedge can serve it, and
// why (e.g. `listener "dot": pool "resolvers" has no healthy upstream`). A
// report that changes the health is a sample and restarts the count; a
// report that repeats it only replaces the reason. The server calls Update
// whenever the health may have changed; calling it more often is harmless.
// Announcing or withdrawing happens within the call when the policy says so.
func (c *Controller) Update(p netip.Prefix, healthy bool, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	st, ok := c.prefixes[p]
	if !ok {
		return fmt.Errorf("prefix %s is not configured for anycast", p)
	}
	st.reason = reason
	if st.reported && st.healthy == healthy {
		return nil
	}
	now := c.clock.Now()
	st.reported, st.healthy = true, healthy
	st.streak = 1
	st.nextSample = now.Add(st.policy.Interval)
	c.evaluate(p, st, now)
	return nil
}

// WithdrawAll withdraws every announced prefix (Cause shutdown) and stops
// announcing for good: later reports are recorded but announce nothing. It
// is the first step of a lame-duck shutdown. It returns the withdrawals the
// device refused; closing the device withdraws those too.
func (c *Controller) WithdrawAll(reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.stopped = true
	now := c.clock.Now()
	var errs []error
	for _, p := range c.sortedPrefixes() {
		st := c.prefixes[p]
		c.stopTimer(st)
		if st.announced {
			errs = append(errs, c.withdraw(p, st, CauseShutdown, reason, now))
		}
	}
	return errors.Join(errs...)
}

// State returns a snapshot of every prefix, sorted by prefix.
func (c *Controller) State() []PrefixState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]PrefixState, 0, len(c.prefixes))
	for _, p := range c.sortedPrefixes() {
		st := c.prefixes[p]
		ps := PrefixState{Prefix: p, Announced: st.announced, Healthy: st.healthy, Reason: st.reason,
			Since: st.since, LastError: st.lastErr}
		if !st.announced && c.clock.Now().Before(st.holdUntil) {
			ps.HoldUntil = st.holdUntil
		}
		out = append(out, ps)
	}
	return out
}

// Close stops every timer. It withdraws nothing itself: call WithdrawAll
// first, or close the Device, which withdraws everything at once.
func (c *Controller) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, st := range c.prefixes {
		c.stopTimer(st)
	}
}

// evaluate applies the policy to st at now, then schedules the next sample
// or the end of the hold-down if a count is still running.
func (c *Controller) evaluate(p netip.Prefix, st *prefixState, now time.Time) {
	if c.stopped {
		return
	}
	pol := st.policy
	switch {
	case st.announced && st.reported && !st.healthy && st.streak >= pol.Fall:
		c.withdraw(p, st, CauseUnhealthy, st.reason, now)
	case !st.announced && st.healthy && (st.fresh || st.streak >= pol.Rise) && !now.Before(st.holdUntil):
		c.announce(p, st, now)
	}
	c.schedule(p, st, now)
}

// schedule arms st's timer for the moment evaluate may act next, or stops
// it when the prefix is at rest (announced and healthy, or withdrawn and
// unhealthy).
func (c *Controller) schedule(p netip.Prefix, st *prefixState, now time.Time) {
	var at time.Time
	switch {
	case st.announced && st.reported && !st.healthy:
		at = st.nextSample // counting to Fall, or retrying a refused withdrawal
	case !st.announced && st.healthy:
		at = st.nextSample // counting to Rise, or retrying a refused announcement
		if (st.fresh || st.streak >= st.policy.Rise) && now.Before(st.holdUntil) {
			at = st.holdUntil
		}
	}
	c.stopTimer(st)
	if at.IsZero() {
		return
	}
	st.timerGen++
	gen := st.timerGen
	st.timer = c.clock.AfterFunc(at.Sub(now), func() { c.fire(p, gen) })
}

// fire is a timer's call: a sample if one is due, then evaluate.
func (c *Controller) fire(p netip.Prefix, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.prefixes[p]
	if c.closed || !ok || st.timerGen != gen {
		return
	}
	st.timer = nil
	now := c.clock.Now()
	if !now.Before(st.nextSample) {
		st.streak++
		st.nextSample = now.Add(st.policy.Interval)
	}
	c.evaluate(p, st, now)
}

func (c *Controller) stopTimer(st *prefixState) {
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
	st.timerGen++
}

func (c *Controller) announce(p netip.Prefix, st *prefixState, now time.Time) {
	err := c.ann.Announce(p)
	st.lastErr = err
	if err == nil {
		st.announced, st.since = true, now
	}
	c.report(Transition{Prefix: p, Announced: true, Cause: CauseHealthy, Reason: st.reason, At: now, Err: err})
}

func (c *Controller) withdraw(p netip.Prefix, st *prefixState, cause Cause, reason string, now time.Time) error {
	err := c.ann.Withdraw(p)
	st.lastErr = err
	if err == nil {
		st.announced, st.since, st.fresh = false, now, false
		st.holdUntil = now.Add(st.policy.HoldDown)
	}
	c.report(Transition{Prefix: p, Announced: false, Cause: cause, Reason: reason, At: now, Err: err})
	if err != nil {
		return fmt.Errorf("failed to withdraw %s: %w", p, err)
	}
	return nil
}

func (c *Controller) report(t Transition) {
	if c.onTransition != nil {
		c.onTransition(t)
	}
}

func (c *Controller) sortedPrefixes() []netip.Prefix {
	ps := make([]netip.Prefix, 0, len(c.prefixes))
	for p := range c.prefixes {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return ps
}
