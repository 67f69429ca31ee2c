package server

import (
	"crypto/mldsa"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// TestFileCertificatesRotate: replacing a site's certificate files makes new
// handshakes get the new certificate without a restart, an established
// connection keeps working, and broken files are refused while the current
// certificate keeps serving.
func TestFileCertificatesRotate(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	issue := func() *x509.Certificate {
		leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"localhost"}, Alg: certs.AlgECDSAP256})
		if err != nil {
			t.Fatal(err)
		}
		if err := certs.WriteKeyPair(filepath.Join(dir, "site"), leaf); err != nil {
			t.Fatal(err)
		}
		return leaf.Leaf
	}
	first := issue()
	ts := startServer(t, baseConfig+filesInspectSite(dir+"/site.crt", dir+"/site.key"))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root)
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", ts.addr("https"), &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	if served().SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("the server does not serve the configured certificate")
	}
	established, err := tls.Dial("tcp", ts.addr("https"), &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer established.Close()

	// Make sure the new files differ in modification time even on coarse
	// file systems.
	time.Sleep(10 * time.Millisecond)
	second := issue()
	ts.srv.refreshCerts()
	if got := served(); got.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Errorf("after rotation the server serves serial %v, want the new %v", got.SerialNumber, second.SerialNumber)
	}
	established.Write([]byte("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
	buf := make([]byte, 12)
	established.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := established.Read(buf); err != nil || string(buf) != "HTTP/1.1 200" {
		t.Errorf("a connection made before the rotation broke: %q %v", buf, err)
	}

	// A broken replacement is refused; the current certificate stays.
	os.WriteFile(filepath.Join(dir, "site.crt"), []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o644)
	ts.srv.refreshCerts()
	if got := served(); got.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Errorf("a broken certificate file replaced the working certificate")
	}
	if got := ts.metric(`pqedge_certificate_reload_failures_total{site="local"}`); got != "1" {
		t.Errorf("failed rotations counted %q, want 1", got)
	}
}

// TestPQRootForFileCertificates: a "files" site with a bare ML-DSA leaf can
// use pq_certs = "trusted" only when pq_root names the root it chains to.
func TestPQRootForFileCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgMLDSA65})
	if err != nil {
		t.Fatal(err)
	}
	for base, alg := range map[string]certs.Alg{"classical": certs.AlgECDSAP256, "pq": certs.AlgMLDSA44} {
		leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"localhost"}, Alg: alg})
		if err != nil {
			t.Fatal(err)
		}
		if err := certs.WriteKeyPair(filepath.Join(dir, base), leaf); err != nil {
			t.Fatal(err)
		}
	}
	site := func(pqRoot string) string {
		return baseConfig + inspectSiteWith(`certs = "files"
pq_certs = "trusted"
`+pqRoot+`
[[site.cert]]
cert = "`+dir+`/classical.crt"
key = "`+dir+`/classical.key"
[[site.cert]]
cert = "`+dir+`/pq.crt"
key = "`+dir+`/pq.key"
`)
	}
	cfg := loadConfig(t, t.TempDir(), site(""))
	if _, err := (&certSource{cfg: cfg, now: time.Now()}).selector(cfg.Site[0]); err == nil {
		t.Error("trusted mode without pq_root was accepted for a bare ML-DSA leaf")
	}
	cfg = loadConfig(t, t.TempDir(), site(`pq_root = "`+dir+`/ca/root.crt"`))
	sel, err := (&certSource{cfg: cfg, now: time.Now()}).selector(cfg.Site[0])
	if err != nil {
		t.Fatalf("with pq_root: %v", err)
	}
	if len(sel.PQRoots) != 1 || !sel.PQRoots[0].Equal(ca.Root) {
		t.Errorf("selector roots = %v, want the CA root", sel.PQRoots)
	}
	if sel.PQ == nil || sel.Classical == nil {
		t.Error("the ML-DSA and classical pairs were not both loaded")
	}
}

// TestMLDSASignerSelectable: ML-DSA signatures come from circl by default
// and from crypto/mldsa with mldsa_signer = "stdlib".
func TestMLDSASignerSelectable(t *testing.T) {
	for _, tt := range []struct {
		signer     string
		wantStdlib bool
	}{{"", false}, {"circl", false}, {"stdlib", true}} {
		t.Run("signer="+tt.signer, func(t *testing.T) {
			cfg := loadConfig(t, t.TempDir(), baseConfig+inspectSiteWith("[site.tls]\nmldsa_signer = \""+tt.signer+"\"\n"))
			sel, err := (&certSource{cfg: cfg, now: time.Now()}).selector(cfg.Site[0])
			if err != nil {
				t.Fatal(err)
			}
			_, isStdlib := sel.PQ.PrivateKey.(*mldsa.PrivateKey)
			if isStdlib != tt.wantStdlib {
				t.Errorf("ML-DSA key is %T", sel.PQ.PrivateKey)
			}
		})
	}
}

// TestLocalCertificatesRenew: a local leaf close to its end is re-issued by
// the periodic check and served without a restart; before that, the check
// leaves the files alone.
func TestLocalCertificatesRenew(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := t.TempDir()
	cfg := loadConfig(t, dir, baseConfig+inspectSite)
	srv, err := New(cfg, Options{Logger: testLogger(t), Now: clock, CertCheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", srv.ListenerAddr("https").String(), &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	first := served()
	srv.refreshCerts()
	if served().SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("a fresh local certificate was re-issued")
	}
	mu.Lock()
	now = first.NotAfter.Add(-certs.LocalRenewBefore / 2)
	mu.Unlock()
	srv.refreshCerts()
	if got := served(); got.SerialNumber.Cmp(first.SerialNumber) == 0 || !got.NotAfter.After(first.NotAfter) {
		t.Errorf("a local certificate %v from its end was not renewed", certs.LocalRenewBefore/2)
	}
}

// TestCertificateChangeSeenByContent: a replacement of the same size and
// modification time (what `cp -p` of a same-length file leaves) is seen,
// since the check reads the contents.
func TestCertificateChangeSeenByContent(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(base string) {
		leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"localhost"}, Alg: certs.AlgECDSAP256})
		if err != nil {
			t.Fatal(err)
		}
		if err := certs.WriteKeyPair(filepath.Join(dir, base), leaf); err != nil {
			t.Fatal(err)
		}
	}
	size := func(base string) int64 {
		fi, err := os.Stat(filepath.Join(dir, base+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	issue("site")
	// ECDSA signatures vary by a byte or two: issue until a second leaf has
	// exactly the first one's size.
	for i := 0; ; i++ {
		issue("next")
		if size("next") == size("site") {
			break
		}
		if i == 100 {
			t.Skip("no same-size certificate in 100 tries")
		}
	}
	ts := startServer(t, baseConfig+filesInspectSite(dir+"/site.crt", dir+"/site.key"))
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", ts.addr("https"), &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	first := served()
	for _, ext := range []string{".crt", ".key"} {
		src, dst := filepath.Join(dir, "next"+ext), filepath.Join(dir, "site"+ext)
		fi, err := os.Stat(dst)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(src)
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(dst, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	ts.srv.refreshCerts()
	if served().SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("a same-size, same-mtime replacement was not noticed")
	}
}

// TestCompatCertificatesRenew: the compat matrix's in-memory leaves are
// renewed by the certificate check, not only by a reload.
func TestCompatCertificatesRenew(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := t.TempDir()
	cfg := loadConfig(t, dir, compatConfig)
	srv, err := New(cfg, Options{Logger: testLogger(t), Now: clock, CertCheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", srv.ListenerAddr("compat-x25519-ecdsa-p256").String(), &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	first := served()
	srv.refreshCerts()
	if served().SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("a fresh compat certificate was re-issued")
	}
	mu.Lock()
	now = first.NotAfter.Add(-compatLeafRenewBefore / 2)
	mu.Unlock()
	srv.refreshCerts()
	if got := served(); got.SerialNumber.Cmp(first.SerialNumber) == 0 || !got.NotAfter.After(first.NotAfter) {
		t.Errorf("a compat certificate %v from its end was not renewed", compatLeafRenewBefore/2)
	}
}
