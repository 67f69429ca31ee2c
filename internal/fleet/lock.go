package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lock waiting: Lock polls a taken lock, starting at lockPollMin and
// doubling up to lockPollMax, with jitter so waiting nodes do not poll in
// step. certmagic locks cover minutes of ACME work, so a second of extra
// latency after a release costs nothing.
const (
	lockPollMin = 50 * time.Millisecond
	lockPollMax = time.Second
)

// releaseTimeout bounds the best-effort release of held locks in close.
const releaseTimeout = 2 * time.Second

// ErrLockNotHeld is returned by Unlock and RenewLockLease for a lock this
// node does not hold (never taken, already released, or its lease ran out
// and another node took it).
var ErrLockNotHeld = errors.New("lock not held by this node")

// heldLock is a lock this node holds: its token and the keepalive that
// renews its lease.
type heldLock struct {
	token string
	stop  chan struct{} // closed to stop the keepalive
	done  chan struct{} // closed when the keepalive has stopped
}

// unlockScript deletes the lock only if it still holds our token, so a
// node whose lease ran out cannot release the lock another node has since
// taken.
var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
`)

// extendScript extends the lease to ARGV[2] ms if the lock still holds
// our token, and never shortens it (a RenewLockLease for a long ACME retry
// must survive the next short keepalive). It returns 1 if the lock is
// ours.
var extendScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
	return 0
end
if redis.call("PTTL", KEYS[1]) < tonumber(ARGV[2]) then
	redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 1
`)

// Lock takes the fleet-wide lock name, waiting (with backoff) while
// another node or goroutine holds it, until ctx ends. A lock whose holder
// died frees itself when its lease (Options.LockTTL) runs out; a live
// holder's lease is renewed in the background until Unlock. If the store
// fails, Lock returns the error instead of waiting out the outage.
func (s *Storage) Lock(ctx context.Context, name string) error {
	start := time.Now()
	poll := s.pollMin
	waited := false
	defer func() {
		if waited {
			s.lockMu.Lock()
			s.waiting--
			s.waitTime += time.Since(start)
			s.lockMu.Unlock()
		}
	}()
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if !waited {
			waited = true
			s.lockMu.Lock()
			s.waits++
			s.waiting++
			s.lockMu.Unlock()
		}
		t := time.NewTimer(poll/2 + mrand.N(poll/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("gave up waiting for fleet lock %q: %w", name, ctx.Err())
		case <-t.C:
		}
		poll = min(2*poll, s.pollMax)
	}
}

// TryLock takes the lock name if it is free (SET NX PX with a random
// token) and reports whether it did.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.lockMu.Lock()
	closed := s.closed
	s.lockMu.Unlock()
	if closed {
		return false, errors.New("fleet store is closed")
	}
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return false, err
	}
	// The node id makes `redis-cli GET PREFIXlock:NAME` say who holds it.
	token := s.f.opts.NodeID + "/" + hex.EncodeToString(rnd[:])
	key := s.f.keys.lock(name)
	ok, err := s.f.client.SetNX(ctx, key, token, s.f.opts.LockTTL).Result()
	if err = s.f.observe(err); err != nil {
		return false, fmt.Errorf("failed to take fleet lock %q: %w", name, err)
	}
	if !ok {
		return false, nil
	}
	h := &heldLock{token: token, stop: make(chan struct{}), done: make(chan struct{})}
	s.lockMu.Lock()
	if s.closed {
		s.lockMu.Unlock()
		_ = unlockScript.Run(context.WithoutCancel(ctx), s.f.client, []string{key}, token).Err()
		return false, errors.New("fleet store is closed")
	}
	s.held[name] = h
	s.wg.Add(1)
	s.lockMu.Unlock()
	go s.keepalive(name, h)
	return true, nil
}

// keepalive renews a held lock's lease every third of LockTTL, so a slow
// ACME order keeps its lock while a dead node's lock runs out. It stops
// at Unlock, at close, or when the lock turns out to be lost.
func (s *Storage) keepalive(name string, h *heldLock) {
	defer s.wg.Done()
	defer close(h.done)
	ttl := s.f.opts.LockTTL
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
		ours, err := s.extend(ctx, name, h.token, ttl)
		cancel()
		switch {
		case err != nil:
			// The lease may still be running; try again next tick.
			s.f.log.Warn("failed to renew fleet lock lease", "lock", name, "err", err)
		case !ours:
			s.f.log.Error("fleet lock lease ran out while held; another node may be doing the same work", "lock", name)
			s.lockMu.Lock()
			s.lost++
			s.lockMu.Unlock()
			return
		}
	}
}

func (s *Storage) extend(ctx context.Context, name, token string, d time.Duration) (bool, error) {
	n, err := extendScript.Run(ctx, s.f.client, []string{s.f.keys.lock(name)}, token, d.Milliseconds()).Int()
	if err = s.f.observe(err); err != nil {
		return false, err
	}
	return n == 1, nil
}

// Unlock releases the lock name if this node still holds it
// (compare-and-delete). It returns ErrLockNotHeld (wrapped) if the lock
// was not held or its lease ran out and another node took it.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.lockMu.Lock()
	h, ok := s.held[name]
	delete(s.held, name)
	s.lockMu.Unlock()
	if !ok {
		return fmt.Errorf("failed to release fleet lock %q: %w", name, ErrLockNotHeld)
	}
	close(h.stop)
	<-h.done
	n, err := unlockScript.Run(ctx, s.f.client, []string{s.f.keys.lock(name)}, h.token).Int()
	if err = s.f.observe(err); err != nil {
		// The lease runs out by itself within LockTTL.
		return fmt.Errorf("failed to release fleet lock %q (it frees itself within %s): %w", name, s.f.opts.LockTTL, err)
	}
	if n == 0 {
		return fmt.Errorf("failed to release fleet lock %q: its lease ran out while held: %w", name, ErrLockNotHeld)
	}
	return nil
}

// RenewLockLease extends a held lock's lease to at least d from now;
// certmagic calls it before each retry of a long ACME order.
func (s *Storage) RenewLockLease(ctx context.Context, name string, d time.Duration) error {
	s.lockMu.Lock()
	h, ok := s.held[name]
	s.lockMu.Unlock()
	if !ok {
		return fmt.Errorf("failed to renew fleet lock %q: %w", name, ErrLockNotHeld)
	}
	ours, err := s.extend(ctx, name, h.token, d)
	if err != nil {
		return fmt.Errorf("failed to renew fleet lock %q: %w", name, err)
	}
	if !ours {
		return fmt.Errorf("failed to renew fleet lock %q: its lease ran out: %w", name, ErrLockNotHeld)
	}
	return nil
}

// close stops every keepalive and releases the locks still held, so other
// nodes need not wait for the leases to run out.
func (s *Storage) close() {
	s.lockMu.Lock()
	s.closed = true
	held := s.held
	s.held = map[string]*heldLock{}
	s.lockMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	for name, h := range held {
		close(h.stop)
		_ = unlockScript.Run(ctx, s.f.client, []string{s.f.keys.lock(name)}, h.token).Err()
	}
	s.wg.Wait()
}

// LockStatus describes this node's use of fleet locks.
type LockStatus struct {
	Held     int           // locks held now
	Waiting  int           // Lock calls waiting now
	Waits    uint64        // Lock calls that found the lock taken, since start
	WaitTime time.Duration // total time those calls waited
	Lost     uint64        // leases that ran out while held (a stalled node or a store outage)
}

func (s *Storage) lockStatus() LockStatus {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	return LockStatus{Held: len(s.held), Waiting: s.waiting, Waits: s.waits, WaitTime: s.waitTime, Lost: s.lost}
}
