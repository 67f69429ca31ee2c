package certs

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// testChain builds a chain: each entry of algs is a key algorithm, leaf
// first, root last; the root is not included, as servers send chains. The
// root may sign with a chosen algorithm (x509's default for its key if 0).
func testChain(t testing.TB, rootSig x509.SignatureAlgorithm, algs ...Alg) *tls.Certificate {
	t.Helper()
	keys := make([]crypto.Signer, len(algs))
	for i, a := range algs {
		k, err := GenerateKey(a)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	now := time.Now()
	var parent *x509.Certificate
	var chain [][]byte
	for i := len(algs) - 1; i >= 0; i-- {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 1)),
			Subject:      pkix.Name{CommonName: string(algs[i]) + " " + string(rune('a'+i))},
			NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			IsCA: i > 0, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			DNSNames: []string{"chain.test"},
		}
		signer, issuer := keys[i], tmpl // the root signs itself
		if parent != nil {
			signer, issuer = keys[i+1], parent
		}
		if i == len(algs)-2 || len(algs) == 1 {
			tmpl.SignatureAlgorithm = rootSig
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, keys[i].Public(), signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		parent = c
		if i < len(algs)-1 || len(algs) == 1 {
			chain = append([][]byte{der}, chain...)
		}
	}
	leaf, _ := x509.ParseCertificate(chain[0])
	return &tls.Certificate{Certificate: chain, PrivateKey: keys[0], Leaf: leaf}
}

// Client profiles, as the captures in pqtls/testdata/clienthello and the
// clients' sources have them.
type clientProfile struct {
	sigs, certSigs []tls.SignatureScheme
	versions       []uint16
	groups         []tls.CurveID // supported_groups; nil: not sent
	suites         []uint16      // cipher_suites; nil: unknown
}

var (
	profChromium = clientProfile{
		sigs: []tls.SignatureScheme{0x0a0a, tls.MLDSA44, tls.MLDSA65, tls.MLDSA87, tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256,
			tls.PKCS1WithSHA256, tls.ECDSAWithP384AndSHA384, tls.PSSWithSHA384, tls.PKCS1WithSHA384, tls.PSSWithSHA512, tls.PKCS1WithSHA512},
		versions: []uint16{0x0a0a, tls.VersionTLS13, tls.VersionTLS12},
	}
	// Go 1.27: signature_algorithms_cert without ML-DSA (go.dev/issue/82536).
	profGo = clientProfile{
		sigs: []tls.SignatureScheme{tls.MLDSA44, tls.MLDSA65, tls.MLDSA87, tls.PSSWithSHA256, tls.ECDSAWithP256AndSHA256, tls.Ed25519,
			tls.PSSWithSHA384, tls.PSSWithSHA512, tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512, tls.ECDSAWithP384AndSHA384, tls.ECDSAWithP521AndSHA512},
		certSigs: []tls.SignatureScheme{tls.PSSWithSHA256, tls.ECDSAWithP256AndSHA256, tls.Ed25519, tls.PSSWithSHA384, tls.PSSWithSHA512,
			tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512, tls.ECDSAWithP384AndSHA384, tls.ECDSAWithP521AndSHA512, tls.PKCS1WithSHA1, tls.ECDSAWithSHA1},
		versions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
	}
	profFirefox = clientProfile{
		sigs: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.ECDSAWithP521AndSHA512, tls.PSSWithSHA256,
			tls.PSSWithSHA384, tls.PSSWithSHA512, tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512},
		versions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
	}
	// The example: mldsa65 offered for CertificateVerify, only
	// ECDSA for certificates.
	profSplit = clientProfile{
		sigs:     []tls.SignatureScheme{tls.MLDSA65, tls.ECDSAWithP256AndSHA256},
		certSigs: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384},
		versions: []uint16{tls.VersionTLS13},
	}
	// openssl s_client -sigalgs mldsa65: one scheme, no _cert list.
	profOnly65 = clientProfile{sigs: []tls.SignatureScheme{tls.MLDSA65}, versions: []uint16{tls.VersionTLS13}}
	profMLDSA  = clientProfile{sigs: []tls.SignatureScheme{tls.MLDSA44, tls.MLDSA65, tls.MLDSA87}, versions: []uint16{tls.VersionTLS13}}
	profTLS12  = clientProfile{
		sigs:     []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.PKCS1WithSHA256, tls.PSSWithSHA256},
		versions: []uint16{tls.VersionTLS12},
	}
	// TLS 1.2 clients whose supported_groups lack P-256 (openssl s_client
	// -tls1_2 -groups X25519, or P-384): RFC 8422 Section 5.1 rules a
	// P-256 leaf out for them.
	profTLS12X25519 = clientProfile{sigs: profTLS12.sigs, versions: profTLS12.versions, groups: []tls.CurveID{tls.X25519}}
	profTLS12P384   = clientProfile{sigs: profTLS12.sigs, versions: profTLS12.versions, groups: []tls.CurveID{tls.X25519, tls.CurveP384}}
	// The same groups do not matter in TLS 1.3, where the scheme names the
	// curve (RFC 8446 Section 4.2.7).
	profTLS13X25519 = clientProfile{sigs: profTLS12.sigs, versions: []uint16{tls.VersionTLS13, tls.VersionTLS12}, groups: []tls.CurveID{tls.X25519}}
	// TLS 1.2 clients whose cipher suites fit one key type only
	// (openssl s_client -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256):
	// RFC 5246 Section 7.4.2 and RFC 8422 Section 5.1 rule the other out.
	// One whose suites crypto/tls serves none of (DHE) rules nothing out
	// by suite: crypto/tls refuses it for its suites.
	profTLS12RSASuites = clientProfile{sigs: profTLS12.sigs, versions: profTLS12.versions,
		suites: []uint16{0x0a0a, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}
	profTLS12ECDSASuites = clientProfile{sigs: profTLS12.sigs, versions: profTLS12.versions,
		suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}
	profTLS12DHEOnly = clientProfile{sigs: profTLS12.sigs, versions: profTLS12.versions, suites: []uint16{0x009e, 0x009f}}
	// TLS 1.2 clients that can take SHA-1 signatures only: without
	// signature_algorithms (RFC 5246 Section 7.4.1.4.1) or listing only
	// the SHA-1 schemes. crypto/tls refuses to sign with SHA-1 there
	// (RFC 9155, GODEBUG tlssha1), so no leaf fits them.
	profTLS12NoSigalgs = clientProfile{versions: profTLS12.versions, groups: []tls.CurveID{tls.X25519, tls.CurveP256}}
	profTLS12SHA1      = clientProfile{sigs: []tls.SignatureScheme{tls.PKCS1WithSHA1, tls.ECDSAWithSHA1}, versions: profTLS12.versions}
	// A TLS 1.2 client offering Ed25519 alone.
	profTLS12Ed25519 = clientProfile{sigs: []tls.SignatureScheme{tls.Ed25519}, versions: profTLS12.versions}
)

func (p clientProfile) hello() (*tls.ClientHelloInfo, *pqtls.ClientHello) {
	return &tls.ClientHelloInfo{SignatureSchemes: p.sigs, SupportedVersions: p.versions, SupportedCurves: p.groups, CipherSuites: p.suites, ServerName: "chain.test"},
		&pqtls.ClientHello{SignatureAlgorithms: p.sigs, SignatureAlgorithmsCert: p.certSigs, SupportedVersions: p.versions, Groups: p.groups, CipherSuites: p.suites}
}

// TestClientCanVerify runs every classical, hybrid and ML-DSA chain shape
// against every client profile.
func TestClientCanVerify(t *testing.T) {
	profiles := map[string]clientProfile{
		"chromium": profChromium, "go": profGo, "firefox": profFirefox, "split": profSplit,
		"only-mldsa65": profOnly65, "mldsa-only": profMLDSA, "tls12": profTLS12,
		"tls12-x25519": profTLS12X25519, "tls12-p384": profTLS12P384, "tls13-x25519": profTLS13X25519,
		"tls12-rsa-suites": profTLS12RSASuites, "tls12-ecdsa-suites": profTLS12ECDSASuites, "tls12-dhe-only": profTLS12DHEOnly,
		"tls12-no-sigalgs": profTLS12NoSigalgs, "tls12-sha1": profTLS12SHA1, "tls12-ed25519": profTLS12Ed25519,
	}
	tests := []struct {
		name    string
		chain   func(t testing.TB) *tls.Certificate
		canSign string // space-separated profiles that can verify it
	}{
		{"ecdsa-p256 < ecdsa-p384 root", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgECDSAP256, AlgECDSAP384)
		}, "chromium go firefox split tls12 tls13-x25519 tls12-ecdsa-suites tls12-dhe-only"},
		{"ecdsa-p256 < ecdsa-p256 intermediate < ecdsa-p384 root", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgECDSAP256, AlgECDSAP256, AlgECDSAP384)
		}, "chromium go firefox split tls12 tls13-x25519 tls12-ecdsa-suites tls12-dhe-only"},
		{"ecdsa-p256 < ecdsa-p384 root signing with SHA-512", func(t testing.TB) *tls.Certificate {
			return testChain(t, x509.ECDSAWithSHA512, AlgECDSAP256, AlgECDSAP384)
		}, "go firefox"},
		{"rsa < rsa root, PKCS#1 v1.5", func(t testing.TB) *tls.Certificate {
			return testChain(t, x509.SHA256WithRSA, AlgRSA, AlgRSA)
		}, "chromium go firefox tls12 tls12-x25519 tls12-p384 tls13-x25519 tls12-rsa-suites tls12-dhe-only"},
		{"rsa < rsa root, PSS", func(t testing.TB) *tls.Certificate {
			return testChain(t, x509.SHA256WithRSAPSS, AlgRSA, AlgRSA)
		}, "chromium go firefox tls12 tls12-x25519 tls12-p384 tls13-x25519 tls12-rsa-suites tls12-dhe-only"},
		{"ed25519 < ed25519 root", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgEd25519, AlgEd25519)
		}, "go tls12-ed25519"},
		{"mldsa65 < mldsa87 root (the local CA's PQ chain)", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgMLDSA65, AlgMLDSA87)
		}, "chromium mldsa-only"},
		{"mldsa65 < mldsa65 intermediate < mldsa87 root", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgMLDSA65, AlgMLDSA65, AlgMLDSA87)
		}, "chromium mldsa-only"},
		{"mldsa65 < mldsa65 root", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgMLDSA65, AlgMLDSA65)
		}, "chromium mldsa-only only-mldsa65"},
		{"mldsa44 < mldsa44 root", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgMLDSA44, AlgMLDSA44)
		}, "chromium mldsa-only"},
		{"mldsa87 < mldsa87 root", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgMLDSA87, AlgMLDSA87)
		}, "chromium mldsa-only"},
		{"hybrid: mldsa65 < ecdsa-p384 root", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgMLDSA65, AlgECDSAP384)
		}, "chromium go split"},
		{"hybrid: ecdsa-p256 < mldsa87 root", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgECDSAP256, AlgMLDSA87)
		}, "chromium"},
		{"self-signed ecdsa-p256 (its signature is not checked)", func(t testing.TB) *tls.Certificate {
			return testChain(t, x509.ECDSAWithSHA512, AlgECDSAP256)
		}, "chromium go firefox split tls12 tls13-x25519 tls12-ecdsa-suites tls12-dhe-only"},
		{"ecdsa-p384 < ecdsa-p384 root", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgECDSAP384, AlgECDSAP384)
		}, "chromium go firefox tls12 tls12-p384 tls13-x25519 tls12-ecdsa-suites tls12-dhe-only"},
		{"self-signed mldsa65", func(t testing.TB) *tls.Certificate {
			return testChain(t, 0, AlgMLDSA65)
		}, "chromium mldsa-only only-mldsa65 go split"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.chain(t)
			if err := checkChainSignatures(c); err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{}
			for _, p := range strings.Fields(tt.canSign) {
				want[p] = true
			}
			for name, p := range profiles {
				info, hello := p.hello()
				// Parsed per call, and once for the chain as
				// Selector.Validate keeps it: the same answer.
				for _, cached := range []*chainSigs{nil, parseChainSigs(c)} {
					if got := clientCanVerify(c, cached, info, hello); got != want[name] {
						t.Errorf("client %s (cached chain %v): can verify = %v, want %v", name, cached != nil, got, want[name])
					}
				}
			}
		})
	}
}

// TestPickVerifiableChains: with VerifiableChainsOnly, Pick passes over a
// chain the client cannot verify for the next, and fails with
// ErrNoVerifiableChain when none is left.
func TestPickVerifiableChains(t *testing.T) {
	classical := testChain(t, 0, AlgECDSAP256, AlgECDSAP384)
	pq := testChain(t, 0, AlgMLDSA65, AlgMLDSA87)
	tests := []struct {
		name    string
		mode    PQMode
		check   bool
		client  clientProfile
		noHello bool
		want    *tls.Certificate // nil: ErrNoVerifiableChain
	}{
		{name: "chromium, always: ML-DSA", mode: PQAlways, check: true, client: profChromium, want: pq},
		{name: "go, always: its _cert list lacks ML-DSA, classical", mode: PQAlways, check: true, client: profGo, want: classical},
		{name: "split lists, always: classical", mode: PQAlways, check: true, client: profSplit, want: classical},
		{name: "ML-DSA-only client, always: ML-DSA", mode: PQAlways, check: true, client: profMLDSA, want: pq},
		{name: "mldsa65 alone cannot verify the mldsa87 signature, nor ECDSA: none", mode: PQAlways, check: true, client: profOnly65},
		{name: "firefox, always: classical", mode: PQAlways, check: true, client: profFirefox, want: classical},
		{name: "tls 1.2, always: classical", mode: PQAlways, check: true, client: profTLS12, want: classical},
		{name: "tls 1.2 without P-256 in supported_groups: none", mode: PQAlways, check: true, client: profTLS12X25519},
		{name: "tls 1.3 without P-256 in supported_groups: classical", mode: PQAlways, check: true, client: profTLS13X25519, want: classical},
		{name: "ML-DSA-only client, off: nothing it can verify", mode: PQOff, check: true, client: profMLDSA},
		{name: "tls 1.2 without signature_algorithms (SHA-1 only): none", mode: PQAlways, check: true, client: profTLS12NoSigalgs},
		{name: "tls 1.2 offering only SHA-1 schemes: none", mode: PQAlways, check: true, client: profTLS12SHA1},
		{name: "tls 1.2 offering only ed25519: none", mode: PQAlways, check: true, client: profTLS12Ed25519},
		{name: "tls 1.2 with ECDHE_ECDSA suites only: classical ECDSA", mode: PQAlways, check: true, client: profTLS12ECDSASuites, want: classical},
		{name: "no parsed hello, go: its _cert list unknown, classical", mode: PQAlways, check: true, client: profGo, noHello: true, want: classical},
		{name: "no parsed hello, chromium: its _cert list unknown, classical", mode: PQAlways, check: true, client: profChromium, noHello: true, want: classical},
		{name: "no parsed hello, ML-DSA-only client: the classical leaf cannot sign for it, none", mode: PQAlways, check: true, client: profMLDSA, noHello: true},
		{name: "without the check, go gets ML-DSA as before", mode: PQAlways, client: profGo, want: pq},
		{name: "without the check, mldsa65 alone gets ML-DSA as before", mode: PQAlways, client: profOnly65, want: pq},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Selector{Classical: classical, PQ: pq, Mode: tt.mode, VerifiableChainsOnly: tt.check}
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			info, hello := tt.client.hello()
			if tt.noHello {
				hello = nil
			}
			got, err := s.Pick(info, hello)
			if tt.want == nil {
				if !errors.Is(err, ErrNoVerifiableChain) || !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("Pick = %v, %v; want ErrNoVerifiableChain", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Pick = %v, %v; want the %s chain", got, err, map[bool]string{true: "ML-DSA", false: "classical"}[tt.want == pq])
			}
		})
	}
	t.Run("ClassicalFor supplies the chain, and is judged", func(t *testing.T) {
		calls := 0
		s := &Selector{PQ: pq, Mode: PQAlways, VerifiableChainsOnly: true,
			ClassicalFor: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { calls++; return classical, nil }}
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			client clientProfile
			want   *tls.Certificate
		}{{profChromium, pq}, {profGo, classical}, {profOnly65, nil}} {
			info, hello := c.client.hello()
			got, err := s.Pick(info, hello)
			if got != c.want || (c.want == nil) != errors.Is(err, ErrNoVerifiableChain) {
				t.Errorf("Pick = %v, %v", got, err)
			}
		}
		if calls != 2 {
			t.Errorf("ClassicalFor called %d times, want 2 (not for the client that gets PQ)", calls)
		}
		both := &Selector{Classical: classical, ClassicalFor: s.ClassicalFor}
		if err := both.Validate(); err == nil {
			t.Error("Validate accepted both Classical and ClassicalFor")
		}
	})
	t.Run("PQ only, no classical", func(t *testing.T) {
		s := &Selector{PQ: pq, Mode: PQAlways, VerifiableChainsOnly: true}
		info, hello := profGo.hello()
		if _, err := s.Pick(info, hello); !errors.Is(err, ErrNoVerifiableChain) {
			t.Fatalf("Pick error = %v, want ErrNoVerifiableChain", err)
		}
		// Without the ClientHello the only chain is judged by
		// signature_algorithms alone: nothing safer is left to serve.
		if got, err := s.Pick(info, nil); got != pq || err != nil {
			t.Fatalf("Pick without the ClientHello = %v, %v; want the ML-DSA chain", got, err)
		}
		info, _ = profFirefox.hello()
		if _, err := s.Pick(info, nil); !errors.Is(err, ErrNoVerifiableChain) {
			t.Fatalf("Pick without the ClientHello, no ML-DSA offered: error = %v, want ErrNoVerifiableChain", err)
		}
	})
	t.Run("Validate refuses a chain TLS cannot name", func(t *testing.T) {
		broken := &tls.Certificate{Certificate: [][]byte{classical.Certificate[0], []byte("not a certificate")}, PrivateKey: classical.PrivateKey, Leaf: classical.Leaf}
		s := &Selector{Classical: broken, VerifiableChainsOnly: true}
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "certificate 2 of the chain") {
			t.Fatalf("Validate = %v", err)
		}
	})
	t.Run("no allocation when it succeeds", func(t *testing.T) {
		for _, validated := range []bool{false, true} {
			s := &Selector{Classical: classical, PQ: pq, Mode: PQAlways, VerifiableChainsOnly: true}
			if validated {
				// Validate keeps the chains parsed for Pick.
				if err := s.Validate(); err != nil {
					t.Fatal(err)
				}
			}
			info, hello := profGo.hello()
			if n := testing.AllocsPerRun(50, func() { s.Pick(info, hello) }); n != 0 {
				t.Errorf("Pick (validated %v) allocates %v times", validated, n)
			}
		}
	})
}

// TestGodebugValue reads GODEBUG as the runtime does: the last setting of
// a key wins.
func TestGodebugValue(t *testing.T) {
	for _, tt := range []struct{ godebug, want string }{
		{"", ""},
		{"tlssha1=1", "1"},
		{"x509sha1=1,tlssha1=0", "0"},
		{"tlssha1=1,http2debug=2,tlssha1=0", "0"},
		{"tlssha10=1", ""},
		{"tlssha1", ""},
	} {
		if got := godebugValue(tt.godebug, "tlssha1"); got != tt.want {
			t.Errorf("godebugValue(%q) = %q, want %q", tt.godebug, got, tt.want)
		}
	}
}

// schemeOf is x509's view of a signature algorithm, for FuzzCertSignature.
var schemeOf = map[x509.SignatureAlgorithm]tls.SignatureScheme{
	x509.ECDSAWithSHA256: tls.ECDSAWithP256AndSHA256, x509.ECDSAWithSHA384: tls.ECDSAWithP384AndSHA384,
	x509.ECDSAWithSHA512: tls.ECDSAWithP521AndSHA512, x509.ECDSAWithSHA1: tls.ECDSAWithSHA1,
	x509.SHA256WithRSA: tls.PKCS1WithSHA256, x509.SHA384WithRSA: tls.PKCS1WithSHA384,
	x509.SHA512WithRSA: tls.PKCS1WithSHA512, x509.SHA1WithRSA: tls.PKCS1WithSHA1,
	x509.SHA256WithRSAPSS: tls.PSSWithSHA256, x509.SHA384WithRSAPSS: tls.PSSWithSHA384,
	x509.SHA512WithRSAPSS: tls.PSSWithSHA512, x509.PureEd25519: tls.Ed25519,
	x509.MLDSA44: tls.MLDSA44, x509.MLDSA65: tls.MLDSA65, x509.MLDSA87: tls.MLDSA87,
}

// FuzzCertSignature fuzzes the allocation-free certificate slicer behind
// VerifiableChainsOnly: whatever it reads from a certificate crypto/x509
// accepts must be what crypto/x509 reads.
func FuzzCertSignature(f *testing.F) {
	for _, file := range []string{"testdata/openssl-ecdsa.crt", "testdata/openssl-rsa.crt", "testdata/openssl-ed25519.crt",
		"testdata/openssl-mldsa44.crt", "testdata/openssl-mldsa65.crt", "testdata/openssl-mldsa87.crt", "testdata/circl-mldsa65.crt"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		chain, err := ParseCertificatesPEM(b)
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range chain {
			f.Add(c.Raw)
		}
	}
	f.Add(testChain(f, x509.SHA384WithRSAPSS, AlgRSA, AlgRSA).Certificate[0])
	f.Fuzz(func(t *testing.T, der []byte) {
		iss, sub, schemes, ok := certSignature(der)
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		want, known := schemeOf[c.SignatureAlgorithm]
		if ok != known || ok && schemes[0] != want {
			t.Fatalf("certSignature = %v, %v; x509 says %v", schemes, ok, c.SignatureAlgorithm)
		}
		if ok && (!bytes.Equal(iss, c.RawIssuer) || !bytes.Equal(sub, c.RawSubject)) {
			t.Fatalf("certSignature sliced issuer %x subject %x; x509 says %x and %x", iss, sub, c.RawIssuer, c.RawSubject)
		}
	})
}
