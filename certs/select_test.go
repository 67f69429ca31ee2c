package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pqedge/pqedge/pqtls"
)

// selectorFixture is a classical chain and an ML-DSA-65 chain under an
// ML-DSA-87 root with an intermediate.
type selectorFixture struct {
	classical, pq *tls.Certificate
	root, inter   *x509.Certificate
	other         *x509.Certificate // an unrelated CA
}

func newSelectorFixture(t testing.TB) selectorFixture {
	t.Helper()
	ca, err := InitCA(t.TempDir(), CAOptions{Alg: AlgMLDSA87, Intermediate: true, IntermediateAlg: AlgMLDSA65})
	if err != nil {
		t.Fatal(err)
	}
	pq, err := ca.Issue(LeafOptions{Names: []string{"pq.test"}, Alg: AlgMLDSA65})
	if err != nil {
		t.Fatal(err)
	}
	classicalCA, err := InitCA(t.TempDir(), CAOptions{Alg: AlgECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	classical, err := classicalCA.Issue(LeafOptions{Names: []string{"pq.test"}, Alg: AlgECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	return selectorFixture{classical: classical, pq: pq, root: ca.Root, inter: ca.Intermediate, other: classicalCA.Root}
}

// Signature lists as the clients send them (pqtls/testdata/clienthello).
var (
	chromiumSigs = []tls.SignatureScheme{0x0a0a, tls.MLDSA44, tls.MLDSA65, tls.MLDSA87, tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256, tls.PKCS1WithSHA256}
	firefoxSigs  = []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.PSSWithSHA256, tls.PKCS1WithSHA256}
	only44Sigs   = []tls.SignatureScheme{tls.MLDSA44, tls.ECDSAWithP256AndSHA256}
)

type fakeConn struct {
	net.Conn
	remote net.Addr
}

func (c fakeConn) RemoteAddr() net.Addr { return c.remote }

func TestSelectorPick(t *testing.T) {
	f := newSelectorFixture(t)
	office := netip.MustParsePrefix("10.1.0.0/16")
	tests := []struct {
		name   string
		mode   PQMode
		roots  []*x509.Certificate
		rules  []ClientRule
		sigs   []tls.SignatureScheme
		cas    [][]byte // nil: no certificate_authorities
		noHell bool     // no parsed ClientHello
		remote string
		wantPQ bool
	}{
		{name: "chromium under trusted gets classical", mode: PQTrusted, roots: []*x509.Certificate{f.root}, sigs: chromiumSigs},
		{name: "chromium under always gets pq", mode: PQAlways, sigs: chromiumSigs, wantPQ: true},
		{name: "chromium under off gets classical", mode: PQOff, sigs: chromiumSigs},
		{name: "default mode is trusted", mode: "", roots: []*x509.Certificate{f.root}, sigs: chromiumSigs},
		{name: "client naming the root gets pq", mode: PQTrusted, roots: []*x509.Certificate{f.root}, sigs: chromiumSigs, cas: [][]byte{f.other.RawSubject, f.root.RawSubject}, wantPQ: true},
		{name: "client naming the intermediate gets pq", mode: PQTrusted, sigs: chromiumSigs, cas: [][]byte{f.inter.RawSubject}, wantPQ: true},
		{name: "client naming another CA gets classical", mode: PQTrusted, roots: []*x509.Certificate{f.root}, sigs: chromiumSigs, cas: [][]byte{f.other.RawSubject}},
		{name: "client naming the root without ML-DSA gets classical", mode: PQTrusted, roots: []*x509.Certificate{f.root}, sigs: firefoxSigs, cas: [][]byte{f.root.RawSubject}},
		{name: "firefox under always gets classical", mode: PQAlways, sigs: firefoxSigs},
		{name: "mldsa44 only, pq key is 65", mode: PQAlways, sigs: only44Sigs},
		{name: "no parsed hello under trusted", mode: PQTrusted, roots: []*x509.Certificate{f.root}, sigs: chromiumSigs, noHell: true},
		{name: "no parsed hello under always", mode: PQAlways, sigs: chromiumSigs, noHell: true, wantPQ: true},
		{name: "office rule turns always on", mode: PQTrusted, roots: []*x509.Certificate{f.root}, rules: []ClientRule{{Network: office, Mode: PQAlways}}, sigs: chromiumSigs, remote: "10.1.2.3:5555", wantPQ: true},
		{name: "office rule does not match outsiders", mode: PQTrusted, roots: []*x509.Certificate{f.root}, rules: []ClientRule{{Network: office, Mode: PQAlways}}, sigs: chromiumSigs, remote: "192.0.2.1:5555"},
		{name: "rule turns pq off", mode: PQAlways, rules: []ClientRule{{Network: netip.MustParsePrefix("::/0"), Mode: PQOff}, {Network: netip.MustParsePrefix("0.0.0.0/0"), Mode: PQOff}}, sigs: chromiumSigs, remote: "[::ffff:192.0.2.1]:5555"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Selector{Classical: f.classical, PQ: f.pq, Mode: tt.mode, PQRoots: tt.roots, ClientRules: tt.rules}
			info := &tls.ClientHelloInfo{SignatureSchemes: tt.sigs, ServerName: "pq.test"}
			if tt.remote != "" {
				ap := netip.MustParseAddrPort(tt.remote)
				info.Conn = fakeConn{remote: net.TCPAddrFromAddrPort(ap)}
			}
			var hello *pqtls.ClientHello
			if !tt.noHell {
				hello = &pqtls.ClientHello{SignatureAlgorithms: tt.sigs, CertificateAuthorities: tt.cas}
			}
			got, err := s.Pick(info, hello)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]*tls.Certificate{true: f.pq, false: f.classical}[tt.wantPQ]; got != want {
				t.Fatalf("Pick chose the %s chain", map[bool]string{true: "PQ", false: "classical"}[got == f.pq])
			}
		})
	}
}

func TestSelectorNoClassical(t *testing.T) {
	f := newSelectorFixture(t)
	s := &Selector{PQ: f.pq, Mode: PQAlways}
	if _, err := s.Pick(&tls.ClientHelloInfo{SignatureSchemes: firefoxSigs}, nil); err == nil || !strings.Contains(err.Error(), "no classical certificate") {
		t.Fatalf("Pick error = %v", err)
	}
}

func TestSelectorValidate(t *testing.T) {
	f := newSelectorFixture(t)
	leafOnly := &tls.Certificate{Certificate: f.pq.Certificate[:1], PrivateKey: f.pq.PrivateKey, Leaf: f.pq.Leaf}
	tests := []struct {
		name    string
		s       Selector
		wantErr string
	}{
		{name: "ok", s: Selector{Classical: f.classical, PQ: f.pq, Mode: PQTrusted, PQRoots: []*x509.Certificate{f.root}}},
		{name: "classical only", s: Selector{Classical: f.classical}},
		{name: "nothing", s: Selector{}, wantErr: "no certificate"},
		{name: "classical key as PQ", s: Selector{Classical: f.classical, PQ: f.classical, Mode: PQAlways}, wantErr: "ML-DSA key"},
		{name: "bad mode", s: Selector{Classical: f.classical, Mode: "sometimes"}, wantErr: "unknown pq mode"},
		{name: "bad rule", s: Selector{Classical: f.classical, ClientRules: []ClientRule{{Network: netip.MustParsePrefix("10.0.0.0/8")}}}, wantErr: "client rule"},
		{name: "trusted without root", s: Selector{Classical: f.classical, PQ: leafOnly, Mode: PQTrusted}, wantErr: "needs the PQ root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestSelectorPickDoesNotAllocate(t *testing.T) {
	f := newSelectorFixture(t)
	s := &Selector{Classical: f.classical, PQ: f.pq, Mode: PQTrusted, PQRoots: []*x509.Certificate{f.root},
		ClientRules: []ClientRule{{Network: netip.MustParsePrefix("10.0.0.0/8"), Mode: PQAlways}}}
	info := &tls.ClientHelloInfo{SignatureSchemes: chromiumSigs,
		Conn: fakeConn{remote: &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 443}}}
	hello := &pqtls.ClientHello{SignatureAlgorithms: chromiumSigs, CertificateAuthorities: [][]byte{f.other.RawSubject, f.inter.RawSubject}}
	var current atomic.Pointer[Selector]
	current.Store(s)
	allocs := testing.AllocsPerRun(100, func() {
		c, err := current.Load().Pick(info, hello)
		if err != nil || c != f.pq {
			t.Fatalf("Pick = %v, %v", c, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Pick allocates %v times per call", allocs)
	}
}

// ExampleSelector shows certificate rotation: the handshake callback loads
// the current Selector; a reload stores a new one.
func ExampleSelector() {
	var current atomic.Pointer[Selector]
	current.Store(&Selector{Mode: PQTrusted /* Classical, PQ, PQRoots from config */})

	_ = &tls.Config{
		GetCertificate: func(info *tls.ClientHelloInfo) (*tls.Certificate, error) {
			// A capturing conn (pqtls.CaptureConn) would supply the
			// parsed ClientHello here; nil means it is unknown.
			return current.Load().Pick(info, nil)
		},
	}
	// On reload: build and validate a new Selector, then
	// current.Store(next). Handshakes in flight keep the old one.
}

// FuzzRawSubject fuzzes the allocation-free subject slicer Pick uses on the
// PQ chain's intermediates; whatever it returns must be what crypto/x509
// parses as RawSubject.
func FuzzRawSubject(f *testing.F) {
	ca, err := InitCA(f.TempDir(), CAOptions{Alg: AlgMLDSA44, Intermediate: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.Root.Raw)
	f.Add(ca.Intermediate.Raw)
	for _, file := range []string{"testdata/openssl-ecdsa.crt", "testdata/openssl-rsa.crt", "testdata/openssl-mldsa44.crt"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		chain, err := ParseCertificatesPEM(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(chain[0].Raw)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		subj, ok := rawSubject(der)
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		if !ok || !bytes.Equal(subj, c.RawSubject) {
			t.Fatalf("rawSubject = %x, %v; x509 says %x", subj, ok, c.RawSubject)
		}
	})
}
