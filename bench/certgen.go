package bench

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// CertAlg is a certificate algorithm of the matrix: a key algorithm and,
// for ML-DSA, which implementation signs the handshakes.
type CertAlg struct {
	Name string    // as the CLI spells it: "ecdsa-p256", "mldsa65-circl"
	Alg  certs.Alg // the key algorithm (certs.AlgRSA means RSA-2048)
	// Signer is the ML-DSA implementation ("" for classical keys).
	Signer certs.SignerKind
}

// CertAlgs lists every certificate algorithm the matrix knows, in the
// order of its tables: classical first, then ML-DSA with each signer.
func CertAlgs() []CertAlg {
	return []CertAlg{
		{Name: "ecdsa-p256", Alg: certs.AlgECDSAP256},
		{Name: "ed25519", Alg: certs.AlgEd25519},
		{Name: "rsa2048", Alg: certs.AlgRSA},
		{Name: "mldsa44-circl", Alg: certs.AlgMLDSA44, Signer: certs.SignerCircl},
		{Name: "mldsa44-stdlib", Alg: certs.AlgMLDSA44, Signer: certs.SignerStdlib},
		{Name: "mldsa65-circl", Alg: certs.AlgMLDSA65, Signer: certs.SignerCircl},
		{Name: "mldsa65-stdlib", Alg: certs.AlgMLDSA65, Signer: certs.SignerStdlib},
		{Name: "mldsa87-circl", Alg: certs.AlgMLDSA87, Signer: certs.SignerCircl},
		{Name: "mldsa87-stdlib", Alg: certs.AlgMLDSA87, Signer: certs.SignerStdlib},
	}
}

// ParseCertAlg finds a certificate algorithm by its CLI name.
func ParseCertAlg(name string) (CertAlg, error) {
	var names []string
	for _, a := range CertAlgs() {
		if a.Name == name {
			return a, nil
		}
		names = append(names, a.Name)
	}
	return CertAlg{}, fmt.Errorf("unknown certificate algorithm %q (known: %v)", name, names)
}

// PostQuantum reports whether the certificate has an ML-DSA key.
func (a CertAlg) PostQuantum() bool { return a.Signer != "" }

// KeyName is the key algorithm without the signer: "mldsa65".
func (a CertAlg) KeyName() string {
	if a.Alg == certs.AlgRSA {
		return "rsa2048"
	}
	return string(a.Alg)
}

// Chain is a generated certificate chain on disk: a root, an intermediate
// and a leaf, all of one key algorithm, so that the bytes a handshake
// carries (leaf and intermediate, two signatures and two public keys, plus
// the CertificateVerify) are what a real deployment of that algorithm
// sends.
//
// The root is not kept: the harness verifies no chain (it measures the
// server), so nothing would read it.
type Chain struct {
	CertFile, KeyFile string // leaf + intermediate (PEM), leaf key (PKCS#8)
	Cert              *tls.Certificate
}

// MakeChain generates a chain for alg valid for names and writes it to dir
// as NAME.crt and NAME.key.
func MakeChain(dir string, alg certs.Alg, names []string) (*Chain, error) {
	cert, _, err := certs.NewChain(alg, names, time.Now(), 30*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("failed to make the %s chain: %w", alg, err)
	}
	base := filepath.Join(dir, string(alg))
	if err := certs.WriteKeyPair(base, cert); err != nil {
		return nil, err
	}
	return &Chain{CertFile: base + ".crt", KeyFile: base + ".key", Cert: cert}, nil
}
