package leanclient

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/mldsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// signedContent is what a server's CertificateVerify signs: 64 spaces, the
// context string, a zero byte and the transcript hash (RFC 8446
// Section 4.4.3).
func signedContent(transcriptHash []byte) []byte {
	var b bytes.Buffer
	b.Write(bytes.Repeat([]byte{0x20}, 64))
	b.WriteString("TLS 1.3, server CertificateVerify")
	b.WriteByte(0)
	b.Write(transcriptHash)
	return b.Bytes()
}

// verifySignature checks a CertificateVerify signature with the leaf's
// public key. The one switch over key types; ML-DSA included.
func verifySignature(pub crypto.PublicKey, scheme tls.SignatureScheme, content, sig []byte) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		var h crypto.Hash
		var curve elliptic.Curve
		switch scheme {
		case tls.ECDSAWithP256AndSHA256:
			h, curve = crypto.SHA256, elliptic.P256()
		case tls.ECDSAWithP384AndSHA384:
			h, curve = crypto.SHA384, elliptic.P384()
		case tls.ECDSAWithP521AndSHA512:
			h, curve = crypto.SHA512, elliptic.P521()
		default:
			return fmt.Errorf("scheme %s does not fit an ECDSA key", pqtls.SignatureName(scheme))
		}
		// RFC 8446 Section 4.2.3: in TLS 1.3 the scheme fixes the curve.
		if k.Curve != curve {
			return fmt.Errorf("scheme %s does not fit an ECDSA %s key", pqtls.SignatureName(scheme), k.Curve.Params().Name)
		}
		if !ecdsa.VerifyASN1(k, digest(h, content), sig) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	case *rsa.PublicKey:
		var h crypto.Hash
		switch scheme {
		case tls.PSSWithSHA256, 0x0809:
			h = crypto.SHA256
		case tls.PSSWithSHA384, 0x080a:
			h = crypto.SHA384
		case tls.PSSWithSHA512, 0x080b:
			h = crypto.SHA512
		default:
			// RFC 8446 Section 4.4.3: RSA signatures in CertificateVerify
			// must use PSS; PKCS#1 v1.5 is for certificates only.
			return fmt.Errorf("scheme %s is not RSA-PSS", pqtls.SignatureName(scheme))
		}
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
		return rsa.VerifyPSS(k, h, digest(h, content), sig, opts)
	case ed25519.PublicKey:
		if scheme != tls.Ed25519 {
			return fmt.Errorf("scheme %s does not fit an Ed25519 key", pqtls.SignatureName(scheme))
		}
		if !ed25519.Verify(k, content, sig) {
			return errors.New("Ed25519 signature does not verify")
		}
		return nil
	case *mldsa.PublicKey:
		want := map[tls.SignatureScheme]string{tls.MLDSA44: mldsa.MLDSA44().String(), tls.MLDSA65: mldsa.MLDSA65().String(), tls.MLDSA87: mldsa.MLDSA87().String()}[scheme]
		if want == "" || k.Parameters().String() != want {
			return fmt.Errorf("scheme %s does not fit an %s key", pqtls.SignatureName(scheme), k.Parameters())
		}
		// draft-ietf-tls-mldsa: the signature is over the same content,
		// with an empty ML-DSA context string.
		return mldsa.Verify(k, content, sig, nil)
	}
	return fmt.Errorf("unsupported key type %T", pub)
}

func digest(h crypto.Hash, msg []byte) []byte {
	d := h.New()
	d.Write(msg)
	return d.Sum(nil)
}

// verifyChain checks the server's chain against roots (the system pool
// when nil) for serverName.
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, serverName string, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       serverName,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}
