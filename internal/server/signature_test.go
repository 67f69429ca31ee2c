package server

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// TestReportedSignatureIsOnTheWire compares the signature scheme pqedge
// reports for a handshake (the metric label, PQEdge-TLS-Signature, the
// inspect page all read it from the handshake record) with the scheme the
// client saw in the server's signature: CertificateVerify for TLS 1.3 (read
// by the lean client), ServerKeyExchange for TLS 1.2 (read off the wire),
// for every key type.
func TestReportedSignatureIsOnTheWire(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	all := []tls.SignatureScheme{ // in an order unlike any key's default
		tls.PSSWithSHA512, tls.PKCS1WithSHA384, tls.ECDSAWithP521AndSHA512, tls.ECDSAWithP384AndSHA384,
		tls.Ed25519, tls.PSSWithSHA256, tls.ECDSAWithP256AndSHA256, tls.PKCS1WithSHA256,
		tls.MLDSA87, tls.MLDSA65, tls.MLDSA44,
	}
	for _, alg := range []certs.Alg{certs.AlgECDSAP256, certs.AlgECDSAP384, certs.AlgEd25519, certs.AlgRSA, certs.AlgMLDSA44, certs.AlgMLDSA65, certs.AlgMLDSA87} {
		t.Run(string(alg), func(t *testing.T) {
			base := filepath.Join(dir, string(alg))
			if alg == certs.AlgRSA {
				writeRSAPair(t, base, "sig.test") // the CA issues no RSA leaves
			} else {
				leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"sig.test"}, Alg: alg})
				if err != nil {
					t.Fatal(err)
				}
				if err := certs.WriteKeyPair(base, leaf); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			var reported []tls.SignatureScheme
			cfgText := baseConfig + fmt.Sprintf(`
[[site]]
name = "sig"
server_names = ["sig.test"]
certs = "files"
pq_certs = "always"
[[site.cert]]
cert = %q
key = %q
[site.tls]
min_version = "1.2"
[[site.route]]
path = "/"
handler = "inspect"
`, base+".crt", base+".key")
			d := t.TempDir()
			srv, err := New(loadConfig(t, d, cfgText), Options{Logger: testLogger(t), OnHandshake: func(ev HandshakeEvent) {
				if ev.Handshake != nil {
					mu.Lock()
					reported = append(reported, ev.Handshake.Signature)
					mu.Unlock()
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Shutdown(t.Context()) })
			addr := srv.ListenerAddr("https").String()
			last := func() tls.SignatureScheme {
				var s tls.SignatureScheme
				waitFor(t, "the handshake record", func() bool {
					mu.Lock()
					defer mu.Unlock()
					if len(reported) == 0 {
						return false
					}
					s, reported = reported[0], reported[1:]
					return true
				})
				return s
			}

			res, err := leanclient.Dial(t.Context(), addr, &leanclient.Config{ServerName: "sig.test", Groups: []tls.CurveID{tls.X25519MLKEM768},
				SignatureAlgorithms: all, VerifySignature: true, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatalf("TLS 1.3: %v", err)
			}
			if got := last(); got != res.SignatureScheme {
				t.Errorf("TLS 1.3: reported %s, signed %s", pqtls.SignatureName(got), pqtls.SignatureName(res.SignatureScheme))
			}
			if alg.PostQuantum() {
				return // ML-DSA does not exist in TLS 1.2
			}
			wire, err := tls12Signature(addr, "sig.test")
			if err != nil {
				t.Fatalf("TLS 1.2: %v", err)
			}
			if got := last(); got != wire {
				t.Errorf("TLS 1.2: reported %s, signed %s", pqtls.SignatureName(got), pqtls.SignatureName(wire))
			}
		})
	}
}

// tls12Signature makes a TLS 1.2 handshake with a Go client and returns
// the signature algorithm of the server's ServerKeyExchange, read from the
// plaintext server flight (RFC 5246 section 7.4.3; RFC 8422 section 5.4).
func tls12Signature(addr, name string) (tls.SignatureScheme, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	rec := &recordingConn{Conn: raw}
	c := tls.Client(rec, &tls.Config{ServerName: name, MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true})
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	msgs, err := handshakeMessages(rec.read.Bytes())
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if m[0] != 12 { // server_key_exchange
			continue
		}
		b := m[4:]
		// curve_type, named_curve, point, then the signature.
		if len(b) < 4 || b[0] != 3 {
			return 0, fmt.Errorf("unexpected ServerKeyExchange % x", b[:min(len(b), 8)])
		}
		pointLen := int(b[3])
		if len(b) < 4+pointLen+2 {
			return 0, fmt.Errorf("short ServerKeyExchange")
		}
		return tls.SignatureScheme(binary.BigEndian.Uint16(b[4+pointLen:])), nil
	}
	return 0, fmt.Errorf("no ServerKeyExchange in the server flight")
}

// handshakeMessages reassembles the plaintext handshake messages at the
// start of a TLS 1.2 byte stream, up to ChangeCipherSpec.
func handshakeMessages(stream []byte) ([][]byte, error) {
	var hs []byte
	for len(stream) >= 5 && stream[0] == 22 {
		n := int(binary.BigEndian.Uint16(stream[3:5]))
		if len(stream) < 5+n {
			break
		}
		hs = append(hs, stream[5:5+n]...)
		stream = stream[5+n:]
	}
	var msgs [][]byte
	for len(hs) >= 4 {
		n := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
		if len(hs) < 4+n {
			return nil, fmt.Errorf("truncated handshake message %d", hs[0])
		}
		msgs = append(msgs, hs[:4+n])
		hs = hs[4+n:]
	}
	return msgs, nil
}

// recordingConn keeps a copy of every byte read.
type recordingConn struct {
	net.Conn
	read bytes.Buffer
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Write(b[:n])
	return n, err
}

// writeRSAPair writes a self-signed RSA-2048 certificate for name and its
// key as BASE.crt and BASE.key.
func writeRSAPair(t *testing.T, base, name string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
}
