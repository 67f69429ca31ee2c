package leanclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/mldsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// newKey makes a private key of one of the test algorithms.
func newKey(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case "ecdsa":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case "mldsa44":
		k, err = mldsa.GenerateKey(mldsa.MLDSA44())
	case "mldsa65":
		k, err = mldsa.GenerateKey(mldsa.MLDSA65())
	case "mldsa87":
		k, err = mldsa.GenerateKey(mldsa.MLDSA87())
	default:
		t.Fatalf("unknown key algorithm %q", alg)
	}
	if err != nil {
		t.Fatalf("failed to generate %s key: %v", alg, err)
	}
	return k
}

// testChain is a CA and a leaf for "localhost" and 127.0.0.1, both of one
// algorithm.
type testChain struct {
	cert  tls.Certificate // leaf + CA, for the server
	roots *x509.CertPool
}

func newTestChain(t testing.TB, alg string) testChain {
	t.Helper()
	caKey, leafKey := newKey(t, alg), newKey(t, alg)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "leanclient test CA " + alg},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatalf("failed to create %s CA: %v", alg, err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, leafKey.Public(), caKey)
	if err != nil {
		t.Fatalf("failed to create %s leaf: %v", alg, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return testChain{
		cert:  tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey},
		roots: roots,
	}
}

// serverResult is what the crypto/tls server saw of one connection.
type serverResult struct {
	state tls.ConnectionState
	err   error
}

// startGoServer runs a crypto/tls server on loopback until the test ends.
// Each connection's handshake outcome goes to the returned channel.
func startGoServer(t testing.TB, cfg *tls.Config) (addr string, results <-chan serverResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("failed to listen: %v", err)
	}
	ch := make(chan serverResult, 64)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, cfg)
				// Bounds a test whose client stalls.
				tc.SetDeadline(time.Now().Add(20 * time.Second))
				err := tc.Handshake()
				r := serverResult{state: tc.ConnectionState(), err: err}
				if err == nil {
					// Read until the client's close_notify or EOF so the
					// client's drain completes.
					_, rerr := io.Copy(io.Discard, tc)
					if rerr != nil && !errors.Is(rerr, io.EOF) {
						r.err = rerr
					}
				}
				select {
				case ch <- r:
				default:
				}
			}()
		}
	}()
	return ln.Addr().String(), ch
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
