package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// h3SlowConfig is an HTTP/3 listener in front of up (whose /slow waits for
// the test) with a drain deadline of shutdown; extra goes into [[site]].
func h3SlowConfig(up *lameDuckUpstream, shutdown, extra string) string {
	return h3Config + `[timeouts]
shutdown = "` + shutdown + `"
[[site]]
name = "local"
server_names = ["localhost"]
` + extra + `
[[site.route]]
path = "/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["` + strings.TrimPrefix(up.URL, "http://") + `"]
`
}

type h3Result struct {
	body string
	err  error
}

// getAsync starts a GET and returns where its result will be.
func getAsync(c *http.Client, url string) <-chan h3Result {
	out := make(chan h3Result, 1)
	go func() {
		resp, err := c.Get(url)
		if err != nil {
			out <- h3Result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- h3Result{string(b), err}
	}()
	return out
}

func waitEntered(t *testing.T, up *lameDuckUpstream) {
	t.Helper()
	select {
	case <-up.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never reached the upstream")
	}
}

// TestHTTP3ReloadDrains reloads with a request in flight on a QUIC
// connection: the UDP socket stays, the request is answered by the config
// that took it, a new connection gets the new config, and the old
// generation finishes draining once its client has left after the GOAWAY,
// long before its drain deadline.
func TestHTTP3ReloadDrains(t *testing.T) {
	up := newLameDuckUpstream(t)
	ts, _ := startH3(t, h3SlowConfig(up, "60s", ""))
	udp := ts.srv.QUICAddr("https").String()
	c1, _ := ts.h3Client()
	slow := getAsync(c1, ts.h3URL("https")+"/slow")
	waitEntered(t, up)

	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, h3SlowConfig(up, "60s", "[site.headers]\ngroup = \"X-Edge-Group\"\n"))); err != nil {
		t.Fatal(err)
	}
	if got := ts.srv.QUICAddr("https").String(); got != udp {
		t.Fatalf("HTTP/3 moved from %s to %s across the reload", udp, got)
	}
	c2, _ := ts.h3Client()
	resp, err := c2.Get(ts.h3URL("https") + "/")
	if err != nil {
		t.Fatalf("a new QUIC connection after the reload: %v", err)
	}
	resp.Body.Close()
	if len(ts.srv.liveGenerations()) != 2 {
		t.Errorf("%d live generations while a request is in flight, want 2", len(ts.srv.liveGenerations()))
	}
	close(up.release)
	if r := <-slow; r.err != nil || r.body != "slow done" {
		t.Fatalf("the request in flight across the reload: %q, %v", r.body, r.err)
	}
	waitFor(t, "the old generation to finish draining", func() bool { return len(ts.srv.liveGenerations()) == 1 })
}

// TestHTTP3NewConfigOnNewConnections: after a reload, a new QUIC
// connection is handshaken and served by the new config.
func TestHTTP3NewConfigOnNewConnections(t *testing.T) {
	up := newLameDuckUpstream(t)
	headers := make(chan http.Header, 4)
	up.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers <- r.Header
		json.NewEncoder(w).Encode(r.Header)
	})
	ts, _ := startH3(t, h3SlowConfig(up, "15s", ""))
	get := func(what string) http.Header {
		c, _ := ts.h3Client()
		resp, err := c.Get(ts.h3URL("https") + "/")
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		resp.Body.Close()
		return <-headers
	}
	if h := get("before the reload"); h.Get("Pqedge-Tls-Group") != "X25519MLKEM768" {
		t.Fatalf("before the reload the upstream saw %v", h)
	}
	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, h3SlowConfig(up, "15s", "[site.headers]\ngroup = \"X-Edge-Group\"\n"))); err != nil {
		t.Fatal(err)
	}
	if h := get("after the reload"); h.Get("X-Edge-Group") != "X25519MLKEM768" || h.Get("Pqedge-Tls-Group") != "" {
		t.Errorf("after the reload the upstream saw %v", h)
	}
}

// TestHTTP3ShutdownDrains: Shutdown (SIGTERM) stops taking QUIC
// connections, lets the request in flight finish, and returns before its
// deadline.
func TestHTTP3ShutdownDrains(t *testing.T) {
	up := newLameDuckUpstream(t)
	ts, _ := startH3(t, h3SlowConfig(up, "30s", ""))
	c1, _ := ts.h3Client()
	slow := getAsync(c1, ts.h3URL("https")+"/slow")
	waitEntered(t, up)
	url := ts.h3URL("https")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()
	waitFor(t, "new QUIC connections to be refused", func() bool {
		c, tr := ts.h3Client()
		c.Timeout = time.Second
		resp, err := c.Get(url + "/")
		if err == nil {
			resp.Body.Close()
		}
		tr.Close()
		return err != nil
	})
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	default:
	}
	close(up.release)
	if r := <-slow; r.err != nil || r.body != "slow done" {
		t.Fatalf("the request in flight at SIGTERM: %q, %v", r.body, r.err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown did not return after the last request ended")
	}
}

// initialHeader is a QUIC v1 long header of an Initial packet (RFC 9000
// Section 17.2.2) with a 4-byte packet number and payloadLen bytes to
// follow; with 8-byte connection IDs it is 26 bytes long.
func initialHeader(dcid, scid []byte, payloadLen int) []byte {
	b := []byte{0xc3} // long header, fixed bit, Initial, packet number length 4
	b = binary.BigEndian.AppendUint32(b, 1)
	b = append(b, byte(len(dcid)))
	b = append(b, dcid...)
	b = append(b, byte(len(scid)))
	b = append(b, scid...)
	b = append(b, 0)                                                // no token
	b = binary.BigEndian.AppendUint16(b, 0x4000|uint16(payloadLen)) // 2-byte varint
	return b
}

// TestHTTP3MalformedInitials sends the listener what a scanner or an
// attacker would: bytes that are no QUIC header, a truncated Initial, and
// a full-size Initial whose payload nothing can decrypt. Each is refused
// before any cryptography of the server's and counted; no handshake event
// is made of them, and a real client is served afterwards.
func TestHTTP3MalformedInitials(t *testing.T) {
	ts, hs := startH3(t, h3Config+inspectSite)
	udpAddr := ts.srv.QUICAddr("https").(*net.UDPAddr)
	garbage := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	// An Initial of size bytes: a well-formed header, then noise.
	initial := func(size int) []byte {
		hdr := initialHeader(garbage(8), garbage(8), size-26)
		return append(hdr, garbage(size-len(hdr))...)
	}
	tests := []struct {
		name   string
		d      []byte
		metric string
		labels []string
	}{
		{"not a QUIC header", append([]byte{0xc0, 0xff}, garbage(30)...), "pqedge_quic_packets_dropped_total", nil},
		// Under 1,200 bytes (RFC 9000 Section 14.1).
		{"truncated Initial", initial(600), "pqedge_quic_packets_dropped_total", []string{`reason="unexpected_packet"`}},
		{"Initial nothing can open", initial(1200), "pqedge_quic_connections_refused_total", []string{`reason="unreadable_initial"`}},
	}
	mark := hs.mark()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialUDP("udp", nil, udpAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			before := ts.metricSum(tt.metric, tt.labels...)
			if _, err := c.Write(tt.d); err != nil {
				t.Fatal(err)
			}
			waitFor(t, tt.metric+" to count it", func() bool { return ts.metricSum(tt.metric, tt.labels...) > before })
		})
	}
	c, _ := ts.h3Client()
	if rep := inspect(t, c, ts.h3URL("https")+"/"); rep.Transport != "quic" {
		t.Errorf("after the garbage a client got %+v", rep)
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if n := len(hs.evs) - mark; n != 1 {
		t.Errorf("%d handshake events, want 1 (the real client's): %+v", n, hs.evs[mark:])
	}
}
