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
//
// # ClientHello capture
//
// crypto/tls hides most of the ClientHello (key shares,
// certificate_authorities, extension order, GREASE). Wrap each accepted
// conn in a CaptureConn before tls.Server: until the first ClientHello is
// complete it copies what crypto/tls reads (up to a limit, 64 KiB by
// default), however the message is split across reads and records, and
// then stops touching the data. GetConfigForClient or GetCertificate reach
// it through ClientHelloInfo.Conn:
//
//	ch, err := hello.Conn.(*pqtls.CaptureConn).ClientHello()
//
// A server that keeps connections open releases the captured bytes once it
// has recorded the handshake: CaptureConn.Release drops them and keeps a
// Detached copy of the parsed ClientHello, which is all JA4, Family and an
// inspect page read (an idle connection otherwise holds the 1.5–2.1 KB of
// a post-quantum ClientHello for its whole life).
//
// Over QUIC there are no records: the ClientHello travels in CRYPTO frames
// of the client's Initial packets, and package pqtls/quichello recovers it
// from the datagrams (WireShape.Transport says which transport carried a
// ClientHello, and JA4 starts with "q" for QUIC).
//
// ParseClientHello and ParseClientHelloRecords parse the message strictly
// (RFC 8446 Section 4.1.2); ClientHello.JA4 is FoxIO's JA4 fingerprint and
// ClientHello.Family a best-effort guess of the client's TLS stack
// (chromium, firefox, safari, curl-openssl, go, pqedge for pqedge's own
// probe and bench, other), for statistics and
// for explaining failed handshakes, never for access control.
package pqtls
