package certs

import (
	"crypto"
	"crypto/mldsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
)

// SignerKind selects the ML-DSA implementation that signs handshakes.
type SignerKind string

const (
	// SignerCircl signs with github.com/cloudflare/circl, about 2.5 times
	// faster than the standard library on amd64 (see signer_bench_test.go).
	// It is the default.
	SignerCircl SignerKind = "circl"
	// SignerStdlib signs with crypto/mldsa.
	SignerStdlib SignerKind = "stdlib"
)

// DefaultSignerKind is the signer a site gets when its config names none.
const DefaultSignerKind = SignerCircl

// ParseSignerKind parses a signer name; "" means DefaultSignerKind.
func ParseSignerKind(s string) (SignerKind, error) {
	switch SignerKind(s) {
	case "":
		return DefaultSignerKind, nil
	case SignerCircl, SignerStdlib:
		return SignerKind(s), nil
	}
	return "", fmt.Errorf("unknown signer %q (known: circl, stdlib)", s)
}

// circlSigner signs with circl's ML-DSA and presents the standard library's
// public key, so crypto/tls and crypto/x509 treat it as an ML-DSA key
// (they choose the scheme from Public()'s type).
type circlSigner struct {
	std     *mldsa.PrivateKey // the same key, kept for Public and re-wrapping
	pub     *mldsa.PublicKey
	sigSize int
	signTo  func(msg, ctx []byte, sig []byte) error
}

var _ crypto.Signer = (*circlSigner)(nil)

// NewCirclSigner returns a crypto.Signer for key backed by circl. circl's key
// is derived from the same 32-byte seed, and the derived public key is
// checked against key's, so the two cannot disagree. Signatures are hedged
// (randomized, FIPS 204 Algorithm 2 with fresh rnd), as crypto/mldsa's are.
func NewCirclSigner(key *mldsa.PrivateKey) (crypto.Signer, error) {
	pub := key.PublicKey()
	ck, err := newCirclKey(pub.Parameters(), key.Bytes())
	if err != nil {
		return nil, err
	}
	if string(ck.pub.Bytes()) != string(pub.Bytes()) {
		return nil, errors.New("circl derived a different ML-DSA public key from the seed than crypto/mldsa")
	}
	return &circlSigner{std: key, pub: pub, sigSize: pub.Parameters().SignatureSize(), signTo: ck.signTo}, nil
}

// circlKey is circl's ML-DSA key pair derived from a 32-byte seed.
type circlKey struct {
	pub, priv interface{ Bytes() []byte } // priv.Bytes is FIPS 204 skEncode
	signTo    func(msg, ctx, sig []byte) error
}

// newCirclKey is the package's one switch over circl's ML-DSA parameter
// sets, used to sign (NewCirclSigner) and to check an expanded private key
// against its seed (crypto/mldsa does not expose skEncode).
func newCirclKey(params mldsa.Parameters, seed []byte) (circlKey, error) {
	var s [32]byte
	if len(seed) != len(s) {
		return circlKey{}, fmt.Errorf("%s seed is %d bytes, want %d", params, len(seed), len(s))
	}
	copy(s[:], seed)
	switch params {
	case mldsa.MLDSA44():
		pk, sk := mldsa44.NewKeyFromSeed(&s)
		return circlKey{pk, sk, func(msg, ctx, sig []byte) error { return mldsa44.SignTo(sk, msg, ctx, true, sig) }}, nil
	case mldsa.MLDSA65():
		pk, sk := mldsa65.NewKeyFromSeed(&s)
		return circlKey{pk, sk, func(msg, ctx, sig []byte) error { return mldsa65.SignTo(sk, msg, ctx, true, sig) }}, nil
	case mldsa.MLDSA87():
		pk, sk := mldsa87.NewKeyFromSeed(&s)
		return circlKey{pk, sk, func(msg, ctx, sig []byte) error { return mldsa87.SignTo(sk, msg, ctx, true, sig) }}, nil
	}
	return circlKey{}, fmt.Errorf("unsupported ML-DSA parameter set %s", params)
}

// Public returns the standard library *mldsa.PublicKey.
func (s *circlSigner) Public() crypto.PublicKey { return s.pub }

// Sign signs message directly, as crypto/mldsa does: opts.HashFunc() must be
// 0 (TLS 1.3 and X.509 sign the whole message). A *mldsa.Options carries the
// context string; TLS uses none. The rand argument is ignored: circl draws
// the hedging randomness from crypto/rand.
func (s *circlSigner) Sign(_ io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	var ctx []byte
	if opts != nil {
		if h := opts.HashFunc(); h != 0 {
			return nil, fmt.Errorf("circl ML-DSA signer signs messages directly; got pre-hashed input (%v), which it does not support", h)
		}
		if o, ok := opts.(*mldsa.Options); ok && o != nil {
			ctx = []byte(o.Context)
		}
	}
	sig := make([]byte, s.sigSize)
	if err := s.signTo(message, ctx, sig); err != nil {
		return nil, fmt.Errorf("failed to sign with circl %s: %w", s.pub.Parameters(), err)
	}
	return sig, nil
}

// WrapSigner makes cert sign with the implementation kind. Only ML-DSA keys
// are affected; a certificate with a classical key is left as it is. It
// must be called before cert is handed to crypto/tls, as it writes
// cert.PrivateKey.
func WrapSigner(cert *tls.Certificate, kind SignerKind) error {
	var std *mldsa.PrivateKey
	switch k := cert.PrivateKey.(type) {
	case *mldsa.PrivateKey:
		std = k
	case *circlSigner:
		std = k.std
	default:
		return nil
	}
	switch kind {
	case SignerStdlib:
		cert.PrivateKey = std
	case SignerCircl, "":
		s, err := NewCirclSigner(std)
		if err != nil {
			return err
		}
		cert.PrivateKey = s
	default:
		return fmt.Errorf("unknown signer %q (known: circl, stdlib)", kind)
	}
	return nil
}
