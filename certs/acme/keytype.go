package acme

import (
	"crypto"
	"crypto/rsa"
	"fmt"
	"strings"

	"github.com/caddyserver/certmagic"
	"github.com/pqedge/pqedge/certs"
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

// describePublicKey names the key of a served certificate for Expiry, as
// the config spells key algorithms. certs.DescribeKey is the one switch over
// key types (it names ML-DSA too, so a surprise is named rather than
// reported as unknown); only RSA is spelled with its size here, as KeyRSA2048
// and KeyRSA4096 are.
func describePublicKey(pub crypto.PublicKey) (string, error) {
	if k, ok := pub.(*rsa.PublicKey); ok {
		return fmt.Sprintf("rsa%d", k.N.BitLen()), nil
	}
	info, err := certs.DescribeKey(pub)
	if err != nil {
		return "", err
	}
	return string(info.Alg), nil
}
