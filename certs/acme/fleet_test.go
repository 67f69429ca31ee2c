package acme

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"github.com/pqedge/pqedge/internal/fleet"
)

// newFleetStorage returns a node's view of a fleet store on m.
func newFleetStorage(t *testing.T, m *miniredis.Miniredis, node string) *fleet.Storage {
	t.Helper()
	u, err := fleet.ParseStoreURL("redis://" + m.Addr() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := fleet.New(fleet.Options{
		Store: u, Key: fleetKey(t), NodeID: node,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f.Storage()
}

// fleetKey is the encryption key every node of the test fleet shares.
func fleetKey(t *testing.T) *fleet.Key {
	k, err := fleet.NewKey(make([]byte, fleet.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestFleetStorage: nodes sharing a fleet store. A node orders a
// certificate while the CA's validation is answered by another node (the
// one serving the site), through the challenge data in the shared
// storage; nodes starting at once order a certificate once between them,
// and all serve it.
func TestFleetStorage(t *testing.T) {
	store := miniredis.RunT(t)
	site := newTestSite(t)
	ca := startPebble(t, pebbleConfig{httpPort: site.httpPort(), tlsPort: site.tlsPort()})
	nodes := map[string]*Manager{}
	logs := map[string]*eventLog{}
	for _, n := range []string{"a", "b", "c"} {
		st := newFleetStorage(t, store, n)
		nodes[n], logs[n] = newTestManager(t, ca, site, func(o *Options) {
			o.Storage = st
			o.DataDir = "" // unused with Storage
			o.TLSALPNChallenge = false
		})
	}
	// Node b is the one the CA reaches; node a orders.
	site.serve(t, nodes["b"])

	t.Run("challenge answered by another node", func(t *testing.T) {
		manage(t, nodes["a"], "cross.pqedge.test")
		if site.httpHits.Load() == 0 {
			t.Fatal("the CA's HTTP-01 request was not answered by node b's handler")
		}
		if logs["a"].count(EventObtained) != 1 {
			t.Fatalf("node a events %v, want one obtained", logs["a"].all())
		}
		manage(t, nodes["b"], "cross.pqedge.test")
		if n := len(logs["b"].all()); n != 0 {
			t.Errorf("node b had %d events loading a certificate node a ordered: %v", n, logs["b"].all())
		}
		leaf := site.handshake(t, ca, "cross.pqedge.test") // served by b
		if want := nodes["a"].Expiry()[0].Serial; leaf.SerialNumber.Text(16) != want {
			t.Errorf("node b serves serial %x, node a ordered %s", leaf.SerialNumber, want)
		}
	})

	t.Run("ordered once by nodes starting together", func(t *testing.T) {
		for _, l := range logs {
			l.mu.Lock()
			l.events = nil
			l.mu.Unlock()
		}
		var wg sync.WaitGroup
		for _, m := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), manageTimeout)
				defer cancel()
				if err := m.Manage(ctx, []string{"once.pqedge.test"}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		total := 0
		for _, l := range logs {
			total += l.count(EventObtained)
		}
		if total != 1 {
			t.Errorf("%d certificates obtained by three nodes, want 1", total)
		}
		serial := ""
		for n, m := range nodes {
			exp := m.Expiry()
			var got string
			for _, e := range exp {
				if e.Names[0] == "once.pqedge.test" {
					got = e.Serial
				}
			}
			if serial == "" {
				serial = got
			}
			if got == "" || got != serial {
				t.Errorf("node %s serves serial %q, want %q", n, got, serial)
			}
		}
	})
}
