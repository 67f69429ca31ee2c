package fleet

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/redistest"
	"github.com/pqedge/pqedge/internal/tickets"
)

// Tests against a real redis-server (Debian's 7.0, the protocol Valkey
// speaks): the Lua scripts, WATCH, leases that run on the server's clock,
// and a crash and restart.

func TestStorageRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	testStorageContract(t, newTestFleet(t, srv.URL, "a"))
}

// TestLockLeaseRealRedis: a held lock outlives its lease while the holder
// lives (the keepalive renews it), and frees itself when the holder stops
// renewing (a dead node).
func TestLockLeaseRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	short := func(o *Options) { o.LockTTL = ttl }
	a := newTestFleet(t, srv.URL, "a", short)
	b := newTestFleet(t, srv.URL, "b", short)
	if ok, err := a.Storage().TryLock(ctx, "acme"); !ok || err != nil {
		t.Fatalf("a.TryLock = %v, %v", ok, err)
	}
	key := a.keys.lock("acme")
	first := time.Now()
	// Renewed: three leases later the lock is still a's.
	waitFor(t, "three lease lengths to pass", func() bool { return time.Since(first) > 3*ttl })
	if ok, _ := b.Storage().TryLock(ctx, "acme"); ok {
		t.Fatal("b took a's lock while a was alive: the lease was not renewed")
	}
	if pttl := a.client.PTTL(ctx, key).Val(); pttl <= 0 || pttl > ttl {
		t.Errorf("lease %s, want (0, %s]", pttl, ttl)
	}
	// a dies: its keepalive stops without releasing, as in a crash.
	a.storage.lockMu.Lock()
	h := a.storage.held["acme"]
	delete(a.storage.held, "acme")
	a.storage.lockMu.Unlock()
	close(h.stop)
	<-h.done
	waitFor(t, "the dead holder's lease to run out", func() bool {
		ok, err := b.Storage().TryLock(ctx, "acme")
		return ok && err == nil
	})
	if err := b.Storage().Unlock(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
}

// TestRedisCrash: redis-server is killed mid-run and restarted empty.
// Nothing blocks longer than the caller's ctx, certificates and keys a
// node has stay usable, and the fleet's ticket keys are republished and
// rotate again.
func TestRedisCrash(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := newTestFleet(t, srv.URL, "a", func(o *Options) { o.CacheDir = t.TempDir() })
	b := newTestFleet(t, srv.URL, "b")
	before, err := a.Tickets().Keys(ctx, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Tickets().Keys(ctx, testEpoch); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	due := testEpoch.Add(testEvery + time.Minute)
	for _, n := range []*Fleet{a, b} {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := n.Tickets().Keys(cctx, due)
		cancel()
		if err == nil {
			t.Fatalf("node %s: Keys succeeded with redis-server dead", n.NodeID())
		}
		if n.Status().Reachable {
			t.Errorf("node %s reports the store reachable", n.NodeID())
		}
	}

	srv.Start() // empty: no persistence
	var after []tickets.Key
	waitFor(t, "node a to sync after the restart", func() bool {
		after, err = a.Tickets().Keys(ctx, due)
		return err == nil
	})
	if !containsAll(after, before) || len(after) != len(before)+1 {
		t.Errorf("after the restart node a has keys %v, want %v plus the rotation that waited", ids(after), ids(before))
	}
	var fromB []tickets.Key
	waitFor(t, "node b to converge", func() bool {
		fromB, err = b.Tickets().Keys(ctx, due)
		return err == nil
	})
	if !sameIDs(fromB, after) {
		t.Errorf("node b has keys %v, node a %v", ids(fromB), ids(after))
	}
}

func containsAll(have, want []tickets.Key) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h.ID == w.ID && h.Secret == w.Secret {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// fleetACL is the ACL docs/FLEET.md gives a fleet's user: its own keys,
// and only the commands pqedge sends.
const fleetACL = "on >s3cret-for-tests ~pqedge:* resetchannels -@all +@connection " +
	"+get +set +del +exists +strlen +pttl +pexpire +zadd +zrem +zscore +zrangebylex +zcard +hset +hget +hdel " +
	"+eval +evalsha +watch +unwatch +multi +exec +scan"

// TestACLRealRedis runs the storage contract, locks, ticket keys and
// `fleet check` as an ACL user limited as docs/FLEET.md says, with the
// password from the environment.
func TestACLRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	admin := newTestFleet(t, srv.URL, "admin")
	if err := admin.client.Do(ctx, append([]any{"ACL", "SETUSER", "pqedge"}, toAny(strings.Fields(fleetACL))...)...).Err(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PQEDGE_TEST_ACL_PASSWORD", "s3cret-for-tests")
	pw, err := ReadPassword("", "PQEDGE_TEST_ACL_PASSWORD")
	if err != nil {
		t.Fatal(err)
	}
	u := "unix://pqedge@" + srv.Socket
	f := newTestFleet(t, u, "a", func(o *Options) { o.Password = pw })
	testStorageContract(t, f)
	if ok, err := f.Storage().TryLock(ctx, "l"); !ok || err != nil {
		t.Fatalf("TryLock as the ACL user: %v, %v", ok, err)
	}
	if err := f.Storage().RenewLockLease(ctx, "l", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := f.Storage().Unlock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tickets().Keys(ctx, testEpoch); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tickets().Keys(ctx, testEpoch.Add(testEvery)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Inspect(ctx, testEpoch); err != nil {
		t.Fatal(err)
	}
	// Outside its prefix the user can do nothing.
	other := newTestFleet(t, u, "b", func(o *Options) { o.Password = pw; o.KeyPrefix = "other:" })
	if err := other.Storage().Store(ctx, "a/b", []byte("v")); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("store outside the ACL's key pattern: %v, want NOPERM", err)
	}
	wrong := newTestFleet(t, u, "c", func(o *Options) { o.Password = "wrong" })
	if err := wrong.Ping(ctx); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("wrong password: %v", err)
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
