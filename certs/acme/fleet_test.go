package acme

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"github.com/pqedge/pqedge/internal/fleet"
)

// newFleetStorage returns a node's view of a fleet store on m.
func newFleetStorage(t *testing.T, m *miniredis.Miniredis, node string) *fleet.Storage {
	t.Helper()
	return newFleetNode(t, m.Addr(), node).Storage()
}

// newFleetNode returns a node of a fleet whose store is at addr.
func newFleetNode(t *testing.T, addr, node string) *fleet.Fleet {
	t.Helper()
	u, err := fleet.ParseStoreURL("redis://" + addr + "/0")
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
	return f
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

// TestFleetLocalCache: a node that restarts while the store is down serves
// the certificate it had from its sealed local cache.
func TestFleetLocalCache(t *testing.T) {
	store := miniredis.RunT(t)
	site := newTestSite(t)
	ca := startPebble(t, pebbleConfig{httpPort: site.httpPort(), tlsPort: site.tlsPort()})
	cacheDir := t.TempDir()
	withFleet := func(f *fleet.Fleet) func(*Options) {
		return func(o *Options) {
			local, err := f.LocalCache(cacheDir)
			if err != nil {
				t.Fatal(err)
			}
			o.Storage, o.LocalCache, o.DataDir = f.Storage(), local, ""
			o.TLSALPNChallenge = false
		}
	}
	first, _ := newTestManager(t, ca, site, withFleet(newFleetNode(t, store.Addr(), "a")))
	site.serve(t, first)
	manage(t, first, "cached.pqedge.test")
	want := first.Expiry()[0].Serial
	first.Close()

	addr := store.Addr()
	store.Close()
	restarted, events := newTestManager(t, ca, site, withFleet(newFleetNode(t, addr, "a")))
	manage(t, restarted, "cached.pqedge.test")
	if got := restarted.Expiry(); len(got) != 1 || got[0].Serial != want {
		t.Errorf("restarted node serves %+v, want serial %s from its local cache", got, want)
	}
	if n := len(events.all()); n != 0 {
		t.Errorf("restarted node had events %v", events.all())
	}
	err := filepath.WalkDir(cacheDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if bytes.Contains(data, []byte("PRIVATE KEY")) || bytes.Contains(data, []byte("BEGIN CERTIFICATE")) {
			t.Errorf("%s holds plaintext PEM", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
