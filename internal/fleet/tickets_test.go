package fleet

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/tickets"
)

var testEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	testEvery    = 12 * time.Hour
	testLifetime = 7 * 24 * time.Hour
)

// testRotation is the default schedule with deterministic randomness:
// secrets 1, 2, 3... and first ID firstID.
func testRotation(firstID uint32) rotation {
	n := byte(0)
	return rotation{
		every: testEvery, lifetime: testLifetime, node: "test",
		random: func() ([tickets.KeySize]byte, uint32, error) {
			n++
			var s [tickets.KeySize]byte
			s[0] = n
			return s, firstID, nil
		},
	}
}

func TestRotationPlan(t *testing.T) {
	r := testRotation(7)
	fresh, err := r.plan(nil, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		id          uint32
		from, until time.Duration // after testEpoch
	}
	keysOf := func(st *ticketState) []key {
		var out []key
		for _, k := range st.Keys {
			out = append(out, key{k.ID, k.EncryptFrom.Sub(testEpoch), k.DecryptUntil.Sub(testEpoch)})
		}
		return out
	}
	day := 24 * time.Hour
	tests := []struct {
		name    string
		st      *ticketState
		at      time.Duration // after testEpoch
		want    []key         // nil: no change
		wantGen uint64
	}{
		{name: "empty store: one key seals now (a minute early, for clock skew), the next in one interval", st: nil, at: 0,
			want: []key{{7, -time.Minute, 12*time.Hour + 7*day}, {8, 12 * time.Hour, 24*time.Hour + 7*day}}, wantGen: 1},
		{name: "within the interval: nothing to do", st: fresh, at: 11 * time.Hour},
		{name: "next key seals: publish its successor one interval ahead", st: fresh, at: 12*time.Hour + time.Minute,
			want: []key{{7, -time.Minute, 12*time.Hour + 7*day}, {8, 12 * time.Hour, 24*time.Hour + time.Minute + 7*day}, {9, 24*time.Hour + time.Minute, 36*time.Hour + time.Minute + 7*day}}, wantGen: 2},
		{name: "after a 3-day outage: the successor seals one interval after the sync", st: fresh, at: 3 * day,
			want: []key{{7, -time.Minute, 12*time.Hour + 7*day}, {8, 12 * time.Hour, 3*day + 12*time.Hour + 7*day}, {9, 3*day + 12*time.Hour, 3*day + 24*time.Hour + 7*day}}, wantGen: 2},
		{name: "everything expired: start over with fresh IDs", st: fresh, at: 30 * day,
			want: []key{{9, 30*day - time.Minute, 30*day + 12*time.Hour + 7*day}, {10, 30*day + 12*time.Hour, 30*day + 24*time.Hour + 7*day}}, wantGen: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before []byte
			if tt.st != nil {
				before, _ = tt.st.encode()
			}
			got, err := r.plan(tt.st, testEpoch.Add(tt.at))
			if err != nil {
				t.Fatal(err)
			}
			if tt.st != nil {
				if after, _ := tt.st.encode(); !bytes.Equal(before, after) {
					t.Fatal("plan changed its input")
				}
			}
			if tt.want == nil {
				if got != nil {
					t.Fatalf("plan = %v, want no change", keysOf(got))
				}
				return
			}
			if got == nil {
				t.Fatal("plan made no change")
			}
			if !slices.Equal(keysOf(got), tt.want) {
				t.Errorf("keys\n got %v\nwant %v", keysOf(got), tt.want)
			}
			if got.Generation != tt.wantGen {
				t.Errorf("generation %d, want %d", got.Generation, tt.wantGen)
			}
			plain, _ := got.encode()
			if _, err := decodeTicketState(plain); err != nil {
				t.Errorf("plan wrote a state its own decoder refuses: %v", err)
			}
		})
	}
}

func TestRotationSkipsIDsInUse(t *testing.T) {
	r := testRotation(0)
	st, _ := r.plan(nil, testEpoch)
	st.NextID = st.Keys[0].ID // as after a wrap-around of the counter
	next, err := r.plan(st, testEpoch.Add(testEvery))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[uint32]bool{}
	for _, k := range next.Keys {
		if ids[k.ID] {
			t.Fatalf("ID %d used twice: %+v", k.ID, next.Keys)
		}
		ids[k.ID] = true
	}
}

// TestFleetTicketKeys runs three nodes over one store through two weeks
// of rotations, syncing in turn as their Keepers would, and checks what a
// fleet promises: at every moment all nodes seal with the same key, a key
// was known to every node for at least one interval before any sealed
// with it, tickets open until their lifetime ends, IDs never repeat, and
// only one node writes each rotation.
func TestFleetTicketKeys(t *testing.T) {
	_, url := startMiniredis(t)
	ctx := context.Background()
	var nodes []*Fleet
	for _, n := range []string{"a", "b", "c"} {
		nodes = append(nodes, newTestFleet(t, url, n, func(o *Options) { o.CacheDir = t.TempDir() }))
	}
	seen := map[uint32]time.Time{}         // key ID -> when a node first got it
	sealedWith := map[uint32][]time.Time{} // key ID -> when a node sealed with it
	secretOf := map[uint32][tickets.KeySize]byte{}
	refresh := 10 * time.Minute
	for step := 0; step < 14*24*6; step++ {
		now := testEpoch.Add(time.Duration(step) * refresh)
		var held [][]tickets.Key
		for i, n := range nodes {
			at := now.Add(time.Duration(i) * time.Minute) // nodes refresh out of step
			keys, err := n.Tickets().Keys(ctx, at)
			if err != nil {
				t.Fatalf("node %s at %s: %v", n.NodeID(), at, err)
			}
			held = append(held, keys)
			seal := sealingKey(t, keys, at)
			sealedWith[seal.ID] = append(sealedWith[seal.ID], at)
			for _, k := range keys {
				if _, ok := seen[k.ID]; !ok {
					seen[k.ID] = at
				}
				if s, ok := secretOf[k.ID]; ok && s != k.Secret {
					t.Fatalf("key ID %d has two secrets", k.ID)
				}
				secretOf[k.ID] = k.Secret
			}
			// Every ticket sealed in the last lifetime still opens.
			for id, times := range sealedWith {
				if at.Sub(times[len(times)-1]) >= testLifetime-refresh {
					continue
				}
				if !slices.ContainsFunc(keys, func(k tickets.Key) bool { return k.ID == id }) {
					t.Fatalf("at %s node %s dropped key %d, which sealed a ticket at %s", at, n.NodeID(), id, times[len(times)-1])
				}
			}
		}
		// Whatever moment within this round a handshake lands, every
		// node's keys pick the same sealing key: even a node that synced
		// before a rotation boundary already holds the key sealing after
		// it.
		last := now.Add(time.Duration(len(nodes)-1) * time.Minute)
		want := sealingKey(t, held[len(held)-1], last).ID
		for i, keys := range held {
			if got := sealingKey(t, keys, last).ID; got != want {
				t.Fatalf("at %s node %s seals with key %d, node %s with %d", last, nodes[i].NodeID(), got, nodes[len(nodes)-1].NodeID(), want)
			}
		}
	}
	for id, times := range sealedWith {
		if lead := times[0].Sub(seen[id]); lead < testEvery-refresh && !seen[id].Equal(testEpoch) {
			t.Errorf("key %d sealed %s after the fleet first saw it, want about one interval (%s)", id, lead, testEvery)
		}
	}
	var rotations, keys uint64
	for _, n := range nodes {
		rotations += n.Status().Tickets.Rotations
	}
	keys = uint64(len(seen))
	if rotations != keys-1 { // the first state made two keys at once
		t.Errorf("%d rotations written for %d keys: more than one node rotated", rotations, keys)
	}
	if st := nodes[0].Status().Tickets; st.Keys > int((testLifetime+2*testEvery)/testEvery)+1 {
		t.Errorf("node holds %d keys: old ones are not dropped", st.Keys)
	}
}

// sealingKey returns the key the Keeper would seal with at now: the one
// with the latest EncryptFrom not after now.
func sealingKey(t testing.TB, keys []tickets.Key, now time.Time) tickets.Key {
	t.Helper()
	var best *tickets.Key
	for i, k := range keys {
		if !k.EncryptFrom.After(now) && (best == nil || k.EncryptFrom.After(best.EncryptFrom)) {
			best = &keys[i]
		}
		if !k.DecryptUntil.After(now) {
			t.Fatalf("Keys returned expired key %d", k.ID)
		}
	}
	if best == nil {
		t.Fatal("no key seals now")
	}
	return *best
}

// TestRotationRace: nodes whose rotation falls due at the same moment
// write one new state between them.
func TestRotationRace(t *testing.T) {
	_, url := startMiniredis(t)
	ctx := context.Background()
	var nodes []*Fleet
	for _, n := range []string{"a", "b", "c", "d"} {
		nodes = append(nodes, newTestFleet(t, url, n))
	}
	if _, err := nodes[0].Tickets().Keys(ctx, testEpoch); err != nil {
		t.Fatal(err)
	}
	due := testEpoch.Add(testEvery + time.Second)
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := n.Tickets().Keys(ctx, due); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var total uint64
	for _, n := range nodes {
		total += n.Status().Tickets.Rotations
	}
	if total != 2 { // node a's first state, and one rotation
		t.Fatalf("%d states written, want 2 (one rotation)", total)
	}
	for _, n := range nodes {
		if _, err := n.Tickets().Keys(ctx, due); err != nil {
			t.Fatal(err)
		}
		if g := n.Status().Tickets.Generation; g != 2 {
			t.Errorf("node %s at generation %d after its next sync, want 2", n.NodeID(), g)
		}
	}
}

// TestTicketOutage: the store goes away and comes back empty (a restart
// without persistence). Keys fails fast while it is gone and the rotation
// due meanwhile waits; a node started during the outage serves from its
// cache and says so; when the store is back the fleet republishes what it
// knew, so tickets issued before still open, and converges.
func TestTicketOutage(t *testing.T) {
	m, url := startMiniredis(t)
	ctx := context.Background()
	cacheA := t.TempDir()
	a := newTestFleet(t, url, "a", func(o *Options) { o.CacheDir = cacheA })
	before, err := a.Tickets().Keys(ctx, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(cacheFile(cacheA))
	if err != nil {
		t.Fatalf("no cache after a sync: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cache mode %04o, want 0600", fi.Mode().Perm())
	}

	m.Close()
	due := testEpoch.Add(testEvery + time.Hour)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.Tickets().Keys(cctx, due); err == nil {
		t.Fatal("Keys succeeded with the store down")
	}
	if st := a.Status(); st.Reachable || st.Tickets.LastError == "" || st.Tickets.Generation != 1 {
		t.Errorf("status during the outage: %+v", st)
	}

	// A node restarting during the outage, with a's cache (same data_dir).
	restarted := newTestFleet(t, url, "a", func(o *Options) { o.CacheDir = cacheA })
	got, err := restarted.Tickets().Keys(ctx, due)
	if err != nil {
		t.Fatalf("restart during the outage: %v", err)
	}
	if !sameIDs(got, before) {
		t.Errorf("cached keys %v, want %v", ids(got), ids(before))
	}
	if st := restarted.Status().Tickets; !st.FromCache || st.CacheWritten.IsZero() {
		t.Errorf("status of a node started from its cache: %+v", st)
	}
	// A new node without a cache has nothing to serve.
	if _, err := newTestFleet(t, url, "new", func(o *Options) { o.CacheDir = t.TempDir() }).Tickets().Keys(ctx, due); err == nil ||
		!strings.Contains(err.Error(), "no local ticket-key cache") {
		t.Errorf("node with no cache during an outage: %v", err)
	}

	// The store comes back empty.
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	m.FlushAll()
	var after []tickets.Key
	waitFor(t, "node a to sync again", func() bool {
		after, err = a.Tickets().Keys(ctx, due)
		return err == nil
	})
	for _, k := range before {
		if !slices.ContainsFunc(after, func(x tickets.Key) bool { return x.ID == k.ID && x.Secret == k.Secret }) {
			t.Errorf("key %d from before the outage is gone: tickets it sealed no longer resume", k.ID)
		}
	}
	if len(after) != len(before)+1 {
		t.Errorf("after the outage %d keys, want %d (the waiting rotation done)", len(after), len(before)+1)
	}
	var r2 []tickets.Key
	waitFor(t, "the restarted node to sync", func() bool {
		r2, err = restarted.Tickets().Keys(ctx, due)
		return err == nil && !restarted.Status().Tickets.FromCache
	})
	if !sameIDs(r2, after) || restarted.Status().Tickets.FromCache {
		t.Errorf("restarted node did not converge: %v vs %v", ids(r2), ids(after))
	}
}

func TestTicketWrongKey(t *testing.T) {
	_, url := startMiniredis(t)
	ctx := context.Background()
	if _, err := newTestFleet(t, url, "a").Tickets().Keys(ctx, testEpoch); err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateKey()
	b := newTestFleet(t, url, "b", func(o *Options) { o.Key = other })
	_, err := b.Tickets().Keys(ctx, testEpoch)
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("node with another key file: %v, want ErrWrongKey", err)
	}
}

// TestStoreHoldsNoPlaintext scans every value in the store after ACME
// storage and ticket keys were written: no PEM private key, no ticket
// secret.
func TestStoreHoldsNoPlaintext(t *testing.T) {
	m, url := startMiniredis(t)
	ctx := context.Background()
	f := newTestFleet(t, url, "a")
	pemKey := "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n"
	if err := f.Storage().Store(ctx, "certificates/ca/a.example/a.example.key", []byte(pemKey)); err != nil {
		t.Fatal(err)
	}
	keys, err := f.Tickets().Keys(ctx, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range m.Keys() {
		var v []byte
		switch m.Type(k) {
		case "string":
			s, _ := m.Get(k)
			v = []byte(s)
		case "zset":
			members, _ := m.ZMembers(k)
			v = []byte(strings.Join(members, "\n"))
		}
		if bytes.Contains(v, []byte("PRIVATE KEY")) || bytes.Contains(v, []byte("MHcCAQEE")) {
			t.Errorf("%s holds a plaintext private key", k)
		}
		for _, tk := range keys {
			if bytes.Contains(v, tk.Secret[:]) {
				t.Errorf("%s holds ticket key %d in plaintext", k, tk.ID)
			}
		}
	}
}

func ids(keys []tickets.Key) []uint32 {
	var out []uint32
	for _, k := range keys {
		out = append(out, k.ID)
	}
	slices.Sort(out)
	return out
}

func sameIDs(a, b []tickets.Key) bool { return slices.Equal(ids(a), ids(b)) }

func TestCacheFileIsTheStoredValue(t *testing.T) {
	m, url := startMiniredis(t)
	dir := t.TempDir()
	f := newTestFleet(t, url, "a", func(o *Options) { o.CacheDir = dir })
	if _, err := f.Tickets().Keys(context.Background(), testEpoch); err != nil {
		t.Fatal(err)
	}
	stored, _ := m.Get(f.keys.tickets())
	cached, err := os.ReadFile(filepath.Join(dir, "tickets.sealed"))
	if err != nil || string(cached) != stored {
		t.Fatalf("cache differs from the store's value (err %v)", err)
	}
}

// TestTicketStoreRollback: a store restored from an old backup holds an
// older state than the nodes; the first node to sync republishes its own
// instead of dropping keys that sealed live tickets.
func TestTicketStoreRollback(t *testing.T) {
	m, url := startMiniredis(t)
	ctx := context.Background()
	a := newTestFleet(t, url, "a")
	if _, err := a.Tickets().Keys(ctx, testEpoch); err != nil {
		t.Fatal(err)
	}
	backup, _ := m.Get(a.keys.tickets())
	later := testEpoch.Add(testEvery + time.Minute)
	current, err := a.Tickets().Keys(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	m.Set(a.keys.tickets(), backup)
	got, err := a.Tickets().Keys(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	if !sameIDs(got, current) {
		t.Errorf("after the rollback node a has keys %v, want %v", ids(got), ids(current))
	}
	b := newTestFleet(t, url, "b")
	fromB, err := b.Tickets().Keys(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	if !sameIDs(fromB, current) || b.Status().Tickets.Generation <= 2 {
		t.Errorf("node b sees keys %v generation %d, want %v after 2", ids(fromB), b.Status().Tickets.Generation, ids(current))
	}
}

// TestFirstKeysWait: a node that finds another writing the fleet's first
// ticket keys waits for them instead of failing (which would make its
// Keeper seal with a key of its own until its next refresh); if the
// writer never finishes, the wait ends with the caller's ctx.
func TestFirstKeysWait(t *testing.T) {
	t.Run("writer finishes", func(t *testing.T) {
		m, url := startMiniredis(t)
		waiter, writer := newTestFleet(t, url, "b"), newTestFleet(t, url, "c")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// c takes the rotation lock, as a node about to write the first
		// state.
		if ok, err := writer.Storage().TryLock(ctx, rotateLock); err != nil || !ok {
			t.Fatalf("TryLock = %v, %v", ok, err)
		}
		type result struct {
			keys []tickets.Key
			err  error
		}
		done := make(chan result, 1)
		base := m.CommandCount()
		go func() {
			keys, err := waiter.Tickets().Keys(ctx, testEpoch)
			done <- result{keys, err}
		}()
		// b's connection setup, GET of the state, SET NX of the lock, then
		// a GET of its polling: b is waiting.
		for m.CommandCount() < base+4 {
			if ctx.Err() != nil {
				t.Fatal("node b never polled the store")
			}
			time.Sleep(5 * time.Millisecond)
		}
		// c writes the first state under its lock, as rotate does.
		st, err := writer.Tickets().rot.plan(nil, testEpoch)
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := st.encode()
		sealed, err := writer.opts.Key.Seal(ticketsAD, plain)
		if err != nil {
			t.Fatal(err)
		}
		if err := writer.client.Set(ctx, writer.keys.tickets(), sealed, 0).Err(); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil {
			t.Fatalf("waiting node: %v", r.err)
		}
		want, _, _ := st.usable(testEpoch)
		if !slices.EqualFunc(r.keys, want, func(a, b tickets.Key) bool { return a.ID == b.ID && a.Secret == b.Secret }) {
			t.Errorf("waiting node got keys %v, node c wrote %v", ids(r.keys), ids(want))
		}
		if n := waiter.Status().Tickets.Rotations; n != 0 {
			t.Errorf("waiting node wrote %d states, want 0", n)
		}
	})
	t.Run("writer never finishes", func(t *testing.T) {
		_, url := startMiniredis(t)
		waiter, holder := newTestFleet(t, url, "b"), newTestFleet(t, url, "c")
		ctx := context.Background()
		if ok, err := holder.Storage().TryLock(ctx, rotateLock); err != nil || !ok {
			t.Fatalf("TryLock = %v, %v", ok, err)
		}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := waiter.Tickets().Keys(short, testEpoch)
		if err == nil || !strings.Contains(err.Error(), "has not finished") || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Keys = %v, want the writer named and the deadline", err)
		}
	})
}

// TestFirstKeySealsForLateClocks: a node that asks for keys with a time a
// little before the writer's (its clock is behind, or it read its clock
// before the first state reached the store, as nodes starting together
// do) still gets a key that seals, the writer's, instead of none.
func TestFirstKeySealsForLateClocks(t *testing.T) {
	_, url := startMiniredis(t)
	writer, late := newTestFleet(t, url, "a"), newTestFleet(t, url, "b")
	ctx := context.Background()
	want, err := writer.Tickets().Keys(ctx, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	for _, behind := range []time.Duration{time.Millisecond, 5 * time.Second, 50 * time.Second} {
		if _, err := late.Tickets().Keys(ctx, testEpoch.Add(-behind)); err != nil {
			t.Fatalf("a node %s behind the writer: %v", behind, err)
		}
		if got := late.Status().Tickets.SealingKeyID; got != want[0].ID {
			t.Errorf("a node %s behind the writer seals with key %d, want %d", behind, got, want[0].ID)
		}
	}
}
