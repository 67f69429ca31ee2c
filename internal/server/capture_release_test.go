package server

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// TestCaptureReleasedAfterHandshake checks that a connection serving
// requests no longer holds the captured ClientHello bytes, while its
// inspect page and the upstream's headers still show everything the
// ClientHello and the handshake told (what the handshake event, which
// keeps the full capture for its sinks, saw).
func TestCaptureReleasedAfterHandshake(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(r.Header)
	}))
	defer upstream.Close()
	hs := &handshakeLog{}
	ts := startServerWith(t, baseConfig+inspectSite+`[[site.route]]
path = "/app/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["`+strings.TrimPrefix(upstream.URL, "http://")+`"]
`, Options{OnHandshake: hs.add})
	base := "https://" + ts.addr("https")

	for _, alpn := range []string{"h2", "http/1.1"} {
		t.Run(alpn, func(t *testing.T) {
			mark := hs.mark()
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{alpn}},
				ForceAttemptHTTP2: alpn == "h2",
			}}
			defer c.CloseIdleConnections()
			rep := inspect(t, c, base+"/")
			ev := hs.wait(t, mark, "the handshake event", func(ev HandshakeEvent) bool { return ev.Handshake != nil })
			full := ev.Hello
			if full == nil || len(full.Raw) == 0 {
				t.Fatalf("the handshake event has no captured ClientHello: %+v", full)
			}

			// The page shows the ClientHello as captured.
			cr := rep.Client
			if rep.ALPN != alpn || rep.Group != "X25519MLKEM768" || cr == nil {
				t.Fatalf("inspect: alpn %q group %q client %+v", rep.ALPN, rep.Group, cr)
			}
			if cr.HelloBytes != len(full.Raw) || cr.HelloRecords != full.Wire.Records || cr.HelloReads != full.Wire.Reads ||
				cr.JA4 != full.JA4() || cr.Family != full.Family() || len(cr.Groups) != len(full.Groups) ||
				len(cr.KeyShares) != len(full.KeyShares) || cr.KeyShares[0].Bytes != full.KeyShares[0].Size ||
				len(cr.SignatureAlgorithms) != len(full.SignatureAlgorithms) || len(cr.CipherSuites) != len(full.CipherSuites) ||
				len(cr.Versions) != len(full.SupportedVersions) || len(cr.ALPN) != len(full.ALPN) {
				t.Errorf("inspect's client report %+v differs from the captured ClientHello %+v", cr, full)
			}

			// The upstream gets the handshake's facts.
			resp, err := c.Get(base + "/app/x")
			if err != nil {
				t.Fatal(err)
			}
			var hdr http.Header
			json.NewDecoder(resp.Body).Decode(&hdr)
			resp.Body.Close()
			if hdr.Get("Pqedge-Tls-Group") != "X25519MLKEM768" || hdr.Get("Pqedge-Tls-Pq") != "true" || hdr.Get("Pqedge-Tls-Version") != "TLS 1.3" {
				t.Errorf("upstream headers %v", hdr)
			}

			// The connection itself keeps the parsed hello only.
			kept := ts.keptHellos(alpn)
			if len(kept) != 1 {
				t.Fatalf("found %d open %s connections, want 1", len(kept), alpn)
			}
			for ec, h := range kept {
				if ec.RawRecords() != nil {
					t.Error("the connection still holds its captured records")
				}
				if h == nil {
					t.Fatal("the connection's handshake record lost its ClientHello")
				}
				if h.Raw != nil || h.PSKIdentity != nil || h.Wire != full.Wire {
					t.Errorf("the connection's ClientHello keeps %d bytes of Raw and %d of PSKIdentity, wire %+v: want the parsed fields only, wire %+v",
						len(h.Raw), len(h.PSKIdentity), h.Wire, full.Wire)
				}
			}
		})
	}
}

// keptHellos returns the open connections with the given ALPN and the
// ClientHello each keeps in its handshake record.
func (ts *testServer) keptHellos(alpn string) map[*edgeConn]*pqtls.ClientHello {
	out := map[*edgeConn]*pqtls.ClientHello{}
	for _, l := range ts.srv.current.Load().listeners {
		if l.conns == nil {
			continue
		}
		l.conns.mu.Lock()
		for c := range l.conns.phase {
			tc, ok := tlsConnOf(c)
			if !ok || tc.ConnectionState().NegotiatedProtocol != alpn {
				continue
			}
			if ec, ok := tc.NetConn().(*edgeConn); ok && ec.info != nil {
				out[ec] = ec.info.handshake.Client
			}
		}
		l.conns.mu.Unlock()
	}
	return out
}
