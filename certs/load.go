package certs

import (
	"bytes"
	"crypto"
	"crypto/mldsa"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// LoadKeyPair reads a PEM certificate chain (leaf first) and the PEM private
// key that belongs to its leaf. It accepts PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") and PKCS#1 ("RSA PRIVATE KEY") keys, ML-DSA keys in all
// the PKCS#8 forms that carry the seed (Go's and circl's seed-only form,
// OpenSSL 3.5's default seed-and-expanded form) and circl's
// "ML-DSA-NN PRIVATE KEY" blocks.
//
// It does not check names or validity dates: see Check.
func LoadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := loadPair(FilePair{Cert: certFile, Key: keyFile})
	if pe, ok := err.(*pairError); ok {
		return nil, pe.err
	}
	return cert, err
}

// keyPair builds a tls.Certificate after checking that key belongs to the
// leaf, chain[0].
func keyPair(chain []*x509.Certificate, key crypto.Signer) (*tls.Certificate, error) {
	leaf := chain[0]
	if _, err := DescribeKey(leaf.PublicKey); err != nil {
		return nil, fmt.Errorf("certificate %q: %w", leaf.Subject, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, errors.New("the private key does not match the certificate's public key; check that the key file is the one generated with this certificate")
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// ParseCertificatesPEM parses every CERTIFICATE block of a PEM file, in order.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("failed to parse certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
			return nil, errors.New("no CERTIFICATE PEM block found, but a private key is; the certificate and key files may be swapped")
		}
		return nil, errors.New("no CERTIFICATE PEM block found; the file must hold PEM certificates, leaf first (convert DER with `openssl x509 -inform der -in FILE -out FILE.pem`)")
	}
	return out, nil
}

// ParseKeyPEM parses the first private key block of a PEM file.
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "PRIVATE KEY":
			return ParsePKCS8(b.Bytes)
		case b.Type == "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(b.Bytes)
		case b.Type == "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(b.Bytes)
		case b.Type == "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted; pqedge needs it unencrypted: `openssl pkey -in KEY -out KEY.plain` and keep it mode 0600")
		case strings.HasPrefix(b.Type, "ML-DSA-") && strings.HasSuffix(b.Type, " PRIVATE KEY"):
			// circl's pki package names the block after the scheme; the
			// bytes are the same PKCS#8 as Go's.
			k, err := ParsePKCS8(b.Bytes)
			if err != nil {
				return nil, err
			}
			want := strings.TrimSuffix(b.Type, " PRIVATE KEY")
			info, err := DescribeKey(k.Public())
			if err != nil {
				return nil, err
			}
			if info.Name != want {
				return nil, fmt.Errorf("the PEM block says %s but the key inside is %s", want, info.Name)
			}
			return k, nil
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("unsupported PEM block %q; convert it to PKCS#8 with `openssl pkey -in KEY -out KEY.pk8`", b.Type)
		}
	}
	if bytes.Contains(data, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, errors.New("no PRIVATE KEY PEM block found, but a certificate is; the certificate and key files may be swapped")
	}
	return nil, errors.New("no PRIVATE KEY PEM block found; the file must hold a PEM private key")
}

// ML-DSA object identifiers (RFC 9881 Section 2).
var (
	oidMLDSA44 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 17}
	oidMLDSA65 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}
	oidMLDSA87 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 19}
)

// ParsePKCS8 parses a DER PKCS#8 private key. ML-DSA keys are parsed here
// because crypto/x509 refuses OpenSSL 3.5's default encoding (seed and
// expanded key together); every other key goes to x509.ParsePKCS8PrivateKey.
func ParsePKCS8(der []byte) (crypto.Signer, error) {
	oid, inner, ok := splitPKCS8(der)
	if ok {
		switch {
		case oid.Equal(oidMLDSA44):
			return parseMLDSAPrivateKey(mldsa.MLDSA44(), inner)
		case oid.Equal(oidMLDSA65):
			return parseMLDSAPrivateKey(mldsa.MLDSA65(), inner)
		case oid.Equal(oidMLDSA87):
			return parseMLDSAPrivateKey(mldsa.MLDSA87(), inner)
		}
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("failed to parse PKCS#8 private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	if _, err := DescribeKey(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}

// splitPKCS8 reads the algorithm OID and the privateKey OCTET STRING's
// contents of a OneAsymmetricKey (RFC 5958 Section 2).
func splitPKCS8(der []byte) (asn1.ObjectIdentifier, cryptobyte.String, bool) {
	input := cryptobyte.String(der)
	var pki, algID, priv cryptobyte.String
	var version int
	var oid asn1.ObjectIdentifier
	if !input.ReadASN1(&pki, cbasn1.SEQUENCE) || !input.Empty() ||
		!pki.ReadASN1Integer(&version) || (version != 0 && version != 1) ||
		!pki.ReadASN1(&algID, cbasn1.SEQUENCE) ||
		!algID.ReadASN1ObjectIdentifier(&oid) ||
		!pki.ReadASN1(&priv, cbasn1.OCTET_STRING) {
		return nil, nil, false
	}
	// ML-DSA AlgorithmIdentifiers have absent parameters (RFC 9881
	// Section 2); anything else is not an ML-DSA key we understand.
	if !algID.Empty() {
		return oid, nil, false
	}
	return oid, priv, true
}

// parseMLDSAPrivateKey parses the ML-DSA-PrivateKey CHOICE of RFC 9881
// Section 6: seed [0] IMPLICIT OCTET STRING, expandedKey OCTET STRING, or
// both SEQUENCE { seed, expandedKey }.
func parseMLDSAPrivateKey(params mldsa.Parameters, s cryptobyte.String) (crypto.Signer, error) {
	var seed, expanded cryptobyte.String
	switch {
	case s.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()):
		if !s.ReadASN1(&seed, cbasn1.Tag(0).ContextSpecific()) || !s.Empty() {
			return nil, fmt.Errorf("malformed %s seed-only private key", params)
		}
	case s.PeekASN1Tag(cbasn1.SEQUENCE):
		var both cryptobyte.String
		if !s.ReadASN1(&both, cbasn1.SEQUENCE) || !s.Empty() ||
			!both.ReadASN1(&seed, cbasn1.OCTET_STRING) ||
			!both.ReadASN1(&expanded, cbasn1.OCTET_STRING) || !both.Empty() {
			return nil, fmt.Errorf("malformed %s seed-and-expanded private key", params)
		}
	case s.PeekASN1Tag(cbasn1.OCTET_STRING):
		return nil, fmt.Errorf("the %s private key holds only the expanded key, without the 32-byte seed pqedge needs; generate a new key (`openssl genpkey -algorithm %s` keeps the seed) or re-export the original with `-provparam ml-dsa.output_formats=seed-only`", params, params)
	default:
		return nil, fmt.Errorf("malformed %s private key", params)
	}
	if len(seed) != mldsa.PrivateKeySize {
		return nil, fmt.Errorf("%s seed is %d bytes, want %d", params, len(seed), mldsa.PrivateKeySize)
	}
	key, err := mldsa.NewPrivateKey(params, seed)
	if err != nil {
		return nil, fmt.Errorf("failed to expand %s seed: %w", params, err)
	}
	if expanded != nil {
		// The file carries the key twice. Using the seed while a tool
		// reading the expanded form would use different key material is
		// how keys silently diverge: refuse unless both agree.
		ck, err := newCirclKey(params, seed)
		if err != nil {
			return nil, err
		}
		want := ck.priv.Bytes()
		if len(expanded) != len(want) || subtle.ConstantTimeCompare(expanded, want) != 1 {
			return nil, fmt.Errorf("the %s private key's expanded key does not match its seed; the file is corrupt or was edited: regenerate the key", params)
		}
	}
	return key, nil
}

// Check reports whether cert is valid at now and covers every name (DNS
// names or IP addresses). Errors say which name is missing or when the
// certificate expired.
func Check(cert *x509.Certificate, names []string, now time.Time) error {
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("certificate %q is not valid before %s (now %s); check the system clock", cert.Subject, cert.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return fmt.Errorf("certificate %q expired on %s; renew it (for a pqedge CA: `pqedge certs issue`)", cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, n := range names {
		if err := cert.VerifyHostname(n); err != nil {
			return fmt.Errorf("certificate %q does not cover %q (it covers %s); issue one that names it", cert.Subject, n, strings.Join(certNames(cert), ", "))
		}
	}
	return nil
}

// certNames lists a certificate's DNS and IP SANs.
func certNames(c *x509.Certificate) []string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return []string{"no names"}
	}
	return names
}
