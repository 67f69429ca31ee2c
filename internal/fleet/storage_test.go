package fleet

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStorageMiniredis(t *testing.T) {
	_, url := startMiniredis(t)
	testStorageContract(t, newTestFleet(t, url, "a"))
}

// testStorageContract checks certmagic's Storage contract (storage.go in
// certmagic: fs.ErrNotExist, directory semantics of List, Stat, Exists and
// Delete, overwrite, context) on an empty store.
func testStorageContract(t *testing.T, f *Fleet) {
	ctx := context.Background()
	s := f.Storage()
	files := map[string]string{
		"certificates/ca/a.example/a.example.crt":  "CERT A",
		"certificates/ca/a.example/a.example.key":  "-----BEGIN EC PRIVATE KEY-----",
		"certificates/ca/a.example/a.example.json": "{}",
		"certificates/ca/b.example/b.example.crt":  "CERT B",
		"certificates/cab/x":                       "not under certificates/ca",
		"acme/ca/users/ops@a.example/ops.key":      "ACCOUNT KEY",
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := s.Load(ctx, "nope/x"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load of a missing key: %v, want fs.ErrNotExist", err)
		}
		if _, err := s.Stat(ctx, "nope/x"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat of a missing key: %v, want fs.ErrNotExist", err)
		}
		if _, err := s.List(ctx, "nope", true); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("List of a missing dir: %v, want fs.ErrNotExist", err)
		}
		if s.Exists(ctx, "nope") {
			t.Error("Exists of a missing key is true")
		}
		if err := s.Delete(ctx, "nope/x"); err != nil {
			t.Errorf("Delete of a missing key: %v, want nil", err)
		}
	})
	for k, v := range files {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("load", func(t *testing.T) {
		for k, v := range files {
			got, err := s.Load(ctx, k)
			if err != nil || string(got) != v {
				t.Errorf("Load(%q) = %q, %v; want %q", k, got, err, v)
			}
		}
	})
	t.Run("overwrite", func(t *testing.T) {
		k := "certificates/ca/b.example/b.example.crt"
		if err := s.Store(ctx, k, []byte("CERT B2")); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Load(ctx, k); string(got) != "CERT B2" {
			t.Errorf("after overwrite Load = %q", got)
		}
		files[k] = "CERT B2"
	})
	t.Run("stat", func(t *testing.T) {
		k := "certificates/ca/a.example/a.example.key"
		info, err := s.Stat(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if !info.IsTerminal || info.Key != k || info.Size != int64(len(files[k])) || time.Since(info.Modified) > time.Minute || info.Modified.After(time.Now()) {
			t.Errorf("Stat(file) = %+v", info)
		}
		info, err = s.Stat(ctx, "certificates/ca")
		if err != nil || info.IsTerminal || info.Key != "certificates/ca" {
			t.Errorf("Stat(dir) = %+v, %v", info, err)
		}
	})
	t.Run("exists", func(t *testing.T) {
		for k, want := range map[string]bool{
			"certificates":                            true,
			"certificates/ca/a.example":               true,
			"certificates/ca/a.example/a.example.crt": true,
			"certificates/ca/a.example/a.example":     false, // a prefix of a name, not of a path
			"certificates/c":                          false,
		} {
			if got := s.Exists(ctx, k); got != want {
				t.Errorf("Exists(%q) = %v, want %v", k, got, want)
			}
		}
	})
	t.Run("list", func(t *testing.T) {
		tests := []struct {
			dir       string
			recursive bool
			want      []string
		}{
			{"certificates", false, []string{"certificates/ca", "certificates/cab"}},
			{"certificates/ca", false, []string{"certificates/ca/a.example", "certificates/ca/b.example"}},
			{"certificates/ca", true, []string{
				"certificates/ca/a.example", "certificates/ca/a.example/a.example.crt", "certificates/ca/a.example/a.example.json",
				"certificates/ca/a.example/a.example.key", "certificates/ca/b.example", "certificates/ca/b.example/b.example.crt"}},
			{"", false, []string{"acme", "certificates"}},
		}
		for _, tt := range tests {
			got, err := s.List(ctx, tt.dir, tt.recursive)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("List(%q, %v) = %q, %v\nwant %q", tt.dir, tt.recursive, got, err, tt.want)
			}
		}
	})
	t.Run("delete dir", func(t *testing.T) {
		if err := s.Delete(ctx, "certificates/ca/a.example"); err != nil {
			t.Fatal(err)
		}
		if s.Exists(ctx, "certificates/ca/a.example") {
			t.Error("deleted dir still exists")
		}
		if _, err := s.Load(ctx, "certificates/ca/a.example/a.example.key"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load under a deleted dir: %v", err)
		}
		if _, err := s.Load(ctx, "certificates/ca/b.example/b.example.crt"); err != nil {
			t.Errorf("sibling of a deleted dir: %v", err)
		}
		if err := s.Delete(ctx, "certificates/ca"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(ctx, "certificates/cab/x"); err != nil {
			t.Errorf("Delete(certificates/ca) took certificates/cab: %v", err)
		}
		if err := s.Delete(ctx, "certificates/ca"); err != nil {
			t.Errorf("second Delete: %v", err)
		}
	})
	t.Run("bad keys", func(t *testing.T) {
		for _, k := range []string{"", "/a", "a/"} {
			if err := s.Store(ctx, k, nil); err == nil {
				t.Errorf("Store(%q) accepted", k)
			}
			if _, err := s.Load(ctx, k); err == nil || errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Load(%q) = %v, want a bad-key error", k, err)
			}
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Load(cctx, "acme/ca/users/ops@a.example/ops.key"); !errors.Is(err, context.Canceled) {
			t.Errorf("Load with a cancelled ctx: %v, want context.Canceled", err)
		}
		if err := s.Store(cctx, "k", []byte("v")); err == nil {
			t.Error("Store with a cancelled ctx succeeded")
		}
	})
	t.Run("sealed", func(t *testing.T) {
		raw, err := f.client.Get(ctx, f.keys.acmeValue("acme/ca/users/ops@a.example/ops.key")).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "ACCOUNT KEY") {
			t.Fatal("the store holds the value in plaintext")
		}
		// A value copied under another key does not open there.
		if err := f.client.Set(ctx, f.keys.acmeValue("certificates/cab/x"), raw, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(ctx, "certificates/cab/x"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Load of a moved value: %v, want ErrCorrupt", err)
		}
	})
}

// TestStorageOutage: with the store gone, calls fail with an error that
// is not fs.ErrNotExist (which certmagic would take as "issue a new
// certificate"), and Status says the store is unreachable.
func TestStorageOutage(t *testing.T) {
	m, url := startMiniredis(t)
	f := newTestFleet(t, url, "a")
	ctx := context.Background()
	err := f.Storage().Store(ctx, "a/b", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); !st.Reachable || st.LastContact.IsZero() {
		t.Fatalf("status after a store call: %+v", st)
	}
	m.Close()
	for name, call := range map[string]func() error{
		"load":  func() error { _, err := f.Storage().Load(ctx, "a/b"); return err },
		"stat":  func() error { _, err := f.Storage().Stat(ctx, "a/b"); return err },
		"list":  func() error { _, err := f.Storage().List(ctx, "a", true); return err },
		"store": func() error { return f.Storage().Store(ctx, "a/c", []byte("v")) },
		"lock":  func() error { return f.Storage().Lock(ctx, "x") },
	} {
		if err := call(); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s during an outage: %v, want a store error", name, err)
		}
	}
	st := f.Status()
	if st.Reachable || st.LastError == "" || st.Failures == 0 {
		t.Errorf("status during an outage: %+v", st)
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	// go-redis probes a server it saw refuse connections once a second;
	// calls fail fast until the probe succeeds.
	var got []byte
	waitFor(t, "the store to answer again", func() bool {
		got, err = f.Storage().Load(ctx, "a/b")
		return err == nil
	})
	if string(got) != "v" {
		t.Fatalf("after restart Load = %q", got)
	}
	if !f.Status().Reachable {
		t.Error("status still unreachable after a successful call")
	}
}
