package anycast

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// fakeClock is a Clock whose time moves only by Advance, which runs due
// timers in time order on the caller's goroutine.
type fakeClock struct {
	mu     sync.Mutex // guards now and timers
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool // stopped or fired
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves the clock by d, firing each timer due on the way at its
// own time.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.stopped && !t.at.After(end) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			c.now = end
			c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool { return t.stopped })
			c.mu.Unlock()
			return
		}
		next.stopped = true
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
	}
}

// fakeAnnouncer records announcements, and refuses changes while failing.
type fakeAnnouncer struct {
	mu        sync.Mutex // guards the fields below
	announced map[netip.Prefix]bool
	failing   bool
}

var errRefused = errors.New("refused by the fake device")

func newFakeAnnouncer() *fakeAnnouncer {
	return &fakeAnnouncer{announced: map[netip.Prefix]bool{}}
}

func (a *fakeAnnouncer) Announce(p netip.Prefix) error { return a.set(p, true) }
func (a *fakeAnnouncer) Withdraw(p netip.Prefix) error { return a.set(p, false) }

func (a *fakeAnnouncer) set(p netip.Prefix, on bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failing {
		return errRefused
	}
	a.announced[p] = on
	return nil
}

func (a *fakeAnnouncer) isAnnounced(p netip.Prefix) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.announced[p]
}

func (a *fakeAnnouncer) setFailing(f bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failing = f
}
