package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pqedge/pqedge/internal/h2guard"
)

// countingUpstream counts the requests it gets, in all and by path; /big
// answers 8 MiB, /early answers at once without reading the request body,
// anything else "ok".
type countingUpstream struct {
	requests atomic.Int64
	addr     string

	mu     sync.Mutex
	byPath map[string]int64
}

// got is how many requests for path the upstream has had: a test that
// gives each case its own path is not misled by a case before it whose
// requests were still on their way upstream.
func (u *countingUpstream) got(path string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.byPath[path]
}

const bigBody = 8 << 20

func newCountingUpstream(t *testing.T) *countingUpstream {
	u := &countingUpstream{byPath: map[string]int64{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		u.mu.Lock()
		u.byPath[r.URL.Path]++
		u.mu.Unlock()
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(bigBody))
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for range bigBody / len(chunk) {
				w.Write(chunk)
			}
		case "/early":
			io.WriteString(w, "early")
		default:
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(srv.Close)
	u.addr = strings.TrimPrefix(srv.URL, "http://")
	return u
}

// floodH2 opens an HTTP/2 connection to addr, sends the client preface, a
// SETTINGS frame and frames(id) for each odd stream id below maxID as fast
// as the server reads them, and fails t unless the server closes the
// connection within d.
func floodH2(t *testing.T, addr string, roots *x509.CertPool, maxID uint32, d time.Duration, frames func(id uint32) []byte) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	closed := make(chan struct{})
	go func() { io.Copy(io.Discard, c); close(closed) }()
	c.SetWriteDeadline(time.Now().Add(d))
	c.Write(append([]byte(http2.ClientPreface), h2frame(0x4, 0, 0, nil)...))
	for id := uint32(1); id < maxID; id += 2 {
		if _, err := c.Write(frames(id)); err != nil {
			break
		}
	}
	select {
	case <-closed:
	case <-time.After(d):
		t.Fatal("the server kept the flood's connection open")
	}
}

// floodConfig is one site proxying everything to upstream with pqedge's
// default limits.
func floodConfig(upstream string) string {
	return baseConfig + `
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["` + upstream + `"]
`
}

func h2Literal(name, value string) []byte {
	return append(append(append([]byte{0x00, byte(len(name))}, name...), byte(len(value))), value...)
}

// h2Block is a request header block in HPACK, each field a literal
// without indexing with a new name (RFC 7541 Section 6.2.2).
func h2Block(fields ...string) []byte {
	var b []byte
	for i := 0; i < len(fields); i += 2 {
		b = append(b, h2Literal(fields[i], fields[i+1])...)
	}
	return b
}

// h2Trickled is a request's HEADERS frame (END_STREAM) and its header
// block sent a byte a frame, the rest in CONTINUATIONs.
func h2Trickled(id uint32, block []byte) []byte {
	out := h2frame(0x1, 0x1, id, block[:1])
	for i := 1; i < len(block); i++ {
		flags := byte(0)
		if i == len(block)-1 {
			flags = 0x4 // END_HEADERS
		}
		out = append(out, h2frame(0x9, flags, id, block[i:i+1])...)
	}
	return out
}

func h2WindowUpdate(stream, inc uint32) []byte {
	return h2frame(0x8, 0, stream, binary.BigEndian.AppendUint32(nil, inc))
}

// TestHTTP2FloodsThroughTheServer: one raw HTTP/2 connection per flood
// kind of issue 12 kind 7 that Go's server neither closes nor counts,
// through the real server with its default limits: the connection is
// closed, the reason counted, and the upstream reached a bounded number of
// times.
func TestHTTP2FloodsThroughTheServer(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, floodConfig(up.addr))
	addr, roots := ts.addr("https"), ts.roots()
	zero8 := make([]byte, 8)
	tests := []struct {
		name   string
		frames func(id uint32) []byte // one round, with a new client stream ID
		reason string
	}{
		{"request header block a byte a frame", func(id uint32) []byte { return h2Trickled(id, h2GetBlock) }, "empty_frames"},
		{"PING", func(uint32) []byte { return h2frame(0x6, 0, 0, zero8) }, "control_frames"},
		{"SETTINGS", func(uint32) []byte { return h2frame(0x4, 0, 0, []byte{0, 3, 0, 0, 0, 100}) }, "control_frames"},
		{"PRIORITY", func(id uint32) []byte { return h2frame(0x2, 0, id, []byte{0, 0, 0, 0, 15}) }, "control_frames"},
		{"PRIORITY_UPDATE", func(id uint32) []byte {
			return h2frame(0x10, 0, 0, append(binary.BigEndian.AppendUint32(nil, id), "u=0"...))
		}, "control_frames"},
		{"WINDOW_UPDATE", func(uint32) []byte { return h2WindowUpdate(0, 1) }, "control_frames"},
		{"unknown type", func(uint32) []byte { return h2frame(0xee, 0, 0, zero8) }, "control_frames"},
		{"WINDOW_UPDATE of 0 on an open stream", func(id uint32) []byte {
			return append(h2frame(0x1, 0x4, id, h2GetBlock), h2WindowUpdate(id, 0)...)
		}, "provoked_reset"},
		{"DATA after END_STREAM", func(id uint32) []byte {
			return append(h2frame(0x1, 0x5, id, h2GetBlock), h2frame(0x0, 0x1, id, []byte("x"))...)
		}, "provoked_reset"},
		{"invalid pseudo-header", func(id uint32) []byte {
			return h2frame(0x1, 0x5, id, append(append([]byte(nil), h2GetBlock...), h2Literal(":evil", "1")...))
		}, "provoked_reset"},
		{"connection-specific field", func(id uint32) []byte {
			return h2frame(0x1, 0x5, id, append(append([]byte(nil), h2GetBlock...), h2Literal("transfer-encoding", "chunked")...))
		}, "provoked_reset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, backlog := `reason="`+tt.reason+`"`, `reason="backlog"`
			before, counted := up.requests.Load(), ts.metricSum("pqedge_http2_abuse_total")
			ours, lagged := ts.metricSum("pqedge_http2_abuse_total", reason), ts.metricSum("pqedge_http2_abuse_total", backlog)
			floodH2(t, addr, roots, 100000, 20*time.Second, tt.frames)
			waitFor(t, "the abuse counted", func() bool { return ts.metricSum("pqedge_http2_abuse_total") > counted })
			// The sum first, then the reason's: floodH2 returned once
			// closed, and the counter follows at once (OnAbuse). A
			// server whose writes lag its reads (a loaded machine)
			// may find the answers it owes piling up (backlog) before
			// it wrote the resets that would have counted.
			switch {
			case ts.metricSum("pqedge_http2_abuse_total", reason) > ours:
			case ts.metricSum("pqedge_http2_abuse_total", backlog) > lagged:
				t.Logf("closed for its backlog of answers before %s", tt.reason)
			default:
				t.Errorf("closed for another reason than %s: %v of it, %v of any", tt.reason, ts.metricSum("pqedge_http2_abuse_total", reason), ts.metricSum("pqedge_http2_abuse_total"))
			}
			// The default budget is 200 resets a window, and net/http
			// runs at most 250 handlers at once: beyond that, nothing
			// reaches the upstream.
			n := up.requests.Load() - before
			if n > 450 {
				t.Errorf("%d flood requests reached the upstream", n)
			}
			t.Logf("%d flood requests reached the upstream", n)
		})
	}
}

// TestHTTP2HeavyClientNotClosed: a legitimate client that works the
// connection hard stays within the default budgets: hundreds of requests
// each reprioritised (Firefox's PRIORITY, Chrome's PRIORITY_UPDATE), an
// 8 MiB download over a 16 KiB stream window with credit returned for
// every DATA frame (two WINDOW_UPDATEs each) and a PING every eight, a
// request body the upstream answers before reading it (net/http resets
// with NO_ERROR, RFC 9113 Section 8.1), a few cancelled requests, SETTINGS
// changes and PINGs.
func TestHTTP2HeavyClientNotClosed(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, floodConfig(up.addr))
	_, fr := dialH2(t, ts, 60*time.Second)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 16 << 10})
	fr.WriteWindowUpdate(0, 1<<20)

	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	nextID := uint32(1)
	request := func(method, path string, fields ...string) uint32 {
		hbuf.Reset()
		all := append([]string{":method", method, ":scheme", "https", ":authority", "localhost", ":path", path}, fields...)
		for i := 0; i < len(all); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: all[i], Value: all[i+1]})
		}
		id := nextID
		nextID += 2
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndStream: method == "GET", EndHeaders: true}); err != nil {
			t.Fatalf("request %d: %v", id, err)
		}
		return id
	}
	dataFrames := 0
	// await reads frames, answering as a browser does, until every stream
	// in open has ended (END_STREAM or RST_STREAM).
	await := func(open map[uint32]bool) {
		t.Helper()
		for len(open) > 0 {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("the connection failed with %d streams open: %v (abuse counted: %v)", len(open), err, ts.metricSum("pqedge_http2_abuse_total"))
			}
			switch f := f.(type) {
			case *http2.DataFrame:
				if n := uint32(len(f.Data())); n > 0 {
					dataFrames++
					fr.WriteWindowUpdate(f.StreamID, n)
					fr.WriteWindowUpdate(0, n)
					if dataFrames%8 == 0 {
						fr.WritePing(false, [8]byte{byte(dataFrames)})
					}
				}
				if f.StreamEnded() {
					delete(open, f.StreamID)
				}
			case *http2.HeadersFrame:
				if f.StreamEnded() {
					delete(open, f.StreamID)
				}
			case *http2.RSTStreamFrame:
				delete(open, f.StreamID)
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.GoAwayFrame:
				t.Fatalf("GOAWAY %v", f.ErrCode)
			}
		}
	}

	// The download first, while few streams have added to the allowance:
	// its WINDOW_UPDATEs and PINGs alone are more than the base budget.
	await(map[uint32]bool{request("GET", "/big"): true})
	if dataFrames < bigBody/(16<<10) {
		t.Fatalf("the download came in %d DATA frames, want at least %d", dataFrames, bigBody/(16<<10))
	}
	for round := range 6 {
		open := map[uint32]bool{}
		for range 100 {
			id := request("GET", "/page/"+strconv.Itoa(round))
			fr.WritePriority(id, http2.PriorityParam{StreamDep: 0, Weight: 41})
			fr.WriteRawFrame(0x10, 0, 0, append(binary.BigEndian.AppendUint32(nil, id), "u=2, i"...))
			open[id] = true
		}
		await(open)
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 16 << 10})
		fr.WritePing(false, [8]byte{9})
	}

	id := request("POST", "/early", "content-length", strconv.Itoa(1<<20))
	fr.WriteData(id, false, make([]byte, 16<<10))
	await(map[uint32]bool{id: true})

	for range 20 { // navigations away: requests cancelled at once
		id := request("GET", "/cancelled")
		fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	await(map[uint32]bool{request("GET", "/last"): true})
	if n := ts.metricSum("pqedge_http2_abuse_total"); n != 0 {
		t.Errorf("a heavy but legitimate client was counted as abuse %v times", n)
	}
}

// TestHTTP2GoClientLargeDownload: Go's own HTTP/2 client (net/http)
// downloads 8 MiB through the proxy, reading it 4 KiB at a time as a
// bufio.Reader does. It takes DATA frames as large as the proxy writes
// them (it allows 1 MiB) and sends a stream and a connection
// WINDOW_UPDATE for every 4 KiB read: far more than 4 per DATA frame.
// It is not closed.
func TestHTTP2GoClientLargeDownload(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, floodConfig(up.addr))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	for i := range 2 { // twice on one connection: the second within the same window
		resp, err := c.Get("https://" + ts.addr("https") + "/big")
		if err != nil {
			t.Fatalf("download %d: %v (abuse counted: %v)", i, err, ts.metricSum("pqedge_http2_abuse_total"))
		}
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{resp.Body}, make([]byte, 4<<10))
		resp.Body.Close()
		if err != nil || n != bigBody || resp.ProtoMajor != 2 {
			t.Fatalf("download %d: %d of %d bytes over %s, %v (abuse counted: %v)", i, n, bigBody, resp.Proto, err, ts.metricSum("pqedge_http2_abuse_total"))
		}
	}
	if n := ts.metricSum("pqedge_http2_abuse_total"); n != 0 {
		t.Errorf("Go's HTTP/2 client was counted as abuse %v times", n)
	}
}

// TestHTTP2ChecksOff: limits.h2_resets = 0 turns the control-frame budget
// off with the reset budget, so 3,000 PINGs (three times the budget) leave
// the connection serving.
func TestHTTP2ChecksOff(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, strings.Replace(floodConfig(up.addr), "[[site]]", "[limits]\nh2_resets = 0\n[[site]]", 1))
	_, fr := dialH2(t, ts, 30*time.Second)
	fr.WriteSettings()
	go func() {
		for i := range 3000 {
			fr.WritePing(false, [8]byte{byte(i)})
		}
		var hbuf bytes.Buffer
		enc := hpack.NewEncoder(&hbuf)
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/after-pings"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
	}()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("the connection failed before the response: %v (abuse counted: %v)", err, ts.metricSum("pqedge_http2_abuse_total"))
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 && d.StreamEnded() {
			break
		}
		if h, ok := f.(*http2.HeadersFrame); ok && h.StreamID == 1 && h.StreamEnded() {
			break
		}
	}
}

// TestHTTP2RefusedRequestFlood: valid requests that pqedge answers itself
// with an error (no upstream involved), sent by a client that keeps within
// the stream limit and reads every response, so no reset or stream limit
// ever closes it: each costs pqedge a handler, a response and a log line
// for one HEADERS frame. The connection is closed after the budget
// (limits.h2_resets per window), counted as refused_requests, and none
// reaches the upstream.
func TestHTTP2RefusedRequestFlood(t *testing.T) {
	up := newCountingUpstream(t)
	// Only /app/ has a route: anything else is pqedge's own 404.
	ts := startServer(t, strings.Replace(floodConfig(up.addr), `path = "/"`, `path = "/app/"`, 1))
	tests := []struct {
		name   string
		fields []string
		status string
	}{
		{"no route", []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/nowhere"}, "404"},
		{"CONNECT", []string{":method", "CONNECT", ":authority", "localhost:443"}, "405"},
		{"TRACE", []string{":method", "TRACE", ":scheme", "https", ":authority", "localhost", ":path", "/"}, "405"},
		{"path escaping the root", []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/a/../../etc/passwd"}, "400"},
		{"encoded slash", []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/app/a%2fb"}, "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counted := ts.metricSum("pqedge_http2_abuse_total", `reason="refused_requests"`)
			answered, err := paceRequests(t, ts, h2Block(tt.fields...), tt.status, 5000)
			if err == nil {
				t.Fatalf("the connection served %d refused requests and stayed open", answered)
			}
			t.Logf("closed after %d answers: %v", answered, err)
			waitFor(t, "the abuse counted", func() bool {
				return ts.metricSum("pqedge_http2_abuse_total", `reason="refused_requests"`) > counted
			})
			if answered > 2*h2guard.DefaultMaxGlitches {
				t.Errorf("%d refused requests answered before the close", answered)
			}
			if n := up.requests.Load(); n != 0 {
				t.Errorf("%d requests reached the upstream", n)
			}
		})
	}
}

// dialH2 opens an HTTP/2 connection to ts's https listener, closed when
// the test ends, with its client preface sent and every read and write
// due within timeout; the caller sends its SETTINGS.
func dialH2(t *testing.T, ts *testServer, timeout time.Duration) (*tls.Conn, *http2.Framer) {
	t.Helper()
	c, err := tls.Dial("tcp", ts.addr("https"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(timeout))
	io.WriteString(c, http2.ClientPreface)
	return c, http2.NewFramer(c, c)
}

// paceRequests sends n requests with header block block on one HTTP/2
// connection, at most 100 in flight, reading every response, which must
// have status want; it returns how many were answered and the error that
// ended the connection, or nil if all were.
func paceRequests(t *testing.T, ts *testServer, block []byte, want string, n int) (int, error) {
	t.Helper()
	c, fr := dialH2(t, ts, 60*time.Second)
	defer c.Close() // callers pace several connections in turn
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	nextID, inFlight, answered := uint32(1), 0, 0
	for answered < n {
		for ; inFlight < 100 && int(nextID/2) < n; inFlight++ {
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: nextID, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
				return answered, err
			}
			nextID += 2
		}
		f, err := fr.ReadFrame()
		if err != nil {
			return answered, err
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if got := f.PseudoValue("status"); got != want {
				t.Fatalf("answered %s, want %s", got, want)
			}
			if f.StreamEnded() {
				inFlight--
				answered++
			}
		case *http2.DataFrame:
			if n := uint32(len(f.Data())); n > 0 {
				fr.WriteWindowUpdate(0, n) // the stream ends with it
			}
			if f.StreamEnded() {
				inFlight--
				answered++
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			return answered, fmt.Errorf("GOAWAY %v", f.ErrCode)
		}
	}
	return answered, nil
}
