package proxy

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/pqtls"
)

// testPKI is a root CA that issues origin and client certificates.
type testPKI struct {
	root *x509.Certificate
	key  crypto.Signer
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, err := certs.GenerateKey(certs.AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	return &testPKI{root: root, key: key}
}

func (p *testPKI) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.root)
	return pool
}

// issue makes a leaf for cn with a key of alg, for usage (server or client
// authentication); server leaves name localhost and 127.0.0.1 too.
func (p *testPKI) issue(t *testing.T, cn string, alg certs.Alg, usage x509.ExtKeyUsage) *tls.Certificate {
	t.Helper()
	key, err := certs.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames = []string{cn, "localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.root, key.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// tlsOrigin is a Go HTTPS origin offering groups (nil: Go's defaults). It
// answers every request with what its side of the handshake saw:
// "group=NAME sni=NAME client=CN"; clientCAs, when set, make it require
// and verify a client certificate.
type tlsOrigin struct {
	addr string // 127.0.0.1:port

	mu          sync.Mutex // guards handshakes
	handshakes  int
	lastGroupID tls.CurveID
}

func newTLSOrigin(t *testing.T, pki *testPKI, groups []tls.CurveID, clientCAs *x509.CertPool) *tlsOrigin {
	t.Helper()
	o := &tlsOrigin{}
	leaf := pki.issue(t, "origin.test", certs.AlgECDSAP256, x509.ExtKeyUsageServerAuth)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := "none"
		if len(r.TLS.PeerCertificates) > 0 {
			client = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprintf(w, "group=%s sni=%s client=%s", pqtls.GroupName(r.TLS.CurveID), r.TLS.ServerName, client)
	}))
	s.TLS = &tls.Config{
		Certificates:     []tls.Certificate{*leaf},
		CurvePreferences: groups,
		VerifyConnection: func(cs tls.ConnectionState) error {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.handshakes++
			o.lastGroupID = cs.CurveID
			return nil
		},
	}
	if clientCAs != nil {
		s.TLS.ClientAuth, s.TLS.ClientCAs = tls.RequireAndVerifyClientCert, clientCAs
	}
	// The origin's own complaints (handshakes the tests make fail) are
	// expected.
	s.Config.ErrorLog = slog.NewLogLogger(quietLogger.Handler(), slog.LevelError)
	s.StartTLS()
	t.Cleanup(s.Close)
	o.addr = s.Listener.Addr().String()
	return o
}

func (o *tlsOrigin) seen() (int, tls.CurveID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.handshakes, o.lastGroupID
}

// logBuffer is a logger whose lines a test can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// contains reports whether a log line has every one of parts.
func (b *logBuffer) contains(parts ...string) bool {
	for _, line := range strings.Split(b.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
