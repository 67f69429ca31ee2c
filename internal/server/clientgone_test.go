package server

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// TestClientLeavesMidBody: a client that abandons its request halfway
// through a 100,000-byte body, once the upstream has it, is logged 499
// and counted a client error over every protocol: HTTP/1.1 closes the
// connection, HTTP/2 resets the stream (RST_STREAM CANCEL), HTTP/3 resets
// the request stream (RESET_STREAM H3_REQUEST_CANCELLED). Before, the
// HTTP/3 one was logged 400 as a malformed body (quic-go cancels the
// request's context only on STOP_SENDING), and counted in the
// connection's budget of refused requests.
func TestClientLeavesMidBody(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, h3FloodConfig(up.addr))
	half := strings.Repeat("x", 1000)
	tests := []struct {
		proto string
		// send sends a POST to path with content-length 100000 and
		// 1,000 bytes of it; the returned func abandons it.
		send func(t *testing.T, path string) (abandon func())
	}{
		{"HTTP/1.1", func(t *testing.T, path string) func() {
			c, err := tls.Dial("tcp", ts.addr("https"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n%s", path, half)
			return func() { c.Close() }
		}},
		{"HTTP/2", func(t *testing.T, path string) func() {
			_, fr := dialH2(t, ts, 20*time.Second)
			fr.WriteSettings()
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
				BlockFragment: h2Block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", path, "content-length", "100000")})
			fr.WriteData(1, false, []byte(half))
			return func() { fr.WriteRSTStream(1, 0x8) } // CANCEL
		}},
		{"HTTP/3", func(t *testing.T, path string) func() {
			conn := dialH3(t, ts)
			str, err := conn.OpenStreamSync(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			str.Write(h3Frame(0x01, h3Block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", path, "content-length", "100000")))
			str.Write(h3Frame(0x00, []byte(half)))
			return func() { str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled)) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.proto, func(t *testing.T) {
			code := func(c string) float64 {
				return ts.metricSum("pqedge_http_requests_total", `site="local"`, `code="`+c+`"`)
			}
			gone, bad, clientErrs := code("499"), code("400"), ts.metricSum("pqedge_client_errors_total", `site="local"`)
			path := "/gone-" + strings.ReplaceAll(tt.proto, "/", "")
			abandon := tt.send(t, path)
			waitFor(t, "the upstream to get the request", func() bool { return up.got(path) == 1 })
			abandon()
			waitFor(t, "the request logged", func() bool { return code("499") > gone || code("400") > bad })
			if code("499") != gone+1 || code("400") != bad {
				t.Errorf("499: %v more, 400: %v more; want one 499", code("499")-gone, code("400")-bad)
			}
			if n := ts.metricSum("pqedge_client_errors_total", `site="local"`) - clientErrs; n != 1 {
				t.Errorf("%v client errors counted, want 1", n)
			}
		})
	}
}
