package server

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/pqedge/pqedge/internal/heapfloor"
)

// TestHeapFloorFollowsTheConfig: the server hands each committed
// config's limits.heap_floor to the process's keeper, at start and on
// reload, so a floor set or removed by a reload takes effect at once.
func TestHeapFloorFollowsTheConfig(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	runtime.GC()
	k := heapfloor.Start(0)
	defer k.Stop()
	withFloor := func(floor string) string {
		return baseConfig + "[limits]\nheap_floor = \"" + floor + "\"\n" + inspectSite
	}
	dir := t.TempDir()
	srv, err := New(loadConfig(t, dir, withFloor("1GiB")), Options{Logger: testLogger(t), HeapFloor: k})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())
	if p := k.Percent(); p <= 100 {
		t.Fatalf("with heap_floor 1GiB over this test's small heap the GC percentage is %d, want it raised above 100", p)
	}
	if err := srv.Reload(t.Context(), loadConfig(t, dir, withFloor("0"))); err != nil {
		t.Fatal(err)
	}
	if p := k.Percent(); p != 100 {
		t.Errorf("after a reload to heap_floor 0 the GC percentage is %d, want the base 100", p)
	}
}
