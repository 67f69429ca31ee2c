package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/mldsa"
	"crypto/rsa"
	"fmt"
	"strings"

	"github.com/caddyserver/certmagic"
)

// KeyType is the kind of private key generated for each ACME certificate,
// spelled as pqedge's config spells key algorithms.
type KeyType string

// Key types an ACME CA issues for. The zero value means KeyECDSAP256.
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"
	KeyRSA2048   KeyType = "rsa2048"
	KeyRSA4096   KeyType = "rsa4096"
)

// ParseKeyType turns a config value into a KeyType, rejecting key types that
// cannot be used with ACME with an error that says why.
func ParseKeyType(s string) (KeyType, error) {
	k := KeyType(strings.ToLower(strings.TrimSpace(s)))
	if _, err := k.certmagic(); err != nil {
		return "", err
	}
	if k == "" {
		return KeyECDSAP256, nil
	}
	return k, nil
}

// certmagic is the package's one switch over configured key types.
func (k KeyType) certmagic() (certmagic.KeyType, error) {
	switch k {
	case "", KeyECDSAP256:
		return certmagic.P256, nil
	case KeyECDSAP384:
		return certmagic.P384, nil
	case KeyRSA2048:
		return certmagic.RSA2048, nil
	case KeyRSA4096:
		return certmagic.RSA4096, nil
	case "mldsa44", "mldsa65", "mldsa87":
		return "", fmt.Errorf("key type %q cannot be used with ACME: no ACME CA issues ML-DSA certificates and certmagic cannot store ML-DSA keys; serve ML-DSA chains through the site's pq_certs setting instead", string(k))
	case "ed25519":
		return "", fmt.Errorf("key type %q cannot be used with ACME: public CAs do not issue Ed25519 certificates; use %s or %s", string(k), KeyECDSAP256, KeyECDSAP384)
	default:
		return "", fmt.Errorf("unsupported key type %q: use %s (default), %s, %s or %s", string(k), KeyECDSAP256, KeyECDSAP384, KeyRSA2048, KeyRSA4096)
	}
}

// describePublicKey names the key of a served certificate for Expiry. It
// covers every key a certificate in certmagic's cache could hold, and ML-DSA
// so that a surprise is named rather than reported as unknown.
func describePublicKey(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return string(KeyECDSAP256), nil
		case elliptic.P384():
			return string(KeyECDSAP384), nil
		case elliptic.P521():
			return "ecdsa-p521", nil
		}
		return "", fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa%d", k.N.BitLen()), nil
	case ed25519.PublicKey:
		return "ed25519", nil
	case *mldsa.PublicKey:
		return strings.ToLower(strings.ReplaceAll(k.Parameters().String(), "-", "")), nil
	default:
		return "", fmt.Errorf("unsupported key type %T", pub)
	}
}
