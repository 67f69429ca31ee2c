// Package certs manages the certificates pqedge serves: it loads key pairs
// of every algorithm crypto/tls can serve (ECDSA, RSA, Ed25519 and ML-DSA in
// all the encodings Go, OpenSSL 3.5 and circl write), runs a small
// post-quantum PKI (root, optional intermediate, leaves), keeps a local
// development CA, signs ML-DSA handshakes with a faster implementation, and
// decides per handshake whether a client gets the ML-DSA or the classical
// chain.
//
// It is not an ACME client (certs/acme is, for classical certificates), and
// it does not serve TLS: it hands *tls.Certificate values to crypto/tls.
// It has no revocation (no CRL, no OCSP): its CAs are for private use, with
// short-lived leaves.
//
// # Loading
//
// LoadKeyPair reads a PEM chain and key and checks that they belong
// together; Check verifies names and dates. ML-DSA private keys must carry
// their 32-byte seed: OpenSSL's seed-and-expanded encoding is accepted when
// both halves agree, its expanded-only encoding is refused.
//
// # Private PKI
//
// InitCA makes root.crt/root.key (ML-DSA-87 by default) and optionally an
// intermediate (ML-DSA-44 under an ML-DSA root by default, so that a chain
// with an ML-DSA-44 leaf fits TCP's initial window); OpenCA reopens it, refusing keys readable by others and
// expired CAs; CA.Issue makes server leaves. Keys are PKCS#8, seed form for
// ML-DSA, mode 0600. EnsureLocal keeps an ECDSA and an ML-DSA development CA
// with leaves in one directory, re-issuing what is missing or ageing.
//
// # Handshake size
//
// An ML-DSA chain costs kilobytes per handshake. DescribeChain and
// EstimateFlight compute what a chain adds to the server's first flight and
// whether that flight still fits TCP's initial window (InitialWindowBytes).
//
// # Signing
//
// NewCirclSigner and WrapSigner swap crypto/mldsa for circl's ML-DSA, which
// signs 4 to 5 times faster here (docs/BENCHMARKS.md); the public key stays the standard library's,
// so crypto/tls negotiates ML-DSA as usual.
//
// # Selection
//
// Browsers offer ML-DSA without trusting any private ML-DSA root, so serving
// the ML-DSA chain to every client that offers ML-DSA breaks them. Selector
// serves it only as PQMode says: never (the default), to clients that name
// the root in certificate_authorities, or to every ML-DSA client. With
// VerifiableChainsOnly it also serves a chain only to a client that can
// verify every signature in it (RFC 8446 Section 4.4.2.2), using
// signature_algorithms_cert when the client sent it, and otherwise falls
// back to the next chain or fails with ErrNoVerifiableChain.
package certs
