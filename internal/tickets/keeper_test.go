package tickets

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestKeeper(t *testing.T, src Source, node string, c *clock) *Keeper {
	t.Helper()
	k, err := NewKeeper(context.Background(), KeeperOptions{Source: src, Node: node, Now: c.now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenScopes(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	k := newTestKeeper(t, &LocalSource{}, "a", c)
	ticket, err := k.Seal("site-a", []byte("session state"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		scope  string
		ticket []byte
		ok     bool
	}{
		{"same scope", "site-a", ticket, true},
		{"other scope", "site-b", ticket, false},
		{"flipped ciphertext bit", "site-a", flip(ticket, len(ticket)-1), false},
		{"flipped header bit (node tag is authenticated)", "site-a", flip(ticket, 6), false},
		{"unknown key ID", "site-a", flip(ticket, 4), false},
		{"wrong version", "site-a", flip(ticket, 0), false},
		{"truncated", "site-a", ticket[:20], false},
		{"empty", "site-a", nil, false},
		{"too long", "site-a", make([]byte, MaxTicketLen+1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, ok := k.Open(tt.scope, tt.ticket)
			if ok != tt.ok {
				t.Fatalf("Open ok = %v, want %v", ok, tt.ok)
			}
			if ok && string(state) != "session state" {
				t.Errorf("opened %q", state)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 1
	return c
}

// TestLocalRotation follows a LocalSource key through its life: it seals
// for LocalRotation, then only opens until LocalKeyLifetime.
func TestLocalRotation(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	k := newTestKeeper(t, &LocalSource{}, "a", c)
	old, _ := k.Seal("s", []byte("x"))
	oldID, _ := k.Describe(old)
	c.add(LocalRotation + time.Minute)
	k.Refresh(context.Background())
	fresh, _ := k.Seal("s", []byte("x"))
	if id, _ := k.Describe(fresh); id == oldID {
		t.Fatalf("still sealing with key %d after its rotation period", id)
	}
	if _, ok := k.Open("s", old); !ok {
		t.Fatal("a ticket of the previous key no longer opens right after rotation")
	}
	c.add(LocalKeyLifetime)
	k.Refresh(context.Background())
	if _, ok := k.Open("s", old); ok {
		t.Fatal("a ticket opened after its key's lifetime")
	}
}

// failingSource fails after its first answer, as a fleet store going down.
type failingSource struct {
	mu   sync.Mutex
	keys []Key
	fail bool
}

func (s *failingSource) Keys(context.Context, time.Time) ([]Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return nil, errors.New("store unreachable")
	}
	return s.keys, nil
}

// TestSourceOutage checks that a failing Source keeps the keys in use, and
// that a Source that never answered still lets tickets be issued.
func TestSourceOutage(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	src := &failingSource{keys: []Key{{ID: 7, EncryptFrom: c.now().Add(-time.Hour), DecryptUntil: c.now().Add(time.Hour)}}}
	var results []RefreshResult
	k, _ := NewKeeper(context.Background(), KeeperOptions{Source: src, Node: "a", Now: c.now, Logger: quiet,
		OnRefresh: func(r RefreshResult) { results = append(results, r) }})
	ticket, _ := k.Seal("s", []byte("x"))
	src.fail = true
	k.Refresh(context.Background())
	if last := results[len(results)-1]; last.Err == nil || last.Sealing != 7 {
		t.Errorf("refresh during the outage = %+v, want an error and key 7 still sealing", last)
	}
	if _, ok := k.Open("s", ticket); !ok {
		t.Error("the outage made an issued ticket unusable")
	}
	again, err := k.Seal("s", []byte("y"))
	if id, _ := k.Describe(again); err != nil || id != 7 {
		t.Errorf("sealing during the outage: key %d, err %v; want key 7", id, err)
	}

	down := &failingSource{fail: true}
	k2 := newTestKeeper(t, down, "b", c)
	tk, err := k2.Seal("s", []byte("z"))
	if err != nil {
		t.Fatalf("a node whose source never answered cannot seal: %v", err)
	}
	if _, ok := k2.Open("s", tk); !ok {
		t.Error("the fallback key's ticket does not open")
	}
}

// TestDescribeOrigin checks the node tag: two nodes with the same keys open
// each other's tickets and tell whose they are.
func TestDescribeOrigin(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	shared := &failingSource{keys: []Key{{ID: 3, EncryptFrom: c.now(), DecryptUntil: c.now().Add(time.Hour)}}}
	a := newTestKeeper(t, shared, "node-a", c)
	b := newTestKeeper(t, shared, "node-b", c)
	ticket, _ := a.Seal("s", []byte("x"))
	if _, ok := b.Open("s", ticket); !ok {
		t.Fatal("node b cannot open node a's ticket with the shared key")
	}
	if id, o := a.Describe(ticket); id != 3 || o != OriginSelf {
		t.Errorf("a.Describe = %d, %q; want 3, self", id, o)
	}
	if _, o := b.Describe(ticket); o != OriginPeer {
		t.Errorf("b.Describe origin = %q, want peer", o)
	}
	if _, o := a.Describe([]byte("not a ticket")); o != OriginNone {
		t.Errorf("Describe of garbage = %q", o)
	}
}

func FuzzOpen(f *testing.F) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	k, _ := NewKeeper(context.Background(), KeeperOptions{Source: &LocalSource{}, Node: "a", Now: c.now, Logger: quiet})
	good, _ := k.Seal("s", []byte("state"))
	f.Add(good)
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, ticket []byte) {
		k.Describe(ticket)
		if state, ok := k.Open("s", ticket); ok && string(state) != "state" {
			t.Fatalf("opened a forged ticket: %q", state)
		}
	})
}
