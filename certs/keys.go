package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/mldsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	"github.com/pqedge/pqedge/pqtls"
)

// Alg names a key algorithm as pqedge's CLI and config spell it.
type Alg string

// Key algorithms pqedge can generate. RSA keys load but are never generated.
const (
	AlgMLDSA44   Alg = "mldsa44"
	AlgMLDSA65   Alg = "mldsa65"
	AlgMLDSA87   Alg = "mldsa87"
	AlgECDSAP256 Alg = "ecdsa-p256"
	AlgECDSAP384 Alg = "ecdsa-p384"
	AlgEd25519   Alg = "ed25519"
	AlgRSA       Alg = "rsa"
)

// KeyInfo describes a public key: its algorithm, the size of its encoding in
// a certificate and the size of the signatures it makes, which is what a
// chain costs on the wire.
type KeyInfo struct {
	Alg Alg
	// Name is the human name ("ML-DSA-65", "ECDSA P-256", "RSA-2048"), as
	// pqtls.KeyAlgorithm spells it everywhere in pqedge.
	Name string
	// PublicKeyBytes is the size of the raw public key (the BIT STRING of
	// the SubjectPublicKeyInfo).
	PublicKeyBytes int
	// SignatureBytes is the largest signature the key makes (DER ECDSA
	// signatures vary by a few bytes).
	SignatureBytes int
	// Scheme is the TLS 1.3 signature scheme a server with this key uses
	// in CertificateVerify (RSA keys: rsa_pss_rsae_sha256).
	Scheme tls.SignatureScheme
	// PostQuantum is true for ML-DSA keys.
	PostQuantum bool
}

// DescribeKey reports what pqedge knows of a public key. It is the package's
// one switch over key types: every other function that depends on the
// algorithm goes through it.
func DescribeKey(pub crypto.PublicKey) (KeyInfo, error) {
	info, err := describeKey(pub)
	if err != nil {
		return KeyInfo{}, err
	}
	info.Name = pqtls.KeyAlgorithm(pub)
	return info, nil
}

func describeKey(pub crypto.PublicKey) (KeyInfo, error) {
	switch k := pub.(type) {
	case *mldsa.PublicKey:
		p := k.Parameters()
		info := KeyInfo{PublicKeyBytes: p.PublicKeySize(), SignatureBytes: p.SignatureSize(), PostQuantum: true}
		switch p {
		case mldsa.MLDSA44():
			info.Alg, info.Scheme = AlgMLDSA44, tls.MLDSA44
		case mldsa.MLDSA65():
			info.Alg, info.Scheme = AlgMLDSA65, tls.MLDSA65
		case mldsa.MLDSA87():
			info.Alg, info.Scheme = AlgMLDSA87, tls.MLDSA87
		default:
			return KeyInfo{}, fmt.Errorf("unsupported ML-DSA parameter set %s", p)
		}
		return info, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			// 1 + 2*32 uncompressed point; DER signature at most 72 bytes.
			return KeyInfo{Alg: AlgECDSAP256, PublicKeyBytes: 65, SignatureBytes: 72, Scheme: tls.ECDSAWithP256AndSHA256}, nil
		case elliptic.P384():
			return KeyInfo{Alg: AlgECDSAP384, PublicKeyBytes: 97, SignatureBytes: 104, Scheme: tls.ECDSAWithP384AndSHA384}, nil
		case elliptic.P521():
			return KeyInfo{Alg: "ecdsa-p521", PublicKeyBytes: 133, SignatureBytes: 139, Scheme: tls.ECDSAWithP521AndSHA512}, nil
		}
		return KeyInfo{}, fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return KeyInfo{Alg: AlgEd25519, PublicKeyBytes: ed25519.PublicKeySize, SignatureBytes: ed25519.SignatureSize, Scheme: tls.Ed25519}, nil
	case *rsa.PublicKey:
		n := k.Size()
		// The PKCS#1 RSAPublicKey adds the SEQUENCE, the modulus' INTEGER
		// header and leading zero, and the exponent: about 14 bytes.
		return KeyInfo{Alg: AlgRSA, PublicKeyBytes: n + 14, SignatureBytes: n, Scheme: tls.PSSWithSHA256}, nil
	default:
		return KeyInfo{}, fmt.Errorf("unsupported key type %T", pub)
	}
}

// PostQuantum reports whether a is an ML-DSA algorithm.
func (a Alg) PostQuantum() bool {
	return a == AlgMLDSA44 || a == AlgMLDSA65 || a == AlgMLDSA87
}

// ParseAlg parses an algorithm name as the CLI and config accept it: one
// of LeafAlgs.
func ParseAlg(s string) (Alg, error) {
	a := Alg(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(LeafAlgs(), a) {
		return a, nil
	}
	return "", fmt.Errorf("unknown key algorithm %q (known: %s)", s, AlgList(LeafAlgs(), ", "))
}

// LeafAlgs are the algorithms a leaf may have (CA.Issue, ParseAlg), in
// the order help texts list them.
func LeafAlgs() []Alg {
	return []Alg{AlgMLDSA44, AlgMLDSA65, AlgMLDSA87, AlgECDSAP256, AlgECDSAP384, AlgEd25519}
}

// CAAlgs are the algorithms a root or intermediate may have (InitCA).
// Ed25519 and P-256 are left out: a CA outlives its leaves by years.
func CAAlgs() []Alg {
	return []Alg{AlgMLDSA87, AlgMLDSA65, AlgMLDSA44, AlgECDSAP384}
}

// AlgList joins algorithm names for a message: "mldsa44, mldsa65 or
// ecdsa-p256" with last = " or ", or all with ", ".
func AlgList(algs []Alg, last string) string {
	var b strings.Builder
	for i, a := range algs {
		switch {
		case i == 0:
		case i == len(algs)-1:
			b.WriteString(last)
		default:
			b.WriteString(", ")
		}
		b.WriteString(string(a))
	}
	return b.String()
}

// GenerateKey makes a new private key of algorithm a (AlgRSA: RSA-2048).
func GenerateKey(a Alg) (crypto.Signer, error) {
	switch a {
	case AlgMLDSA44:
		return mldsa.GenerateKey(mldsa.MLDSA44())
	case AlgMLDSA65:
		return mldsa.GenerateKey(mldsa.MLDSA65())
	case AlgMLDSA87:
		return mldsa.GenerateKey(mldsa.MLDSA87())
	case AlgECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case AlgEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case AlgRSA:
		// Only for comparisons (pqedge bench): RSA is never a default.
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("cannot generate keys of algorithm %q", a)
}

// MarshalKeyPEM encodes a private key as a "PRIVATE KEY" PEM block (PKCS#8).
// ML-DSA keys are written in seed-only form (RFC 9881 Section 6), which Go,
// OpenSSL 3.5 and circl all read.
func MarshalKeyPEM(key crypto.Signer) ([]byte, error) {
	if cs, ok := key.(*circlSigner); ok {
		key = cs.std
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("failed to encode the private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
