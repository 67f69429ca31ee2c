package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/pqedge/pqedge/pqtls"
)

// BenchmarkSelectorPick measures the per-handshake certificate choice.
// Run with:
//
//	go test ./certs -run '^$' -bench SelectorPick -cpu 1 -count 5
//
// trusted-ca: a client that names the PQ intermediate (found after the
// unrelated CA and the root miss); many-cas: the same after 50 unrelated
// names, as a client sending its trust store's subjects would; firefox: no
// ML-DSA scheme offered.
func BenchmarkSelectorPick(b *testing.B) {
	f := newSelectorFixture(b)
	s := &Selector{Classical: f.classical, PQ: f.pq, Mode: PQTrusted, PQRoots: []*x509.Certificate{f.root}}
	conn := fakeConn{remote: &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 443}}
	many := make([][]byte, 0, 51)
	for range 50 {
		many = append(many, f.other.RawSubject)
	}
	many = append(many, f.inter.RawSubject)
	cases := []struct {
		name  string
		info  *tls.ClientHelloInfo
		hello *pqtls.ClientHello
		want  *tls.Certificate
	}{
		{"trusted-ca", &tls.ClientHelloInfo{SignatureSchemes: chromiumSigs, Conn: conn},
			&pqtls.ClientHello{SignatureAlgorithms: chromiumSigs, CertificateAuthorities: [][]byte{f.other.RawSubject, f.inter.RawSubject}}, f.pq},
		{"many-cas", &tls.ClientHelloInfo{SignatureSchemes: chromiumSigs, Conn: conn},
			&pqtls.ClientHello{SignatureAlgorithms: chromiumSigs, CertificateAuthorities: many}, f.pq},
		{"firefox", &tls.ClientHelloInfo{SignatureSchemes: firefoxSigs, Conn: conn},
			&pqtls.ClientHello{SignatureAlgorithms: firefoxSigs}, f.classical},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if got, err := s.Pick(c.info, c.hello); err != nil || got != c.want {
					b.Fatalf("Pick = %v, %v", got, err)
				}
			}
		})
	}
}
