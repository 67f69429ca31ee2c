package fleet

import (
	"bytes"
	"io"
	"log/slog"
	"testing"

	"github.com/alicebob/miniredis/v2"
)

// testKeyBytes is the fleet key of every test node (and of testdata).
var testKeyBytes = bytes.Repeat([]byte{0x42}, KeySize)

func testKey(t testing.TB) *Key {
	t.Helper()
	k, err := NewKey(testKeyBytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestFleet makes a node of a fleet whose store is at url. mod changes
// its options before New.
func newTestFleet(t testing.TB, url, node string, mod ...func(*Options)) *Fleet {
	t.Helper()
	u, err := ParseStoreURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Store:  u,
		Key:    testKey(t),
		NodeID: node,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range mod {
		m(&opts)
	}
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.storage.pollMin, f.storage.pollMax = 5e6, 20e6 // 5 ms, 20 ms
	t.Cleanup(func() { f.Close() })
	return f
}

// startMiniredis runs an in-process miniredis until the test ends.
func startMiniredis(t testing.TB) (*miniredis.Miniredis, string) {
	t.Helper()
	m := miniredis.RunT(t)
	return m, "redis://" + m.Addr() + "/0"
}
