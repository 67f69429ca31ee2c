package certs

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/mldsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadKeyPair(t *testing.T) {
	tests := []struct {
		name      string
		cert, key string // files under testdata/
		wantAlg   Alg
		wantErr   string // substring; "" means success
	}{
		{name: "openssl mldsa44 seed+expanded (default)", cert: "openssl-mldsa44.crt", key: "openssl-mldsa44.key", wantAlg: AlgMLDSA44},
		{name: "openssl mldsa65 seed+expanded (default)", cert: "openssl-mldsa65.crt", key: "openssl-mldsa65.key", wantAlg: AlgMLDSA65},
		{name: "openssl mldsa87 seed+expanded (default)", cert: "openssl-mldsa87.crt", key: "openssl-mldsa87.key", wantAlg: AlgMLDSA87},
		{name: "openssl mldsa44 seed-only", cert: "openssl-mldsa44.crt", key: "openssl-mldsa44-seed.key", wantAlg: AlgMLDSA44},
		{name: "openssl mldsa65 seed-only", cert: "openssl-mldsa65.crt", key: "openssl-mldsa65-seed.key", wantAlg: AlgMLDSA65},
		{name: "openssl mldsa87 seed-only", cert: "openssl-mldsa87.crt", key: "openssl-mldsa87-seed.key", wantAlg: AlgMLDSA87},
		{name: "openssl mldsa44 expanded-only", cert: "openssl-mldsa44.crt", key: "openssl-mldsa44-expanded.key", wantErr: "only the expanded key"},
		{name: "openssl mldsa65 expanded-only", cert: "openssl-mldsa65.crt", key: "openssl-mldsa65-expanded.key", wantErr: "only the expanded key"},
		{name: "openssl mldsa87 expanded-only", cert: "openssl-mldsa87.crt", key: "openssl-mldsa87-expanded.key", wantErr: "only the expanded key"},
		{name: "circl ML-DSA-65 PRIVATE KEY", cert: "circl-mldsa65.crt", key: "circl-mldsa65.key", wantAlg: AlgMLDSA65},
		{name: "ecdsa pkcs8", cert: "openssl-ecdsa.crt", key: "openssl-ecdsa.key", wantAlg: AlgECDSAP256},
		{name: "ecdsa sec1", cert: "openssl-ecdsa.crt", key: "openssl-ecdsa-sec1.key", wantAlg: AlgECDSAP256},
		{name: "rsa pkcs8", cert: "openssl-rsa.crt", key: "openssl-rsa.key", wantAlg: AlgRSA},
		{name: "rsa pkcs1", cert: "openssl-rsa.crt", key: "openssl-rsa-pkcs1.key", wantAlg: AlgRSA},
		{name: "ed25519", cert: "openssl-ed25519.crt", key: "openssl-ed25519.key", wantAlg: AlgEd25519},
		{name: "key of another certificate", cert: "openssl-mldsa65.crt", key: "openssl-mldsa44.key", wantErr: "does not match the certificate"},
		{name: "files swapped", cert: "openssl-ecdsa.key", key: "openssl-ecdsa.crt", wantErr: "may be swapped"},
		{name: "missing key", cert: "openssl-ecdsa.crt", key: "nonexistent.key", wantErr: "nonexistent.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadKeyPair(filepath.Join("testdata", tt.cert), filepath.Join("testdata", tt.key))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadKeyPair error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			info, err := DescribeKey(c.Leaf.PublicKey)
			if err != nil || info.Alg != tt.wantAlg {
				t.Fatalf("DescribeKey = %+v, %v; want %s", info, err, tt.wantAlg)
			}
			// The pair must sign something the certificate verifies:
			// a key that merely parses is not enough.
			msg := []byte("pqedge key pair check")
			signer := c.PrivateKey.(crypto.Signer)
			var opts crypto.SignerOpts = crypto.SHA256
			digest := msg
			switch info.Alg {
			case AlgMLDSA44, AlgMLDSA65, AlgMLDSA87, AlgEd25519:
				opts = crypto.Hash(0)
			default:
				h := crypto.SHA256.New()
				h.Write(msg)
				digest = h.Sum(nil)
			}
			sig, err := signer.Sign(rand.Reader, digest, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyWith(c.Leaf.PublicKey, msg, digest, sig); err != nil {
				t.Fatalf("signature does not verify with the certificate: %v", err)
			}
		})
	}
}

func verifyWith(pub crypto.PublicKey, msg, digest, sig []byte) error {
	switch k := pub.(type) {
	case *mldsa.PublicKey:
		return mldsa.Verify(k, msg, sig, nil)
	case ed25519.PublicKey:
		if !ed25519.Verify(k, msg, sig) {
			return errVerify
		}
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return errVerify
		}
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig)
	}
	return nil
}

var errVerify = os.ErrInvalid

func TestParseKeyPEMErrors(t *testing.T) {
	both, err := os.ReadFile("testdata/openssl-mldsa65.key")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(both)
	corrupt := append([]byte(nil), block.Bytes...)
	corrupt[len(corrupt)-10] ^= 0x01 // inside the expanded key
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519DER, err := x509.MarshalPKCS8PrivateKey(x25519)
	if err != nil {
		t.Fatal(err)
	}
	seed44, err := os.ReadFile("testdata/openssl-mldsa44-seed.key")
	if err != nil {
		t.Fatal(err)
	}
	b44, _ := pem.Decode(seed44)
	ecDER, err := x509.MarshalPKCS8PrivateKey(mustKey(t, AlgECDSAP256))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, pem, wantErr string
	}{
		{"expanded key does not match seed", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: corrupt})), "does not match its seed"},
		{"unsupported key type", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: x25519DER})), "unsupported key type *ecdh.PrivateKey"},
		{"encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"},
		{"unknown block", "-----BEGIN DSA PRIVATE KEY-----\nMAA=\n-----END DSA PRIVATE KEY-----\n", "convert it to PKCS#8"},
		{"no PEM", "not a key", "no PRIVATE KEY PEM block"},
		{"garbage PKCS#8", "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n", "failed to parse PKCS#8"},
		{"circl block holding an ECDSA key", string(pem.EncodeToMemory(&pem.Block{Type: "ML-DSA-44 PRIVATE KEY", Bytes: ecDER})), "says ML-DSA-44 but the key inside is ECDSA P-256"},
		{"circl block with wrong level", string(pem.EncodeToMemory(&pem.Block{Type: "ML-DSA-65 PRIVATE KEY", Bytes: b44.Bytes})), "says ML-DSA-65 but the key inside is ML-DSA-44"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeyPEM([]byte(tt.pem))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseKeyPEM error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDescribeKey(t *testing.T) {
	gen := func(a Alg) crypto.PublicKey {
		k, err := GenerateKey(a)
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		pub        crypto.PublicKey
		alg        Alg
		pubBytes   int
		sigBytes   int
		scheme     tls.SignatureScheme
		postQuantu bool
		wantErr    string
	}{
		{name: "mldsa44", pub: gen(AlgMLDSA44), alg: AlgMLDSA44, pubBytes: 1312, sigBytes: 2420, scheme: tls.MLDSA44, postQuantu: true},
		{name: "mldsa65", pub: gen(AlgMLDSA65), alg: AlgMLDSA65, pubBytes: 1952, sigBytes: 3309, scheme: tls.MLDSA65, postQuantu: true},
		{name: "mldsa87", pub: gen(AlgMLDSA87), alg: AlgMLDSA87, pubBytes: 2592, sigBytes: 4627, scheme: tls.MLDSA87, postQuantu: true},
		{name: "ecdsa-p256", pub: gen(AlgECDSAP256), alg: AlgECDSAP256, pubBytes: 65, sigBytes: 72, scheme: tls.ECDSAWithP256AndSHA256},
		{name: "ecdsa-p384", pub: gen(AlgECDSAP384), alg: AlgECDSAP384, pubBytes: 97, sigBytes: 104, scheme: tls.ECDSAWithP384AndSHA384},
		{name: "ecdsa-p521", pub: &p521.PublicKey, alg: "ecdsa-p521", pubBytes: 133, sigBytes: 139, scheme: tls.ECDSAWithP521AndSHA512},
		{name: "ed25519", pub: gen(AlgEd25519), alg: AlgEd25519, pubBytes: 32, sigBytes: 64, scheme: tls.Ed25519},
		{name: "rsa2048", pub: &rsaKey.PublicKey, alg: AlgRSA, pubBytes: 270, sigBytes: 256, scheme: tls.PSSWithSHA256},
		{name: "x25519", pub: x25519.PublicKey(), wantErr: "unsupported key type *ecdh.PublicKey"},
		{name: "mldsa private key", pub: mustKey(t, AlgMLDSA44), wantErr: "unsupported key type *mldsa.PrivateKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := DescribeKey(tt.pub)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.Alg != tt.alg || info.PublicKeyBytes != tt.pubBytes || info.SignatureBytes != tt.sigBytes || info.Scheme != tt.scheme || info.PostQuantum != tt.postQuantu {
				t.Fatalf("DescribeKey = %+v", info)
			}
			// The public key size must be what x509 actually encodes.
			spki, err := x509.MarshalPKIXPublicKey(tt.pub)
			if err != nil {
				t.Fatal(err)
			}
			if len(spki) < tt.pubBytes || len(spki) > tt.pubBytes+40 {
				t.Errorf("SPKI is %d bytes, PublicKeyBytes %d", len(spki), tt.pubBytes)
			}
		})
	}
}

func mustKey(t testing.TB, a Alg) crypto.Signer {
	t.Helper()
	k, err := GenerateKey(a)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCheck(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	c, err := signCert(leafTemplate([]string{"example.test", "127.0.0.1"}, now, 24*time.Hour), mustKey(t, AlgECDSAP256), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		names   []string
		now     time.Time
		wantErr string
	}{
		{name: "ok", names: []string{"example.test", "127.0.0.1"}, now: now},
		{name: "wrong name", names: []string{"other.test"}, now: now, wantErr: `does not cover "other.test"`},
		{name: "expired", names: []string{"example.test"}, now: now.Add(48 * time.Hour), wantErr: "expired on 2026-06-02"},
		{name: "not yet valid", now: now.Add(-48 * time.Hour), wantErr: "not valid before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(c.Leaf, tt.names, tt.now)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzParseKeyPEM feeds key files in every encoding pqedge reads; the parser
// must not panic and anything it accepts must be a usable signer.
func FuzzParseKeyPEM(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.key")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKeyPEM(data)
		if err != nil {
			return
		}
		if _, err := DescribeKey(k.Public()); err != nil {
			t.Fatalf("accepted a key DescribeKey rejects: %v", err)
		}
	})
}

// FuzzParsePKCS8 fuzzes the DER layer directly, where the ML-DSA CHOICE
// parsing lives.
func FuzzParsePKCS8(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.key")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if blk, _ := pem.Decode(b); blk != nil {
			f.Add(blk.Bytes)
		}
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := ParsePKCS8(der)
		if err != nil {
			return
		}
		if ml, ok := k.(*mldsa.PrivateKey); ok && len(ml.Bytes()) != mldsa.PrivateKeySize {
			t.Fatalf("ML-DSA key with a %d-byte seed", len(ml.Bytes()))
		}
	})
}
