package proxy

import "testing"

// TestBufferPool: the pool lends full-size buffers, takes back its own
// without allocating, and ignores buffers of another size.
func TestBufferPool(t *testing.T) {
	p := newBufferPool()
	b := p.Get()
	if len(b) != copyBufferSize || cap(b) != copyBufferSize {
		t.Fatalf("Get returned len %d cap %d, want %d", len(b), cap(b), copyBufferSize)
	}
	p.Put(b)
	p.Put(make([]byte, 512))   // not one of ours: dropped
	p.Put(b[:10])              // one of ours, resliced: its capacity tells
	p.Put(make([]byte, 0, 64)) // dropped
	for range 3 {
		if got := p.Get(); len(got) != copyBufferSize {
			t.Fatalf("Get returned %d bytes after foreign Puts", len(got))
		}
	}
	if raceDetector {
		return
	}
	if n := testing.AllocsPerRun(100, func() { p.Put(p.Get()) }); n != 0 {
		t.Errorf("a Get and Put allocate %v times", n)
	}
}
