package pqtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/mldsa"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"slices"
	"time"
)

// Handshake records what one TLS handshake negotiated, and what the client
// offered when its ClientHello was captured.
type Handshake struct {
	Version     uint16
	CipherSuite uint16
	Group       tls.CurveID
	// Signature is the scheme of the server's CertificateVerify (or, in TLS
	// 1.2, ServerKeyExchange); zero for resumed sessions, which send none.
	Signature  tls.SignatureScheme
	ALPN       string
	ServerName string
	Resumed    bool
	HelloRetry bool
	Duration   time.Duration
	Client     *ClientHello // nil when the ClientHello was not captured
	// Transport carried the handshake: TransportTCP (the zero value) or
	// TransportQUIC (RFC 9001), whether or not Client was captured.
	Transport Transport
}

// PostQuantum reports whether the key exchange resists a quantum attacker.
func (h *Handshake) PostQuantum() bool { return IsPostQuantumGroup(h.Group) }

// GroupName is the IANA name of the negotiated group ("" for none, as with
// TLS 1.2 RSA key exchange).
func (h *Handshake) GroupName() string {
	if h.Group == 0 {
		return ""
	}
	return GroupName(h.Group)
}

// SignatureName is the IANA name of the server's signature ("" when resumed).
func (h *Handshake) SignatureName() string {
	if h.Signature == 0 {
		return ""
	}
	return SignatureName(h.Signature)
}

// NewHandshake builds the record of a completed handshake. sig is the
// scheme the server signed with (zero when it did not sign: a resumed
// session). crypto/tls does not report it; a server learns it by wrapping
// its signer (see SchemeUsed), which tells what was really signed instead
// of re-deriving crypto/tls's choice.
func NewHandshake(cs tls.ConnectionState, sig tls.SignatureScheme, hello *ClientHello, took time.Duration) Handshake {
	return Handshake{
		Version:     cs.Version,
		CipherSuite: cs.CipherSuite,
		Group:       cs.CurveID,
		Signature:   sig,
		ALPN:        cs.NegotiatedProtocol,
		ServerName:  cs.ServerName,
		Resumed:     cs.DidResume,
		HelloRetry:  cs.HelloRetryRequest,
		Duration:    took,
		Client:      hello,
	}
}

// SchemeUsed returns the scheme of a signature crypto/tls made with the key
// whose public half is pub, from the options it handed the signer: the hash
// (or *rsa.PSSOptions) picks among the key's schemes (RFC 8446 section
// 4.2.3; in TLS 1.2, RFC 5246 section 7.4.1.4.1, a client without
// signature_algorithms gets SHA-1, which this reports as such).
func SchemeUsed(pub crypto.PublicKey, opts crypto.SignerOpts) (tls.SignatureScheme, error) {
	var hash crypto.Hash
	if opts != nil {
		hash = opts.HashFunc()
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch hash {
		case crypto.SHA1:
			return tls.ECDSAWithSHA1, nil
		case crypto.SHA256:
			return tls.ECDSAWithP256AndSHA256, nil
		case crypto.SHA384:
			return tls.ECDSAWithP384AndSHA384, nil
		case crypto.SHA512:
			return tls.ECDSAWithP521AndSHA512, nil
		}
	case ed25519.PublicKey:
		return tls.Ed25519, nil
	case *rsa.PublicKey:
		if _, pss := opts.(*rsa.PSSOptions); pss {
			switch hash {
			case crypto.SHA256:
				return tls.PSSWithSHA256, nil
			case crypto.SHA384:
				return tls.PSSWithSHA384, nil
			case crypto.SHA512:
				return tls.PSSWithSHA512, nil
			}
			break
		}
		switch hash {
		case crypto.SHA1:
			return tls.PKCS1WithSHA1, nil
		case crypto.SHA256:
			return tls.PKCS1WithSHA256, nil
		case crypto.SHA384:
			return tls.PKCS1WithSHA384, nil
		case crypto.SHA512:
			return tls.PKCS1WithSHA512, nil
		}
	case *mldsa.PublicKey:
		schemes, err := schemesForKey(k, tls.VersionTLS13)
		if err != nil {
			return 0, err
		}
		return schemes[0], nil
	default:
		return 0, fmt.Errorf("unsupported key type %T", pub)
	}
	return 0, fmt.Errorf("unexpected signing options %T (hash %v) for a %s key", opts, hash, KeyAlgorithm(pub))
}

// SignatureFor returns the signature scheme a crypto/tls server signs with
// for a certificate key, at a TLS version, given the client's
// signature_algorithms in its order of preference. crypto/tls picks the
// first scheme in the peer's order that the key supports (its
// selectSignatureScheme); with no list (TLS 1.2 without the extension,
// RFC 5246 Section 7.4.1.4.1) it uses the key's default.
func SignatureFor(pub crypto.PublicKey, version uint16, peer []tls.SignatureScheme) (tls.SignatureScheme, error) {
	candidates, err := schemesForKey(pub, version)
	if err != nil {
		return 0, err
	}
	for _, s := range peer {
		if slices.Contains(candidates, s) {
			return s, nil
		}
	}
	if len(peer) == 0 && len(candidates) > 0 {
		return candidates[0], nil
	}
	return 0, fmt.Errorf("client offers no signature scheme for a %s key", KeyAlgorithm(pub))
}

// schemesForKey lists the schemes a key can sign with (RFC 8446 Section
// 4.2.3: in TLS 1.3 ECDSA schemes are bound to their curve and RSA signs
// with PSS only).
func schemesForKey(pub crypto.PublicKey, version uint16) ([]tls.SignatureScheme, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		var s tls.SignatureScheme
		switch k.Curve {
		case elliptic.P256():
			s = tls.ECDSAWithP256AndSHA256
		case elliptic.P384():
			s = tls.ECDSAWithP384AndSHA384
		case elliptic.P521():
			s = tls.ECDSAWithP521AndSHA512
		default:
			return nil, fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
		}
		if version >= tls.VersionTLS13 {
			return []tls.SignatureScheme{s}, nil
		}
		return []tls.SignatureScheme{s, tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.ECDSAWithP521AndSHA512, tls.ECDSAWithSHA1}, nil
	case ed25519.PublicKey:
		return []tls.SignatureScheme{tls.Ed25519}, nil
	case *rsa.PublicKey:
		pss := []tls.SignatureScheme{tls.PSSWithSHA256, tls.PSSWithSHA384, tls.PSSWithSHA512}
		if version >= tls.VersionTLS13 {
			return pss, nil
		}
		return append(pss, tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512, tls.PKCS1WithSHA1), nil
	case *mldsa.PublicKey:
		switch k.Parameters() {
		case mldsa.MLDSA44():
			return []tls.SignatureScheme{tls.MLDSA44}, nil
		case mldsa.MLDSA65():
			return []tls.SignatureScheme{tls.MLDSA65}, nil
		case mldsa.MLDSA87():
			return []tls.SignatureScheme{tls.MLDSA87}, nil
		}
		return nil, fmt.Errorf("unsupported ML-DSA parameters %s", k.Parameters())
	default:
		return nil, fmt.Errorf("unsupported key type %T", pub)
	}
}

// KeyAlgorithm names a public key's algorithm for people: "ECDSA P-256",
// "RSA-2048", "Ed25519", "ML-DSA-65".
func KeyAlgorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *mldsa.PublicKey:
		return k.Parameters().String()
	default:
		return fmt.Sprintf("unsupported key type %T", pub)
	}
}
