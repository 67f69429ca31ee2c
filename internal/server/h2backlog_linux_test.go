package server

import (
	"crypto/tls"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestHTTP2UnreadFloodIsCounted: a client that sends requests as fast as
// the server reads them and reads none of the answers (it asked for an
// 8 MiB download first, with a window to take it whole, into a socket
// receive buffer of 4 KiB, so the server's writes stop) has its
// connection closed and counted, as backlog unless the server's writes
// resumed in time to count the streams it refused. Before, net/http's HTTP/2
// server closed it itself once 10,000 control frames (the streams it
// refused over its limit) waited in its send queue, and nothing counted
// the close: the same close on a loaded machine, where net/http's writes
// lagged its reads, left TestHTTP2FloodsThroughTheServer waiting for the
// abuse counter.
func TestHTTP2UnreadFloodIsCounted(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, floodConfig(up.addr))
	counted, any := ts.metricSum("pqedge_http2_abuse_total", `reason="backlog"`), ts.metricSum("pqedge_http2_abuse_total")
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := tls.DialWithDialer(&d, "tcp", ts.addr("https"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	// A large window and an 8 MiB download first: the server's writes
	// stop in its DATA, with the socket buffers full.
	start := append([]byte(http2.ClientPreface), h2frame(0x4, 0, 0, []byte{0, 4, 0x7f, 0xff, 0xff, 0xff})...)
	start = append(start, h2WindowUpdate(0, 1<<30)...)
	start = append(start, h2frame(0x1, 0x5, 1, h2Block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/big"))...)
	c.Write(start)
	waitFor(t, "the download to start", func() bool { return up.got("/big") == 1 })
	sent, closed := 0, false
	for id := uint32(3); id < 200000; id += 2 {
		if _, err := c.Write(h2frame(0x1, 0x5, id, h2GetBlock)); err != nil {
			closed = true // by the server, under the flood
			break
		}
		sent++
	}
	t.Logf("%d requests sent, %d reached the upstream", sent, up.requests.Load())
	if !closed {
		t.Fatal("the server kept the flood's connection open")
	}
	// Mostly as backlog; as provoked_reset (REFUSED_STREAM past the
	// early ones) when the server's writes got going again first.
	waitFor(t, "the flood counted", func() bool { return ts.metricSum("pqedge_http2_abuse_total") > any })
	t.Logf("counted as backlog: %v", ts.metricSum("pqedge_http2_abuse_total", `reason="backlog"`) > counted)
}
