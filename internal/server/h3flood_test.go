package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/pqedge/pqedge/internal/h2guard"
)

// h3Block is a QPACK field section of fields (name, value pairs), with
// static-table references or literals only (no dynamic table).
func h3Block(fields ...string) []byte {
	var b bytes.Buffer
	enc := qpack.NewEncoder(&b)
	for i := 0; i < len(fields); i += 2 {
		enc.WriteField(qpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return b.Bytes()
}

// dialH3 opens a QUIC connection to ts's https listener's HTTP/3 side,
// closed when the test ends, with its control stream and SETTINGS sent
// (RFC 9114 section 6.2.1).
func dialH3(t *testing.T, ts *testServer) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, ts.srv.QUICAddr("https").String(), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"h3"}}, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	ctl, err := conn.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	ctl.Write(append([]byte{0x00}, h3Frame(0x04, nil)...))
	return conn
}

// h3FloodConfig is floodConfig with HTTP/3 on the listener.
func h3FloodConfig(upstream string) string {
	return strings.Replace(floodConfig(upstream), `address = "127.0.0.1:0"`, "address = \"127.0.0.1:0\"\nhttp3 = true", 1)
}

// closedForExcessiveLoad reports whether conn was closed by the server
// with H3_EXCESSIVE_LOAD (RFC 9114 section 8.1).
func closedForExcessiveLoad(conn *quic.Conn) bool {
	var appErr *quic.ApplicationError
	return errors.As(context.Cause(conn.Context()), &appErr) && appErr.Remote && appErr.ErrorCode == quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad)
}

// TestHTTP3RapidResetIsClosed: HTTP/3's rapid reset, a request stream
// opened, its HEADERS sent and the response stopped (STOP_SENDING) at
// once, as fast as quic-go hands back stream credit, over one connection.
// Before the budget one connection sent ~28,000 such requests in 5 s,
// ~13,000 of them reached the upstream, and it stayed open. Now it is
// closed with H3_EXCESSIVE_LOAD, counted as cancelled_requests, and at
// most the budget plus the streams in flight reach the upstream.
func TestHTTP3RapidResetIsClosed(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, h3FloodConfig(up.addr))
	get := h3Frame(0x01, h3Block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/"))
	tests := []struct {
		name string
		one  func(str *quic.Stream)
	}{
		{"HEADERS, FIN, STOP_SENDING", func(str *quic.Stream) {
			str.Write(get)
			str.Close()
			str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
		}},
		{"HEADERS, STOP_SENDING, no FIN", func(str *quic.Stream) {
			str.Write(get)
			str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
		}},
		{"HEADERS and DATA, FIN, STOP_SENDING with H3_NO_ERROR", func(str *quic.Stream) {
			str.Write(append(append([]byte(nil), get...), h3Frame(0x00, []byte("x"))...))
			str.Close()
			str.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.requests.Load()
			counted := ts.metricSum("pqedge_http3_abuse_total", `reason="cancelled_requests"`)
			conn := dialH3(t, ts)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			n := 0
			for ; ; n++ {
				str, err := conn.OpenStreamSync(ctx)
				if err != nil {
					break
				}
				tt.one(str)
			}
			// Opening fails as the CONNECTION_CLOSE arrives, a moment
			// before the connection's context ends.
			waitFor(t, "the close", func() bool { return conn.Context().Err() != nil })
			if !closedForExcessiveLoad(conn) {
				t.Fatalf("after %d requests the connection ended with %v, not H3_EXCESSIVE_LOAD", n, context.Cause(conn.Context()))
			}
			waitFor(t, "the abuse counted", func() bool {
				return ts.metricSum("pqedge_http3_abuse_total", `reason="cancelled_requests"`) > counted
			})
			// The budget, plus quicMaxStreams handlers in flight.
			reached := up.requests.Load() - before
			if reached > h2guard.DefaultMaxGlitches+quicMaxStreams {
				t.Errorf("%d of %d cancelled requests reached the upstream", reached, n)
			}
			t.Logf("closed after %d requests, %d reached the upstream", n, reached)
		})
	}
}

// TestHTTP3RefusedRequestFlood: requests pqedge answers itself with an
// error (no route, refused method or path), each read to its end, one
// after the other on one connection: closed with H3_EXCESSIVE_LOAD after
// the budget, as over HTTP/2, and none reaches the upstream. Before, a
// connection was answered without end.
func TestHTTP3RefusedRequestFlood(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, strings.Replace(h3FloodConfig(up.addr), `path = "/"`, `path = "/app/"`, 1))
	tests := []struct {
		name   string
		fields []string
	}{
		{"no route", []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/nowhere"}},
		{"TRACE", []string{":method", "TRACE", ":scheme", "https", ":authority", "localhost", ":path", "/app/"}},
		{"encoded slash", []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/app/a%2fb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counted := ts.metricSum("pqedge_http3_abuse_total", `reason="refused_requests"`)
			conn := dialH3(t, ts)
			req := h3Frame(0x01, h3Block(tt.fields...))
			answered := 0
			for ; answered < 5000; answered++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				str, err := conn.OpenStreamSync(ctx)
				cancel()
				if err != nil {
					break
				}
				str.Write(req)
				str.Close()
				str.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadAll(str); err != nil {
					break
				}
			}
			waitFor(t, "the close", func() bool { return conn.Context().Err() != nil })
			if !closedForExcessiveLoad(conn) {
				t.Fatalf("after %d answers the connection ended with %v, not H3_EXCESSIVE_LOAD", answered, context.Cause(conn.Context()))
			}
			waitFor(t, "the abuse counted", func() bool {
				return ts.metricSum("pqedge_http3_abuse_total", `reason="refused_requests"`) > counted
			})
			if answered > h2guard.DefaultMaxGlitches+1 {
				t.Errorf("%d refused requests answered before the close", answered)
			}
			if n := up.requests.Load(); n != 0 {
				t.Errorf("%d requests reached the upstream", n)
			}
		})
	}
}

// TestHTTP3CancellingClientNotClosed: a client that cancels fewer
// requests than the budget in a window (a browser leaving a page) and
// then asks again is served: the budget is not a cap on requests.
func TestHTTP3CancellingClientNotClosed(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, h3FloodConfig(up.addr))
	conn := dialH3(t, ts)
	get := h3Frame(0x01, h3Block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range h2guard.DefaultMaxGlitches / 2 {
		str, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		str.Write(get)
		str.Close()
		str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
	}
	for i := range 500 {
		str, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		str.Write(get)
		str.Close()
		str.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(str); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if n := ts.metricSum("pqedge_http3_abuse_total"); n != 0 {
		t.Errorf("pqedge_http3_abuse_total = %v", n)
	}
}
