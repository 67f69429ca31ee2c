package certs

import "crypto/tls"

// RefusalCertificate returns the certificate a GetCertificate callback
// hands crypto/tls, instead of an error, when Pick fails with
// ErrNoVerifiableChain, so that the client is told handshake_failure, the
// alert for "no acceptable set of security parameters" (RFC 8446 Section
// 6.2), rather than internal_error, which says the server broke.
//
// crypto/tls answers any error from GetCertificate with internal_error
// (handshake_server_tls13.go pickCertificate, handshake_server.go
// processClientHello, Go 1.27). It answers handshake_failure when the
// certificate it is given can sign with nothing the connection allows:
// this one has a private key that is neither a crypto.Signer nor a
// crypto.Decrypter, so TLS 1.3 (over TCP and QUIC) fails when it picks a
// signature scheme and TLS 1.2 when it picks a cipher suite, both before
// the server has sent anything of the certificate. The caller keeps Pick's
// error for its own logs: crypto/tls's names only the key type.
//
// The certificate is shared and must not be modified.
func RefusalCertificate() *tls.Certificate { return refusal }

var refusal = &tls.Certificate{PrivateKey: noSigningKey{}}

// noSigningKey is a private key that can do nothing.
type noSigningKey struct{}
