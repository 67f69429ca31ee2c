package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"golang.org/x/net/http2"
)

const shortTimeouts = `
[timeouts]
handshake = "1s"
read_header = "1s"
`

// inspectSite is the site most tests serve: "local", for localhost, with
// the inspect page at /. More routes of the site, pools and other sites
// may follow it; inspectSiteWith adds to the site itself.
const inspectSite = `
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/"
handler = "inspect"
`

// inspectSiteWith is inspectSite with lines, keys and tables of the site
// each ending in a newline (pq_certs = "always"\n, [site.tls] ...,
// [[site.cert]] ...), between its server_names and its route.
func inspectSiteWith(lines string) string {
	return strings.Replace(inspectSite, "[[site.route]]\n", lines+"[[site.route]]\n", 1)
}

// filesInspectSite is inspectSite serving the certificate chain and key
// in the files cert and key (certs = "files").
func filesInspectSite(cert, key string) string {
	return inspectSiteWith("certs = \"files\"\n[[site.cert]]\ncert = \"" + cert + "\"\nkey = \"" + key + "\"\n")
}

// pqOnlyInspectSite is inspectSite under the pq-only policy: hybrid
// post-quantum groups only.
var pqOnlyInspectSite = inspectSiteWith("[site.tls]\npolicy = \"pq-only\"\n")

// pqWarnInspectSite is inspectSite under the pq-warn policy: as
// pq-preferred, and a client without a post-quantum group is told
// (PQEdge-PQ-Warning, the inspect page) and counted.
var pqWarnInspectSite = inspectSiteWith("[site.tls]\npolicy = \"pq-warn\"\n")

// TestBadClientsAreClosedInTime: garbage instead of a ClientHello, a client
// that stops mid-handshake and a slow-header client are each closed within
// the configured timeouts, while a good client is served meanwhile.
func TestBadClientsAreClosedInTime(t *testing.T) {
	ts := startServer(t, baseConfig+shortTimeouts+inspectSite)
	addr := ts.addr("https")

	hello := captureClientHello(t)
	tests := []struct {
		name string
		send []byte // then the client goes quiet
		tls  bool   // complete the handshake, then send a partial request
	}{
		{name: "garbage", send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{name: "silent"},
		{name: "half a ClientHello", send: hello[:len(hello)/2]},
		{name: "slow headers", tls: true},
	}
	var wg sync.WaitGroup
	for _, tt := range tests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			var r io.Reader = c
			if tt.tls {
				tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
				if err := tc.Handshake(); err != nil {
					t.Errorf("%s: handshake: %v", tt.name, err)
					return
				}
				tc.Write([]byte("GET / HTTP/1.1\r\nHost: localhost\r\n")) // never finished
				r = tc
			} else if len(tt.send) > 0 {
				c.Write(tt.send)
			}
			// The server must close on its own; the client's own deadline
			// only keeps a broken server from hanging the test.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			_, err = io.Copy(io.Discard, r)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("%s: server did not close the connection within 5s", tt.name)
			}
			_ = start
		}()
	}
	// Meanwhile, a good client is served.
	rep := inspect(t, ts.client(tls.X25519MLKEM768), "https://"+addr+"/")
	if rep.Group != "X25519MLKEM768" {
		t.Errorf("good client got %q", rep.Group)
	}
	wg.Wait()
	waitFor(t, "not_tls and timeout failures in /metrics", func() bool {
		return ts.metric(`pqedge_handshake_failures_total{family="unknown",listener="https",reason="not_tls",transport="tcp"}`) == "1" &&
			ts.metric(`pqedge_handshake_failures_total{family="unknown",listener="https",reason="timeout",transport="tcp"}`) != ""
	})
}

// captureClientHello returns the bytes a Go client sends first.
func captureClientHello(t *testing.T) []byte {
	t.Helper()
	a, b := net.Pipe()
	go tls.Client(a, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}).Handshake()
	buf := make([]byte, 1<<14)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	return buf[:n]
}

// TestStreamWithProxyV2 is DNS-over-TLS style: TLS terminated by pqedge,
// bytes spliced to a TCP upstream that parses the PROXY v2 header, the
// client half-closes and still reads the whole reply.
func TestStreamWithProxyV2(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	type seen struct {
		src  string
		hash [32]byte
	}
	seenc := make(chan seen, 1)
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		hdr, err := proxyproto.Read(br)
		if err != nil {
			t.Errorf("upstream could not parse the PROXY header: %v", err)
			return
		}
		h := sha256.New()
		data, _ := io.ReadAll(io.TeeReader(br, h)) // until the client's half-close
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		seenc <- seen{src: hdr.SourceAddr.String(), hash: sum}
		// Echo everything back, reversed order does not matter: length and
		// hash are compared by the client.
		c.Write(data)
	}()
	ts := startServer(t, `
data_dir = "{{DATA}}/data"
[log]
access = false
[[listener]]
name = "dot"
address = "127.0.0.1:0"
kind = "stream"
site = "local"
pool = "dns"
proxy_protocol = "v2"
`+inspectSiteWith("listeners = []\n")+`[[pool]]
name = "dns"
upstreams = ["`+up.Addr().String()+`"]
`)
	c, err := tls.Dial("tcp", ts.addr("dot"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if g := c.ConnectionState().CurveID; g != tls.X25519MLKEM768 {
		t.Errorf("stream negotiated %v", g)
	}
	payload := make([]byte, 3<<20)
	rand.Read(payload)
	want := sha256.Sum256(payload)
	go func() {
		c.Write(payload)
		c.CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	s := <-seenc
	if s.hash != want {
		t.Error("upstream received different bytes than the client sent")
	}
	if sha256.Sum256(got) != want {
		t.Errorf("client received %d bytes, not the %d it sent back", len(got), len(payload))
	}
	if host, _, _ := net.SplitHostPort(s.src); host != "127.0.0.1" || s.src == up.Addr().String() {
		t.Errorf("PROXY header source %q is not the client", s.src)
	}
}

// TestReloadSparesFreshHTTP2Connection: a reload right after an HTTP/2
// connection's handshake, before its client's first request, still serves
// that request. The retired generation's drain used to send its GOAWAY at
// once, closing the connection before the request; Go's client does not
// retry a first request on it ("http2: client conn could not be
// established"), which made TestReloadUnderLoadLosesNoRequest fail now and
// then under load.
func TestReloadSparesFreshHTTP2Connection(t *testing.T) {
	ts := startServer(t, baseConfig+inspectSite)
	cfg := &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"h2"}}
	tc, err := tls.Dial("tcp", ts.addr("https"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN chose %q, want h2", p)
	}
	cc, err := (&http2.Transport{}).NewClientConn(tc) // the preface, no request yet
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, baseConfig+inspectSite)); err != nil {
		t.Fatal(err)
	}
	// Long enough for the retired generation's drain to reach its GOAWAY
	// had it not waited for this connection's first request (it waits up
	// to h2FirstRequestGrace, 1 s).
	time.Sleep(100 * time.Millisecond)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://localhost/?format=json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatalf("the first request on a connection made just before a reload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %s, want 200", resp.Status)
	}
}

// TestReloadUnderLoadLosesNoRequest reloads repeatedly (alternating between
// two configs) while clients keep requesting; every request must succeed,
// and the second config's change must become visible.
func TestReloadUnderLoadLosesNoRequest(t *testing.T) {
	cfgA := baseConfig + inspectSite
	cfgB := baseConfig + pqWarnInspectSite
	ts := startServer(t, cfgA)
	url := "https://" + ts.addr("https") + "/"
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Keep-alive and fresh connections, over HTTP/2 and HTTP/1.1: the
	// races differ (a fresh HTTP/1 connection's first request, an h2
	// connection's GOAWAY, an idle keep-alive connection closed).
	for i := range 4 {
		fresh, h1 := i%2 == 1, i >= 2
		c := ts.client(tls.X25519MLKEM768, tls.X25519)
		if h1 {
			tr := c.Transport.(*http.Transport)
			tr.ForceAttemptHTTP2 = false
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if fresh {
					c.CloseIdleConnections()
				}
				resp, err := c.Get(url + "?format=json")
				if err != nil {
					failed.Add(1)
					t.Errorf("request failed during reloads (fresh %v, http/1.1 %v): %v", fresh, h1, err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Errorf("status %s during reloads", resp.Status)
					continue
				}
				ok.Add(1)
			}
		})
	}
	// A reload every 100 ms, each waiting for traffic to reach the new
	// config, 30 times.
	const reloads = 30
	for i := range reloads {
		text := cfgA
		if i%2 == 0 {
			text = cfgB
		}
		if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, text)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		before := ok.Load()
		waitFor(t, "requests after a reload", func() bool { return ok.Load() > before+2 })
		time.Sleep(100 * time.Millisecond) // the reload rate under test, not a wait for readiness
	}
	// The last reload applied cfgA; apply B and check that a classical
	// client now gets the pq-warn header.
	if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, cfgB)); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	resp, err := ts.client(tls.X25519).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get(PQWarningHeader) == "" {
		t.Error("after reloading to pq-warn, a classical client got no warning header")
	}
	t.Logf("%d requests succeeded, %d failed across %d reloads", ok.Load(), failed.Load(), reloads+1)
	if ok.Load() == 0 {
		t.Fatal("no request succeeded")
	}
	if got := ts.metric(`pqedge_config_reloads_total{result="ok"}`); got != strconv.Itoa(reloads+1) {
		t.Errorf("reloads counted %s, want %d", got, reloads+1)
	}
}

// TestInvalidReloadKeepsServing: a config whose certificate cannot be
// loaded is refused and the old config keeps serving.
func TestInvalidReloadKeepsServing(t *testing.T) {
	ts := startServer(t, baseConfig+inspectSite)
	bad := loadConfig(t, ts.dir, baseConfig+filesInspectSite("{{DATA}}/missing.crt", "{{DATA}}/missing.key"))
	err := ts.srv.Reload(t.Context(), bad)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("missing.crt")) {
		t.Fatalf("reload error %v does not name the missing file", err)
	}
	rep := inspect(t, ts.client(tls.X25519MLKEM768), "https://"+ts.addr("https")+"/")
	if rep.Group != "X25519MLKEM768" {
		t.Errorf("after a refused reload the old config serves %q", rep.Group)
	}
	if got := ts.metric(`pqedge_config_reloads_total{result="invalid"}`); got != "1" {
		t.Errorf("refused reloads counted %q, want 1", got)
	}
}

// TestAdminEndpoints checks /healthz, /readyz and that /readyz fails once
// Shutdown began (the withdraw grace keeps the admin listener up).
func TestAdminEndpoints(t *testing.T) {
	ts := startServer(t, baseConfig+"[timeouts]\nwithdraw_grace = \"5s\"\n"+inspectSite)
	admin := "http://" + ts.srv.AdminAddr().String()
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(admin + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
	// The index lists every page this config has, and each it lists
	// answers; /anycast only with an [anycast] block.
	resp, err := http.Get(admin + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /: %v %v", resp, err)
	}
	index, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(index), "/anycast") {
		t.Errorf("the admin index lists /anycast without an [anycast] block:\n%s", index)
	}
	for _, path := range []string{"/metrics", "/healthz", "/readyz", "/adoption", "/fleet"} {
		if !strings.Contains(string(index), "  "+path+" ") {
			t.Errorf("the admin index lacks %s:\n%s", path, index)
		}
		r, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode == http.StatusNotFound {
			t.Errorf("%s, listed by the index, is a 404", path)
		}
	}
	if r, _ := http.Get(admin + "/nothing"); r == nil || r.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown admin path did not get 404")
	} else {
		r.Body.Close()
	}
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(t.Context()) }()
	defer func() { ts.srv.EndGrace(); <-done }()
	waitFor(t, "/readyz to answer 503 while shutting down", func() bool {
		resp, err := http.Get(admin + "/readyz")
		if err != nil {
			t.Fatalf("readyz while shutting down: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
}
