package server

import (
	"runtime"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

// TestHTTP3WaitingStreamsCost: 4 connections of 250 request streams
// each, every stream sent a HEADERS frame's length (60 KiB) and 100
// bytes of it, the rest never: what they hold while they wait for
// read_header is in proportion to what was sent, and all of it,
// goroutines included, is released when the connections close (a Peek
// returns with the connection's error). Before, each stream allocated
// the announced 60 KiB at once: the heap grew by ~70 MiB (client and
// server both in this process), now by ~15 MiB.
func TestHTTP3WaitingStreamsCost(t *testing.T) {
	const conns, streams = 4, quicMaxStreams
	up := newCountingUpstream(t)
	ts := startServer(t, h3FloodConfig(up.addr)) // read_header 10 s
	base := runtime.NumGoroutine()
	var before, waiting runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var cs []*quic.Conn
	for range conns {
		conn := dialH3(t, ts)
		cs = append(cs, conn)
		for range streams {
			str, err := conn.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			str.Write(quicvarint.Append(quicvarint.Append(nil, h3FrameHeaders), 60<<10))
			str.Write(make([]byte, 100))
		}
	}
	waitFor(t, "the streams to wait for their HEADERS", func() bool {
		return runtime.NumGoroutine() >= base+conns*streams
	})
	runtime.GC()
	runtime.ReadMemStats(&waiting)
	grown := int64(waiting.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d streams waiting: %d goroutines, heap in use +%d KiB", conns*streams, runtime.NumGoroutine()-base, grown>>10)
	if limit := int64(conns * streams * 32 << 10); grown > limit {
		t.Errorf("heap in use grew by %d KiB for %d streams sent 103 bytes each, want under %d KiB", grown>>10, conns*streams, limit>>10)
	}
	for _, c := range cs {
		c.CloseWithError(0, "")
	}
	waitFor(t, "the waiting streams' goroutines to end", func() bool { return runtime.NumGoroutine() <= base+5 })
}
