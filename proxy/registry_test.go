package proxy

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// changeLog records a Registry's OnChange calls.
type changeLog struct {
	mu      sync.Mutex
	changes []UpstreamChange
}

func (l *changeLog) add(c UpstreamChange) {
	l.mu.Lock()
	l.changes = append(l.changes, c)
	l.mu.Unlock()
}

func (l *changeLog) snapshot() []UpstreamChange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]UpstreamChange(nil), l.changes...)
}

// TestRegistryHealthOutlivesPools is the reload case: a dead upstream
// ejected through one pool stays out for a pool built later from the same
// registry, also after the first pool closes, and also when the new pool
// checks it with other settings.
func TestRegistryHealthOutlivesPools(t *testing.T) {
	dead := deadAddr(t)
	var log changeLog
	reg := NewRegistry(RegistryOptions{OnChange: log.add, Logger: quietLogger})
	defer reg.Close()
	opts := PoolOptions{Addresses: []string{dead}, MaxFails: 1, EjectFor: time.Hour, Registry: reg, Logger: quietLogger}
	a, err := NewPool("app", opts)
	if err != nil {
		t.Fatal(err)
	}
	a.reportFailure(a.ups[0], errors.New("connection refused"))
	if a.Usable(0) {
		t.Fatal("upstream still usable after MaxFails failures")
	}
	b, err := NewPool("app", opts)
	if err != nil {
		t.Fatal(err)
	}
	if b.ups[0].state != a.ups[0].state {
		t.Error("two pools with the same upstream and settings got different states")
	}
	a.Close()
	if b.Usable(0) {
		t.Error("the new pool sees the ejected upstream as usable")
	}
	// A reload that changes the health settings keeps the verdict too.
	opts.EjectFor = 2 * time.Hour
	c, err := NewPool("app", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Usable(0) {
		t.Error("a pool with new health settings sees the ejected upstream as usable")
	}
	b.Close()
	waitFor(t, "the unusable change to be reported", func() bool { return len(log.snapshot()) > 0 })
	got := log.snapshot()[0]
	if got.Usable || got.Addr != dead || got.Reason == "" {
		t.Errorf("change = %+v, want %s unusable with a reason", got, dead)
	}
}

// TestRegistryReleaseStopsChecks checks that the last pool's Close stops
// the upstream's active checks, and that a state is made afresh after.
func TestRegistryReleaseStopsChecks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepts sync.WaitGroup
	count := make(chan struct{}, 1000)
	accepts.Add(1)
	go func() {
		defer accepts.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			count <- struct{}{}
		}
	}()
	reg := NewRegistry(RegistryOptions{Logger: quietLogger})
	opts := PoolOptions{Addresses: []string{ln.Addr().String()}, Registry: reg, Logger: quietLogger,
		Health: HealthOptions{Interval: 10 * time.Millisecond}}
	p, err := NewPool("app", opts)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "active checks", func() bool { return len(count) >= 3 })
	p.Close()
	reg.mu.Lock()
	left := len(reg.states)
	reg.mu.Unlock()
	if left != 0 {
		t.Errorf("%d upstream states left after the only pool closed", left)
	}
	reg.Close() // waits for the checker: none may run after this
	n := len(count)
	time.Sleep(50 * time.Millisecond) // five check intervals
	if after := len(count); after != n {
		t.Errorf("%d checks ran after Close", after-n)
	}
	ln.Close()
	accepts.Wait()
}

func TestNewPoolRefusesHookWithSharedRegistry(t *testing.T) {
	reg := NewRegistry(RegistryOptions{Logger: quietLogger})
	defer reg.Close()
	_, err := NewPool("app", PoolOptions{Addresses: []string{"127.0.0.1:1"}, Registry: reg, OnHealthChange: func(string, string, bool) {}})
	if err == nil {
		t.Fatal("NewPool accepted OnHealthChange with a shared registry")
	}
}

func TestNewPoolAfterRegistryClose(t *testing.T) {
	reg := NewRegistry(RegistryOptions{Logger: quietLogger})
	reg.Close()
	if _, err := NewPool("app", PoolOptions{Addresses: []string{"127.0.0.1:1"}, Registry: reg}); err == nil {
		t.Fatal("NewPool succeeded on a closed registry")
	}
}
