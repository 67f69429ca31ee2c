package pages

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/pqedge/pqedge/pqtls"
)

func TestWhatIfMLKEM(t *testing.T) {
	policy := func(preset string, groups ...string) pqtls.Policy {
		allowClassical := len(groups) > 0
		for _, g := range groups {
			if id, _ := pqtls.ParseGroup(g); pqtls.IsPostQuantumGroup(id) {
				allowClassical = false
			}
		}
		p, err := pqtls.NewPolicy(preset, groups, allowClassical, "")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	hello := func(groups ...tls.CurveID) *pqtls.ClientHello {
		ch := &pqtls.ClientHello{Groups: groups}
		if len(groups) > 0 {
			ch.KeyShares = []pqtls.KeyShare{{Group: groups[0]}}
		}
		return ch
	}
	tests := []struct {
		name   string
		h      pqtls.Handshake
		policy pqtls.Policy
		want   []string
	}{
		{"already pq", pqtls.Handshake{Group: tls.X25519MLKEM768, Client: hello(tls.X25519MLKEM768, tls.X25519)}, policy("pq-preferred"),
			[]string{"Nothing: your client already uses ML-KEM (X25519MLKEM768)."}},
		{"pq after retry", pqtls.Handshake{Group: tls.SecP256r1MLKEM768, HelloRetry: true, Client: hello(tls.X25519, tls.SecP256r1MLKEM768)}, policy("pq-preferred"),
			[]string{"it sent x25519", "sending a SecP256r1MLKEM768 key share up front would save the HelloRetryRequest"}},
		{"classical client, pq-preferred", pqtls.Handshake{Group: tls.X25519, Client: hello(tls.X25519, tls.CurveP256)}, policy("pq-preferred"),
			[]string{"If your client offered X25519MLKEM768", "grow by about 1216 bytes", "reply by 1088 bytes"}},
		{"classical client, pq-warn", pqtls.Handshake{Group: tls.CurveP256, Client: hello(tls.CurveP256)}, policy("pq-warn"),
			[]string{"If your client offered X25519MLKEM768", "reply by 1055 bytes", "stop sending the PQEdge-PQ-Warning header"}},
		{"explicit groups pick the first pq", pqtls.Handshake{Group: tls.X25519, Client: hello(tls.X25519)}, policy("pq-preferred", "x25519", "SecP384r1MLKEM1024"),
			[]string{"If your client offered SecP384r1MLKEM1024", "grow by about 1665 bytes"}},
		{"client offers a pq group the site lacks", pqtls.Handshake{Group: tls.X25519, Client: hello(tls.X25519MLKEM768, tls.X25519)}, policy("pq-preferred", "SecP256r1MLKEM768", "x25519"),
			[]string{"Your client offers X25519MLKEM768, which this site does not enable (it serves SecP256r1MLKEM768)"}},
		{"site without ML-KEM", pqtls.Handshake{Group: tls.X25519, Client: hello(tls.X25519MLKEM768, tls.X25519)}, policy("pq-preferred", "x25519"),
			[]string{"this site's policy enables no ML-KEM group"}},
		{"resumed without key exchange", pqtls.Handshake{Resumed: true}, policy("pq-preferred"),
			[]string{"A fresh handshake offering X25519MLKEM768 would be protected"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := whatIfMLKEM(&tt.h, tt.policy)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("whatIfMLKEM = %q, want it to contain %q", got, w)
				}
			}
		})
	}
}
