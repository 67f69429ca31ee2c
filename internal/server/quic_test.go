package server

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/pqedge/pqedge/internal/pages"
	"github.com/pqedge/pqedge/pqtls"
)

const h3Config = `
data_dir = "{{DATA}}/data"
[admin]
listen = "127.0.0.1:0"
[log]
access = false
[[listener]]
name = "https"
address = "127.0.0.1:0"
http3 = true
`

// handshakeLog keeps the server's handshake events (Options.OnHandshake).
type handshakeLog struct {
	mu  sync.Mutex
	evs []HandshakeEvent
}

func (h *handshakeLog) add(ev HandshakeEvent) {
	h.mu.Lock()
	h.evs = append(h.evs, ev)
	h.mu.Unlock()
}

// wait returns the first event after mark that match accepts, polling until
// the deadline.
func (h *handshakeLog) wait(t *testing.T, mark int, what string, match func(HandshakeEvent) bool) HandshakeEvent {
	t.Helper()
	var found HandshakeEvent
	waitFor(t, what, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, ev := range h.evs[mark:] {
			if match(ev) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

func (h *handshakeLog) mark() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.evs)
}

func overQUIC(ev HandshakeEvent) bool { return ev.Transport == "quic" }

// startH3 serves cfgText with its handshake events logged.
func startH3(t *testing.T, cfgText string) (*testServer, *handshakeLog) {
	t.Helper()
	hs := &handshakeLog{}
	return startServerWith(t, cfgText, Options{OnHandshake: hs.add}), hs
}

// h3URL is the https URL of a listener's HTTP/3 side.
func (ts *testServer) h3URL(listener string) string {
	a := ts.srv.QUICAddr(listener)
	if a == nil {
		ts.t.Fatalf("listener %q serves no HTTP/3", listener)
	}
	return "https://" + a.String()
}

// h3Client is a quic-go HTTP/3 client trusting the local CAs, offering
// groups (crypto/tls's defaults when empty).
func (ts *testServer) h3Client(groups ...tls.CurveID) (*http.Client, *http3.Transport) {
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", CurvePreferences: groups},
		QUICConfig:      &quic.Config{HandshakeIdleTimeout: 5 * time.Second},
	}
	ts.t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr
}

// TestHTTP3EndToEnd serves a site over HTTP/3 with a quic-go client
// forcing each group, and checks what an operator would: pqedge's own
// handshake record says QUIC, the group and the signature, with the
// ClientHello read from the Initial packets; the inspect page says the
// same over HTTP/3; the upstream gets the handshake headers; the TCP side
// advertises HTTP/3 on the UDP port; the metrics count it as quic.
func TestHTTP3EndToEnd(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"header": r.Header, "proto": r.Proto})
	}))
	defer upstream.Close()
	ts, hs := startH3(t, h3Config+inspectSite+`[[site.route]]
path = "/app/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["`+strings.TrimPrefix(upstream.URL, "http://")+`"]
`)
	base := ts.h3URL("https")
	if tcp, udp := ts.addr("https"), ts.srv.QUICAddr("https").String(); tcp != udp {
		t.Fatalf("HTTP/3 on %s, TCP on %s: want the same address", udp, tcp)
	}
	tests := []struct {
		group   tls.CurveID
		name    string
		pq      bool
		packets int // Initial packets of crypto/tls's ClientHello
	}{
		{tls.X25519MLKEM768, "X25519MLKEM768", true, 2},
		{tls.SecP256r1MLKEM768, "SecP256r1MLKEM768", true, 2},
		{tls.SecP384r1MLKEM1024, "SecP384r1MLKEM1024", true, 2},
		{tls.X25519, "x25519", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := ts.h3Client(tt.group)
			mark := hs.mark()
			rep := inspect(t, c, base+"/")
			ev := hs.wait(t, mark, "the QUIC handshake's event", overQUIC)
			h := ev.Handshake
			if h == nil {
				t.Fatalf("handshake failed: %s: %v", ev.Reason, ev.Err)
			}
			if h.GroupName() != tt.name || h.SignatureName() != "ecdsa_secp256r1_sha256" || h.ALPN != "h3" || h.Transport != pqtls.TransportQUIC {
				t.Errorf("record: group %s signature %s alpn %q transport %s", h.GroupName(), h.SignatureName(), h.ALPN, h.Transport)
			}
			if ev.Hello == nil || ev.Hello.Wire.Transport != pqtls.TransportQUIC || ev.Hello.Wire.Packets != tt.packets || ev.Family != pqtls.FamilyGo {
				t.Fatalf("ClientHello %+v, family %s: want one recorded from %d Initial packets, family go", ev.Hello, ev.Family, tt.packets)
			}
			if !strings.HasPrefix(ev.Hello.JA4(), "q13d") {
				t.Errorf("JA4 %s does not start with q13d", ev.Hello.JA4())
			}
			if rep.Group != tt.name || rep.PQ != tt.pq || rep.Transport != "quic" || rep.ALPN != "h3" {
				t.Errorf("inspect: group %q pq %v transport %q alpn %q", rep.Group, rep.PQ, rep.Transport, rep.ALPN)
			}
			if cl := rep.Client; cl == nil || cl.HelloPackets != tt.packets || cl.NotOverQUIC == "" || !strings.HasPrefix(cl.JA4, "q") {
				t.Errorf("inspect's client part %+v", rep.Client)
			}

			resp, err := c.Get(base + "/app/x")
			if err != nil {
				t.Fatal(err)
			}
			var seen struct {
				Header http.Header
				Proto  string
			}
			json.NewDecoder(resp.Body).Decode(&seen)
			resp.Body.Close()
			if resp.Proto != "HTTP/3.0" || seen.Header.Get("Pqedge-Tls-Group") != tt.name || seen.Header.Get("X-Forwarded-Proto") != "https" {
				t.Errorf("over %s the upstream saw %v", resp.Proto, seen.Header)
			}
		})
	}

	// The TCP side says where HTTP/3 is.
	resp, err := ts.client().Get("https://" + ts.addr("https") + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := net.SplitHostPort(ts.addr("https"))
	if got, want := resp.Header.Get("Alt-Svc"), fmt.Sprintf(`h3=":%s"; ma=86400`, port); got != want {
		t.Errorf("Alt-Svc %q, want %q", got, want)
	}
	if got := ts.metricSum("pqedge_handshakes_total", `transport="quic"`, `group="X25519MLKEM768"`); got < 1 {
		t.Errorf("no X25519MLKEM768 QUIC handshake in pqedge_handshakes_total")
	}
	if code, text, _ := ts.readyz(); code != 200 || !strings.Contains(text, "HTTP/3 (UDP) bound on") {
		t.Errorf("/readyz %d:\n%s", code, text)
	}
}

// TestHTTP3PQOnly: a pq-only site refuses a classical QUIC client at the
// handshake and counts it as no_common_group over quic; a post-quantum
// client is served.
func TestHTTP3PQOnly(t *testing.T) {
	ts, hs := startH3(t, h3Config+pqOnlyInspectSite)
	base := ts.h3URL("https")
	c, _ := ts.h3Client(tls.X25519, tls.CurveP256)
	mark := hs.mark()
	if _, err := c.Get(base + "/"); err == nil {
		t.Fatal("a classical QUIC client was served by a pq-only site")
	}
	ev := hs.wait(t, mark, "the refusal's event", overQUIC)
	if ev.Handshake != nil || ev.Reason != reasonNoCommonGroup || ev.Site != "local" {
		t.Errorf("event: handshake %v, reason %q, site %q; want refused, no_common_group, local", ev.Handshake, ev.Reason, ev.Site)
	}
	waitFor(t, "the refusal in /metrics", func() bool {
		return ts.metricSum("pqedge_handshake_failures_total", `reason="no_common_group"`, `transport="quic"`) == 1
	})
	c, _ = ts.h3Client(tls.X25519MLKEM768, tls.X25519)
	if rep := inspect(t, c, base+"/"); rep.Group != "X25519MLKEM768" || rep.Transport != "quic" {
		t.Errorf("a post-quantum client got %q over %q", rep.Group, rep.Transport)
	}
}

// TestHTTP3StrictSNI: a name no site serves is refused over QUIC as over
// TCP.
func TestHTTP3StrictSNI(t *testing.T) {
	ts, hs := startH3(t, strings.Replace(h3Config, "http3 = true", "http3 = true\nstrict_sni = true", 1)+inspectSite)
	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.roots(), ServerName: "other.example"}}
	defer tr.Close()
	mark := hs.mark()
	_, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(ts.h3URL("https") + "/")
	if err == nil {
		t.Fatal("an unknown name was served under strict_sni")
	}
	// The unrecognized_name alert (RFC 6066 section 3: 112) as QUIC
	// carries it (RFC 9001 section 4.8: CRYPTO_ERROR 0x100+alert).
	var te *quic.TransportError
	if !errors.As(err, &te) || !te.Remote || te.ErrorCode != 0x100+112 {
		t.Errorf("the client got %v, want CRYPTO_ERROR 0x170 (unrecognized_name)", err)
	}
	if ev := hs.wait(t, mark, "the refusal's event", overQUIC); ev.Reason != reasonUnknownName {
		t.Errorf("reason %q (%v), want unknown_name", ev.Reason, ev.Err)
	}
}

// TestHTTP3InspectHTML: the page a browser gets over HTTP/3 says so, and
// says what QUIC does not have.
func TestHTTP3InspectHTML(t *testing.T) {
	ts, _ := startH3(t, h3Config+inspectSite)
	c, _ := ts.h3Client()
	resp, err := c.Get(ts.h3URL("https") + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`<td id="transport">QUIC (HTTP/3)</td>`, `Initial packet(s)`, `id="not-over-quic"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("page lacks %s", want)
		}
	}
	var rep pages.InspectReport
	if resp, err = c.Get(ts.h3URL("https") + "/?format=json"); err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if rep.Client == nil || rep.Client.HelloRecords != 0 || rep.Client.HelloDatagrams == 0 {
		t.Errorf("JSON client part %+v: want no records, some datagrams", rep.Client)
	}
}
