package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
)

// File modes: private keys are readable by their owner only, and so is the
// directory holding them.
const (
	keyMode  os.FileMode = 0o600
	certMode os.FileMode = 0o644
	dirMode  os.FileMode = 0o700
)

// writeFileAtomic writes data to a temporary file in the same directory and
// renames it over path, so a crash never leaves a half-written key and a
// reader never sees one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	return nil
}

// WriteKeyPair writes cert's chain to base+".crt" (leaf first, PEM) and its
// private key to base+".key" (PKCS#8 PEM, mode 0600).
func WriteKeyPair(base string, cert *tls.Certificate) error {
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return fmt.Errorf("unsupported key type %T", cert.PrivateKey)
	}
	keyPEM, err := MarshalKeyPEM(signer)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(base+".key", keyPEM, keyMode); err != nil {
		return err
	}
	return writeFileAtomic(base+".crt", chainPEM(cert.Certificate), certMode)
}

// chainPEM encodes DER certificates as consecutive CERTIFICATE blocks.
func chainPEM(ders [][]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}

// checkKeyFileMode refuses a key file that group or others can read: a CA
// key anyone on the machine can copy is a CA anyone can use.
func checkKeyFileMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("failed to read private key: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("private key %q is readable by group or others (mode %04o); restrict it with `chmod 600 %s`", path, m, path)
	}
	return nil
}

// randomSerial returns a positive 128-bit serial number (RFC 5280 Section
// 4.1.2.2 allows up to 20 octets; CA/B Forum wants at least 64 random bits).
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("failed to make a serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// subjectKeyID returns the SHA-256 of the subjectPublicKey BIT STRING
// truncated to 160 bits (RFC 7093 Section 2, method 1).
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("failed to encode the public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("failed to encode the public key: %w", err)
	}
	h := sha256.Sum256(spki.PublicKey.Bytes)
	return h[:20], nil
}
