package pages

import (
	"crypto/tls"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pqedge/pqedge/pqtls"
)

// TestInspectPage renders the page for a few connections and checks what a
// visitor reads.
func TestInspectPage(t *testing.T) {
	policy, _ := pqtls.NewPolicy("pq-preferred", nil, false, "")
	hello := &pqtls.ClientHello{CipherSuites: []uint16{0x0a0a, tls.TLS_AES_128_GCM_SHA256, 0xfeed}, Groups: []tls.CurveID{tls.X25519MLKEM768}}
	tests := []struct {
		name    string
		path    string
		h       pqtls.Handshake
		status  int
		want    []string
		notWant []string
	}{
		{"pq key exchange, ML-DSA signature", "/", pqtls.Handshake{Group: tls.X25519MLKEM768, Signature: tls.MLDSA65, Version: tls.VersionTLS13, Client: hello}, 200,
			[]string{`<td id="signature"><code>mldsa65</code> <span class="pq">post-quantum</span>`, "authentication", `<code>GREASE</code>, <code>TLS_AES_128_GCM_SHA256</code>, <code>0xFEED</code>`},
			[]string{`id="if-mlkem"`}},
		{"classical", "/", pqtls.Handshake{Group: tls.X25519, Signature: tls.ECDSAWithP256AndSHA256, Version: tls.VersionTLS13, Client: hello}, 200,
			[]string{`id="if-mlkem"`, "<code>ecdsa_secp256r1_sha256</code></td>"},
			[]string{`<td id="signature"><code>ecdsa_secp256r1_sha256</code> <span class="pq">`}},
		{"pq after a HelloRetryRequest keeps the hint", "/", pqtls.Handshake{Group: tls.X25519MLKEM768, HelloRetry: true, Version: tls.VersionTLS13, Client: hello}, 200,
			[]string{`id="if-mlkem"`}, nil},
		{"over QUIC: Initial packets, and what QUIC does not have", "/", pqtls.Handshake{Group: tls.X25519MLKEM768, Version: tls.VersionTLS13, Transport: pqtls.TransportQUIC,
			Client: &pqtls.ClientHello{Groups: []tls.CurveID{tls.X25519MLKEM768}, Wire: pqtls.WireShape{Size: 1790, Packets: 2, Datagrams: 2, Transport: pqtls.TransportQUIC}}}, 200,
			[]string{`<td id="transport">QUIC (HTTP/3)</td>`, `<td id="hello-shape">1790 bytes in 2 Initial packet(s), 2 UDP datagram(s)</td>`, `id="not-over-quic"`, "no records or reads to count"},
			[]string{"record(s)"}},
		{"over TCP: records and reads", "/", pqtls.Handshake{Group: tls.X25519MLKEM768, Version: tls.VersionTLS13,
			Client: &pqtls.ClientHello{Wire: pqtls.WireShape{Size: 1790, Records: 1, Reads: 2}}}, 200,
			[]string{`<td id="transport">TCP</td>`, "1790 bytes in 1 record(s), 2 read(s)"},
			[]string{`id="not-over-quic"`, "Initial packet"}},
		{"favicon is not the page", "/favicon.ico", pqtls.Handshake{Group: tls.X25519MLKEM768}, 404, nil, []string{"post-quantum"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tt.path, nil)
			req = req.WithContext(WithConn(req.Context(), &Conn{Handshake: &tt.h, Policy: policy}))
			rec := httptest.NewRecorder()
			Inspect{}.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("page lacks %s", w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(string(body), w) {
					t.Errorf("page has %s", w)
				}
			}
		})
	}
}
