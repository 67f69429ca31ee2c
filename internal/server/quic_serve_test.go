package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/pqedge/pqedge/internal/h2guard"
	"github.com/pqedge/pqedge/internal/peers"
)

// h3ReadHeaderConfig is h3FloodConfig with timeouts.read_header = 1 s
// (timeouts.idle stays at its 2 minutes).
func h3ReadHeaderConfig(upstream string) string {
	return h3FloodConfig(upstream) + "[timeouts]\nread_header = \"1s\"\n"
}

// resetWith reports whether err is the server's reset of a stream with
// code.
func resetWith(err error, code http3.ErrCode) bool {
	var se *quic.StreamError
	return errors.As(err, &se) && se.Remote && se.ErrorCode == quic.StreamErrorCode(code)
}

// TestHTTP3HeaderBlockDeadline: a request stream whose HEADERS frame is
// not whole within timeouts.read_header is reset with
// H3_REQUEST_INCOMPLETE, and the connection serves on (the budget counts
// it as header_timeouts: TestHTTP3StreamsWithoutRequestAreClosed). Before, such a stream (a 222-byte HEADERS frame
// sent a byte a second in the trial) lived until timeouts.idle, 2
// minutes, and a client could hold 250 of them a connection.
func TestHTTP3HeaderBlockDeadline(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, h3ReadHeaderConfig(up.addr))
	get := h3Frame(0x01, h3Block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/",
		"user-agent", strings.Repeat("x", 150)))
	grease := h3Frame(0x21, []byte("grease")) // a reserved frame type (RFC 9114 section 7.2.8)
	tests := []struct {
		name string
		sent []byte // sent a byte every 100 ms, up to 5 s
	}{
		{"HEADERS trickled", get},
		{"frame header only", get[:2]},
		{"nothing", nil},
		{"reserved frame, then HEADERS trickled", append(append([]byte(nil), grease...), get...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requests := up.requests.Load()
			conn := dialH3(t, ts)
			str, err := conn.OpenStreamSync(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			str.SetWriteDeadline(time.Now().Add(15 * time.Second))
			go func() {
				for i := range min(len(tt.sent), 50) {
					if _, err := str.Write(tt.sent[i : i+1]); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			// A request on the next stream is served meanwhile; it also
			// opens the first on the wire when nothing was sent on it
			// (RFC 9000 section 3.2).
			ok, err := conn.OpenStreamSync(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			ok.Write(h3Frame(0x01, h3Block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/")))
			ok.Close()
			ok.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadAll(ok); err != nil {
				t.Fatalf("a request beside the slow one: %v", err)
			}
			// Well short of timeouts.idle (2 min), well past read_header.
			str.SetReadDeadline(time.Now().Add(15 * time.Second))
			_, err = io.ReadAll(str)
			if !resetWith(err, http3.ErrCodeRequestIncomplete) {
				t.Fatalf("the stream ended with %v, not the server's H3_REQUEST_INCOMPLETE", err)
			}
			if conn.Context().Err() != nil {
				t.Errorf("the connection was closed: %v", context.Cause(conn.Context()))
			}
			if n := up.requests.Load() - requests; n != 1 {
				t.Errorf("the upstream got %d requests, want 1 (the whole one)", n)
			}
		})
	}
}

// TestHTTP3StreamsWithoutRequestAreClosed: streams that never become a
// request, opened as fast as the server hands back stream credit on one
// connection, close it with H3_EXCESSIVE_LOAD once more than the budget
// (limits.h2_resets a window) came, counted by reason; none reaches the
// upstream. Before, ~84,000 such streams a second were taken on one
// connection without end.
func TestHTTP3StreamsWithoutRequestAreClosed(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, h3ReadHeaderConfig(up.addr))
	get := h3Frame(0x01, h3Block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/"))
	bidi := func(one func(*quic.Stream)) func(context.Context, *quic.Conn) error {
		return func(ctx context.Context, conn *quic.Conn) error {
			str, err := conn.OpenStreamSync(ctx)
			if err != nil {
				return err
			}
			one(str)
			str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
			return nil
		}
	}
	uni := func(sent []byte) func(context.Context, *quic.Conn) error {
		return func(ctx context.Context, conn *quic.Conn) error {
			str, err := conn.OpenUniStreamSync(ctx)
			if err != nil {
				return err
			}
			str.Write(sent)
			return str.Close()
		}
	}
	tests := []struct {
		name   string
		reason string
		one    func(context.Context, *quic.Conn) error
	}{
		{"reset before HEADERS", h3AbuseNoRequest, bidi(func(str *quic.Stream) {
			str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
		})},
		{"FIN before HEADERS", h3AbuseNoRequest, bidi(func(str *quic.Stream) { str.Close() })},
		{"half a HEADERS frame, then reset", h3AbuseNoRequest, bidi(func(str *quic.Stream) {
			str.Write(get[:len(get)/2])
			str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
		})},
		{"half a HEADERS frame, then FIN", h3AbuseNoRequest, bidi(func(str *quic.Stream) {
			str.Write(get[:len(get)/2])
			str.Close()
		})},
		{"HEADERS frame never finished", h3AbuseHeaderTimeout, bidi(func(str *quic.Stream) {
			str.Write(get[:len(get)/2])
		})},
		{"reserved unidirectional stream type", h3AbuseUnknownUni, uni(quicvarint.Append(nil, 0x1f*7+0x21))},
		{"unknown unidirectional stream type", h3AbuseUnknownUni, uni([]byte{0x3f})},
		{"unidirectional stream ended before its type", h3AbuseUnknownUni, uni(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counted := ts.metricSum("pqedge_http3_abuse_total", `reason="`+tt.reason+`"`)
			conn := dialH3(t, ts)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n := 0
			for ; n < 20000; n++ {
				if tt.one(ctx, conn) != nil {
					break
				}
			}
			waitFor(t, "the close", func() bool { return conn.Context().Err() != nil })
			if !closedForExcessiveLoad(conn) {
				t.Fatalf("after %d streams the connection ended with %v, not H3_EXCESSIVE_LOAD", n, context.Cause(conn.Context()))
			}
			if n > 2*h2guard.DefaultMaxGlitches+quicMaxStreams {
				t.Errorf("%d streams taken before the close", n)
			}
			waitFor(t, tt.reason+" counted", func() bool {
				return ts.metricSum("pqedge_http3_abuse_total", `reason="`+tt.reason+`"`) > counted
			})
			t.Logf("closed after %d streams", n)
		})
	}
	if n := up.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the upstream", n)
	}
}

// TestHTTP3ReadHeaderSparesClients: with read_header at 1 s, an ordinary
// HTTP/3 client is served as before: requests on one connection with
// pauses longer than read_header between them, and a body upload that
// takes 3 s (within timeouts.request_body and its minimum rate): the
// header deadline ends with the header block.
func TestHTTP3ReadHeaderSparesClients(t *testing.T) {
	var got atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
		io.WriteString(w, strconv.FormatInt(n, 10))
	}))
	t.Cleanup(up.Close)
	ts := startServer(t, h3ReadHeaderConfig(strings.TrimPrefix(up.URL, "http://")))
	c, _ := ts.h3Client()
	c.Timeout = 30 * time.Second
	for i := range 3 {
		if i > 0 {
			time.Sleep(1200 * time.Millisecond) // past read_header, between requests
		}
		resp, err := c.Get(ts.h3URL("https") + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
	}
	const size = 30 * 4096 // over PreReadBody: streamed to the upstream
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte("x"), 4096)
		for range 30 {
			time.Sleep(100 * time.Millisecond)
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, ts.h3URL("https")+"/upload", pr)
	req.ContentLength = size
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("a slow upload: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != strconv.Itoa(size) {
		t.Fatalf("a slow upload: %d %q, want 200 %q", resp.StatusCode, body, strconv.Itoa(size))
	}
	if n := ts.metricSum("pqedge_http3_abuse_total"); n != 0 {
		t.Errorf("pqedge_http3_abuse_total is %v for an ordinary client", n)
	}
}

// TestHTTP3ReadHeaderSparesCurl: curl --http3-only against read_header at
// 1 s: three requests on one connection, then a 120 KiB upload limited
// to 40 KiB/s (3 s, within timeouts.request_body and its minimum rate).
func TestHTTP3ReadHeaderSparesCurl(t *testing.T) {
	trixie := peers.Trixie(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, strconv.FormatInt(n, 10)+"\n")
	}))
	t.Cleanup(up.Close)
	ts := startServer(t, h3ReadHeaderConfig(strings.TrimPrefix(up.URL, "http://")))
	host, inside := trixie.TempDir(t)
	ca, err := os.ReadFile(filepath.Join(ts.dir, "data", "local", "classical-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	const size = 120 << 10
	for name, b := range map[string][]byte{"roots.pem": ca, "body": bytes.Repeat([]byte("x"), size)} {
		if err := os.WriteFile(filepath.Join(host, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, port, _ := net.SplitHostPort(ts.srv.QUICAddr("https").String())
	url := "https://localhost:" + port
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	curl := func(args ...string) string {
		t.Helper()
		args = append([]string{"-sS", "--fail", "--http3-only", "--cacert", inside + "/roots.pem"}, args...)
		out, err := trixie.Command(ctx, "curl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if got := curl(url+"/a", url+"/b", url+"/c"); got != "0\n0\n0\n" {
		t.Errorf("three requests: %q", got)
	}
	if got := curl("--limit-rate", "40k", "--data-binary", "@"+inside+"/body", url+"/upload"); got != strconv.Itoa(size)+"\n" {
		t.Errorf("a slow upload: %q, want %d", got, size)
	}
	if n := ts.metricSum("pqedge_http3_abuse_total"); n != 0 {
		t.Errorf("pqedge_http3_abuse_total is %v for curl", n)
	}
}

// TestHTTP3DrainSendsGoAway: a reload's drain sends the connections of
// the old generation GOAWAY on their control stream (pqedge's loop finds
// the one quic-go opened) in RFC 9114 section 5.2's two steps: the
// largest stream ID first, then, once requests in flight had time to
// arrive, the first request stream not served. A request the client
// sends as the drain begins, before it has read the GOAWAY, is served
// (before: reset with H3_REQUEST_REJECTED, which curl reports as an
// error, and the one GOAWAY named it).
func TestHTTP3DrainSendsGoAway(t *testing.T) {
	up := newCountingUpstream(t)
	cfg := h3FloodConfig(up.addr)
	ts := startServer(t, cfg)
	conn := dialH3(t, ts)
	str, err := conn.OpenStreamSync(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	str.Write(h3Frame(0x01, h3Block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/")))
	str.Close()
	str.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(str); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var ctl *quic.ReceiveStream
	for ctl == nil {
		u, err := conn.AcceptUniStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if u.StreamID() == h3ControlStreamID {
			ctl = u
		}
	}
	ctl.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := quicvarint.NewReader(ctl)
	if typ, err := quicvarint.Read(r); err != nil || typ != 0x00 {
		t.Fatalf("control stream type %d, %v", typ, err)
	}
	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, cfg)); err != nil {
		t.Fatal(err)
	}
	inFlight, err := conn.OpenStreamSync(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	inFlight.Write(h3Frame(0x01, h3Block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/")))
	inFlight.Close()
	inFlight.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(inFlight); err != nil {
		t.Fatalf("a request sent as the drain began: %v", err)
	}
	want := []uint64{1<<62 - 4, 8} // then streams 0 and 4 were served
	for {
		typ, err := quicvarint.Read(r)
		if err != nil {
			t.Fatalf("no GOAWAY: %v", err)
		}
		l, err := quicvarint.Read(r)
		if err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, l)
		if _, err := io.ReadFull(ctl, payload); err != nil {
			t.Fatal(err)
		}
		if typ != 0x07 {
			continue // SETTINGS
		}
		id, _, err := quicvarint.Parse(payload)
		if err != nil || id != want[0] {
			t.Fatalf("GOAWAY %d (%v), want %d", id, err, want[0])
		}
		if want = want[1:]; len(want) == 0 {
			return
		}
	}
}
