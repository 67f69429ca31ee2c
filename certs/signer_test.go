package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/mldsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

var mldsaAlgs = []Alg{AlgMLDSA44, AlgMLDSA65, AlgMLDSA87}

func TestCirclSigner(t *testing.T) {
	for _, a := range mldsaAlgs {
		t.Run(string(a), func(t *testing.T) {
			std := mustKey(t, a).(*mldsa.PrivateKey)
			s, err := NewCirclSigner(std)
			if err != nil {
				t.Fatal(err)
			}
			pub, ok := s.Public().(*mldsa.PublicKey)
			if !ok || !pub.Equal(std.PublicKey()) {
				t.Fatalf("Public() = %T, want the standard library key", s.Public())
			}
			msg := []byte("TLS 1.3, server CertificateVerify\x00 transcript hash")
			sig1, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
			if err != nil {
				t.Fatal(err)
			}
			if err := mldsa.Verify(pub, msg, sig1, nil); err != nil {
				t.Fatalf("crypto/mldsa rejects the circl signature: %v", err)
			}
			sig2, err := crypto.SignMessage(s, rand.Reader, msg, &mldsa.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(sig1, sig2) {
				t.Error("two signatures of one message are equal: signing is not hedged")
			}
			if err := mldsa.Verify(pub, msg, sig2, nil); err != nil {
				t.Fatal(err)
			}
			ctxSig, err := s.Sign(nil, msg, &mldsa.Options{Context: "pqedge"})
			if err != nil {
				t.Fatal(err)
			}
			if err := mldsa.Verify(pub, msg, ctxSig, &mldsa.Options{Context: "pqedge"}); err != nil {
				t.Fatalf("context signature: %v", err)
			}
			if mldsa.Verify(pub, msg, ctxSig, nil) == nil {
				t.Fatal("a signature with a context verified without it")
			}
			for _, h := range []crypto.Hash{crypto.SHA256, crypto.MLDSAMu} {
				if _, err := s.Sign(nil, msg, h); err == nil || !strings.Contains(err.Error(), "pre-hashed") {
					t.Errorf("Sign with %v: error %v, want a pre-hashed refusal", h, err)
				}
			}
		})
	}
}

func TestWrapSigner(t *testing.T) {
	ml := &tls.Certificate{PrivateKey: mustKey(t, AlgMLDSA65)}
	std := ml.PrivateKey
	if err := WrapSigner(ml, SignerCircl); err != nil {
		t.Fatal(err)
	}
	if _, ok := ml.PrivateKey.(*circlSigner); !ok {
		t.Fatalf("after circl: %T", ml.PrivateKey)
	}
	if err := WrapSigner(ml, SignerCircl); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := WrapSigner(ml, SignerStdlib); err != nil {
		t.Fatal(err)
	}
	if ml.PrivateKey != std {
		t.Fatalf("after stdlib: %T, want the original key", ml.PrivateKey)
	}
	ec := &tls.Certificate{PrivateKey: mustKey(t, AlgECDSAP256)}
	before := ec.PrivateKey
	if err := WrapSigner(ec, SignerCircl); err != nil || ec.PrivateKey != before {
		t.Fatalf("classical key changed (%v)", err)
	}
	if err := WrapSigner(ml, "openssl"); err == nil {
		t.Fatal("unknown signer kind accepted")
	}
	// A key written from a wrapped certificate is the standard seed form.
	if err := WrapSigner(ml, SignerCircl); err != nil {
		t.Fatal(err)
	}
	keyPEM, err := MarshalKeyPEM(ml.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKeyPEM(keyPEM)
	if err != nil || !back.(*mldsa.PrivateKey).Equal(std) {
		t.Fatalf("round trip through a wrapped key: %v", err)
	}
}

// TestCirclSignerHandshake runs full TLS 1.3 handshakes between crypto/tls
// peers where the server signs with circl and the client verifies with
// crypto/mldsa.
func TestCirclSignerHandshake(t *testing.T) {
	for _, a := range mldsaAlgs {
		t.Run(string(a), func(t *testing.T) {
			ca, err := InitCA(t.TempDir(), CAOptions{Alg: AlgMLDSA87})
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := ca.Issue(LeafOptions{Names: []string{"pq.test"}, Alg: a})
			if err != nil {
				t.Fatal(err)
			}
			if err := WrapSigner(leaf, SignerCircl); err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca.Root)
			state := handshakePipe(t, &tls.Config{Certificates: []tls.Certificate{*leaf}},
				&tls.Config{RootCAs: roots, ServerName: "pq.test"})
			if state.CurveID != tls.X25519MLKEM768 {
				t.Errorf("group %v", state.CurveID)
			}
			if got, _ := DescribeKey(state.PeerCertificates[0].PublicKey); got.Alg != a {
				t.Errorf("peer key %s", got.Alg)
			}
			// Prove crypto/tls signs through the wrapper: break it and the
			// handshake must fail.
			cs := leaf.PrivateKey.(*circlSigner)
			broken := *cs
			broken.signTo = func(_, _, sig []byte) error { clear(sig); return nil }
			leaf.PrivateKey = &broken
			if err := handshakeErr(&tls.Config{Certificates: []tls.Certificate{*leaf}}, &tls.Config{RootCAs: roots, ServerName: "pq.test"}); err == nil {
				t.Fatal("handshake succeeded with a signer writing zero signatures: the circl signer is not on the signing path")
			}
		})
	}
}

// handshakeErr runs one handshake over net.Pipe and returns the client's error.
func handshakeErr(server, client *tls.Config) error {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		s := tls.Server(c2, server)
		s.HandshakeContext(ctx)
		s.Close()
	}()
	return tls.Client(c1, client).HandshakeContext(ctx)
}

// handshakePipe completes one handshake over net.Pipe and returns the
// client's view.
func handshakePipe(t testing.TB, server, client *tls.Config) tls.ConnectionState {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	// Bounds a broken handshake, which would otherwise block on the pipe.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		s := tls.Server(c2, server)
		errc <- s.HandshakeContext(ctx)
	}()
	c := tls.Client(c1, client)
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("client handshake: %v (server: %v)", err, <-errc)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	return c.ConnectionState()
}
