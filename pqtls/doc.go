// Package pqtls holds pqedge's post-quantum TLS policy and handshake insight:
// the names of key-exchange groups and signature schemes, the policy presets
// and how they become a crypto/tls configuration, the record of what each
// handshake negotiated, and the parsing of the raw ClientHello that
// crypto/tls does not expose.
//
// It is not a TLS implementation for serving: pqedge serves with the standard
// library's crypto/tls. It does not choose certificates either; that is the
// job of package certs.
//
// # Names
//
// Every group and signature-scheme name pqedge accepts or prints is the IANA
// registry name ("X25519MLKEM768", "secp256r1", "mldsa65",
// "ecdsa_secp256r1_sha256"). defaults.go is the only home of those names, of
// the presets and of their order.
package pqtls
