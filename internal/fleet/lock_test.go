package fleet

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLockMiniredis checks the lock contract on miniredis, whose clock
// only moves when the test says (FastForward): leases, their expiry and
// renewal are exact.
func TestLockMiniredis(t *testing.T) {
	ctx := context.Background()
	m, url := startMiniredis(t)
	a := newTestFleet(t, url, "node-a").Storage()
	b := newTestFleet(t, url, "node-b").Storage()

	t.Run("exclusive", func(t *testing.T) {
		if ok, err := a.TryLock(ctx, "x"); !ok || err != nil {
			t.Fatalf("a.TryLock = %v, %v", ok, err)
		}
		if ok, err := b.TryLock(ctx, "x"); ok || err != nil {
			t.Fatalf("b.TryLock of a's lock = %v, %v; want false", ok, err)
		}
		if ok, _ := a.TryLock(ctx, "x"); ok {
			t.Fatal("a took its own lock twice")
		}
		if ttl := m.TTL(a.f.keys.lock("x")); ttl <= 0 || ttl > DefaultLockTTL {
			t.Errorf("lock lease %s, want (0, %s]", ttl, DefaultLockTTL)
		}
		if err := b.Unlock(ctx, "x"); !errors.Is(err, ErrLockNotHeld) {
			t.Errorf("b.Unlock of a's lock: %v, want ErrLockNotHeld", err)
		}
		if !m.Exists(a.f.keys.lock("x")) {
			t.Fatal("b's Unlock removed a's lock")
		}
		if err := a.Unlock(ctx, "x"); err != nil {
			t.Fatal(err)
		}
		if ok, err := b.TryLock(ctx, "x"); !ok || err != nil {
			t.Fatalf("b.TryLock after release = %v, %v", ok, err)
		}
		if err := b.Unlock(ctx, "x"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("dead holder's lease runs out", func(t *testing.T) {
		if ok, _ := a.TryLock(ctx, "y"); !ok {
			t.Fatal("a.TryLock failed")
		}
		// a stalls (its keepalive cannot run in the 60 s miniredis skips).
		m.FastForward(DefaultLockTTL + time.Second)
		if ok, err := b.TryLock(ctx, "y"); !ok || err != nil {
			t.Fatalf("b.TryLock after a's lease ran out = %v, %v", ok, err)
		}
		// compare-and-delete: a's late Unlock must not free b's lock.
		if err := a.Unlock(ctx, "y"); !errors.Is(err, ErrLockNotHeld) {
			t.Errorf("a.Unlock after losing the lease: %v, want ErrLockNotHeld", err)
		}
		if !m.Exists(a.f.keys.lock("y")) {
			t.Fatal("a's late Unlock removed b's lock")
		}
		if err := b.Unlock(ctx, "y"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("renewed lease", func(t *testing.T) {
		if ok, _ := a.TryLock(ctx, "z"); !ok {
			t.Fatal("a.TryLock failed")
		}
		if err := a.RenewLockLease(ctx, "z", 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		if ttl := m.TTL(a.f.keys.lock("z")); ttl < 9*time.Minute {
			t.Errorf("lease after renewal %s, want about 10m", ttl)
		}
		// A shorter renewal (the keepalive's) does not shorten it.
		if err := a.RenewLockLease(ctx, "z", time.Second); err != nil {
			t.Fatal(err)
		}
		if ttl := m.TTL(a.f.keys.lock("z")); ttl < 9*time.Minute {
			t.Errorf("a shorter renewal cut the lease to %s", ttl)
		}
		m.FastForward(5 * time.Minute)
		if ok, _ := b.TryLock(ctx, "z"); ok {
			t.Fatal("b took a lock whose lease was renewed")
		}
		if err := b.RenewLockLease(ctx, "z", time.Minute); !errors.Is(err, ErrLockNotHeld) {
			t.Errorf("b renewing a's lock: %v, want ErrLockNotHeld", err)
		}
		if err := a.Unlock(ctx, "z"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Lock waits for release", func(t *testing.T) {
		if ok, _ := a.TryLock(ctx, "w"); !ok {
			t.Fatal("a.TryLock failed")
		}
		got := make(chan error, 1)
		go func() { got <- b.Lock(ctx, "w") }()
		waitFor(t, "b to wait", func() bool { return b.lockStatus().Waiting == 1 })
		select {
		case err := <-got:
			t.Fatalf("b.Lock returned %v while a holds the lock", err)
		default:
		}
		if err := a.Unlock(ctx, "w"); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatalf("b.Lock after release: %v", err)
		}
		st := b.lockStatus()
		if st.Waits != 1 || st.Waiting != 0 || st.WaitTime <= 0 || st.Held != 1 {
			t.Errorf("b's lock status %+v, want one finished wait and one lock held", st)
		}
		if err := b.Unlock(ctx, "w"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Lock honours ctx", func(t *testing.T) {
		if ok, _ := a.TryLock(ctx, "c"); !ok {
			t.Fatal("a.TryLock failed")
		}
		cctx, cancel := context.WithCancel(ctx)
		got := make(chan error, 1)
		go func() { got <- b.Lock(cctx, "c") }()
		waitFor(t, "b to wait", func() bool { return b.lockStatus().Waiting == 1 })
		cancel()
		if err := <-got; !errors.Is(err, context.Canceled) {
			t.Fatalf("b.Lock after cancel: %v, want context.Canceled", err)
		}
		if b.lockStatus().Held != 0 {
			t.Error("a cancelled Lock holds the lock")
		}
		if err := a.Unlock(ctx, "c"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("close releases held locks", func(t *testing.T) {
		c := newTestFleet(t, url, "node-c")
		if ok, _ := c.Storage().TryLock(ctx, "held-at-close"); !ok {
			t.Fatal("c.TryLock failed")
		}
		c.Close()
		if m.Exists(a.f.keys.lock("held-at-close")) {
			t.Error("Close left its lock to run out")
		}
		if _, err := c.Storage().TryLock(ctx, "after-close"); err == nil {
			t.Error("TryLock after Close succeeded")
		}
	})
}

// TestLockConcurrency: nodes hammering one lock never overlap.
func TestLockConcurrency(t *testing.T) {
	_, url := startMiniredis(t)
	ctx := context.Background()
	var inside, entered atomic.Int32
	var wg sync.WaitGroup
	for _, node := range []string{"a", "b", "c"} {
		s := newTestFleet(t, url, node).Storage()
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					if err := s.Lock(ctx, "critical"); err != nil {
						t.Error(err)
						return
					}
					if inside.Add(1) != 1 {
						t.Error("two holders inside the critical section")
					}
					entered.Add(1)
					inside.Add(-1)
					if err := s.Unlock(ctx, "critical"); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if n := entered.Load(); n != 30 {
		t.Errorf("%d entries, want 30", n)
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
