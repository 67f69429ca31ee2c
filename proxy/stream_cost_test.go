package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
)

// TestIdleStreamCost opens 500 DoT streams, has each answer one query
// and leaves them open, as DoT clients keep theirs between queries: the
// heap they hold, pqedge's side with the test's client and upstream, is
// under 60 KiB a stream. Each direction's copy buffer was 32 KiB from
// the start (94 KiB a stream here; 10,000 idle streams held 640 MiB of
// buffers); it now starts at 2 KiB and grows when a read fills it
// (31 KiB a stream).
func TestIdleStreamCost(t *testing.T) {
	ln, addr := upstreamListener(t, false)
	serveUpstream(t, ln, 0, nil, dotAnswer)
	sp := newTestStreamProxy(t, addr, StreamOptions{})
	serverTLS, clientTLS := testTLS(t)
	front := serveTLS(t, sp, serverTLS)
	heap := func() int64 {
		// Twice: a sync.Pool's objects (earlier tests' copy buffers)
		// survive one collection in its victim cache, so one GC left
		// them in "before" and the next freed them under "after": a
		// negative difference, once, in a CI run.
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapInuse)
	}
	const n = 500
	before := heap()
	conns := make([]*tls.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := tls.Dial("tcp", front, clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		binary.Write(c, binary.BigEndian, uint16(3))
		c.Write([]byte("abc"))
		var l uint16
		if err := binary.Read(c, binary.BigEndian, &l); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, l)); err != nil {
			t.Fatal(err)
		}
	}
	per := float64(heap()-before) / n / 1024
	t.Logf("%.1f KiB of heap a stream", per)
	if per < 0 {
		t.Fatalf("the heap shrank by %.1f KiB a stream while the streams were opened: something else freed memory meanwhile", -per)
	}
	if per > 60 {
		t.Errorf("%.1f KiB of heap an idle stream, want under 60", per)
	}
}
