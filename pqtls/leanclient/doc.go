// Package leanclient is a small TLS 1.3 client for measuring and probing TLS
// servers: it offers any list of key-exchange groups and signature
// algorithms (including ones crypto/tls cannot send: MLKEM512, MLKEM768,
// the obsolete X25519Kyber768Draft00), records what the server chose and
// how many bytes and round trips the handshake took, and completes the
// handshake (client Finished) so the server counts it.
//
// It is for pqedge's benchmark harness (many cheap handshakes against a
// server under test) and for `pqedge probe` (which groups, signature
// algorithms and ClientHello shapes a server accepts). Its ClientHello has
// a fixed shape (its extensions, always in one order, TLS 1.3 only) that
// pqtls.ClientHello.Family recognises as pqtls.FamilyPQEdge, so a pqedge
// under test counts this traffic apart from its visitors.
//
// It is NOT a general-purpose TLS client and must never protect data: its
// only application data is the one benchmark request of Config.Request
// (see "# One request"); it sends no early data, no client certificates,
// no TLS 1.2, and in load mode (Config.Precomputed) it reuses ephemeral
// keys, which destroys forward secrecy. Use crypto/tls for anything that
// carries data.
//
// # Protocol
//
// The handshake follows RFC 8446: ClientHello (Section 4.1.2), an optional
// HelloRetryRequest (Section 4.1.4), the key schedule (Section 7.1), record
// protection (Section 5.2), the server's EncryptedExtensions, Certificate,
// CertificateVerify and Finished (Sections 4.3.1, 4.4.2–4.4.4), and the
// client Finished. The hybrid groups follow draft-ietf-tls-ecdhe-mlkem
// (X25519MLKEM768: ML-KEM share first; SecP256r1MLKEM768 and
// SecP384r1MLKEM1024: ECDH share first), the pure ML-KEM groups
// draft-ietf-tls-mlkem. ML-KEM and Kyber come from
// github.com/cloudflare/circl, elliptic curves from crypto/ecdh.
//
// # Resumption
//
// With Config.ReadTicket the client waits for the server's first
// NewSessionTicket (Section 4.6.1) and returns it with its PSK as a
// *Session; Config.Session offers one back (pre_shared_key with its
// binder, Section 4.2.11). Only psk_dhe_ke is offered, so key shares are
// still sent, forward secrecy holds and the group is still measured. A
// server that accepts sends no Certificate or CertificateVerify and
// Result.Resumed is set; one that declines gets a full handshake.
//
// # One request
//
// With Config.Request the client does what a browser's first visit does:
// handshake, one HTTP/1.1 request sent with the client Finished, the
// response read and decrypted until the server closes, then close_notify.
// Result.Status and Result.ResponseBytes report the answer. The response
// is not parsed beyond its status line (RFC 9112 Section 4): the request
// should carry Connection: close, since its end is the server's close.
//
// # Load mode
//
// A ShareCache computes each group's key share once and hands the same
// private key to every handshake, so the client spends almost no CPU on key
// generation and a benchmark measures the server, not the client. This
// reuse is for benchmarking only: every handshake made with the cache can
// be decrypted by whoever learns one private key.
//
// # Replayed ClientHellos
//
// A real handshake flood does no cryptography: it sends ClientHellos made
// once and reads, or ignores, what comes back, while the server pays for
// each one (its key share, the key exchange, the CertificateVerify
// signature). ClientHelloRecord makes such a ClientHello (fresh keys, which
// are then dropped), Calibrate learns from one full handshake how many
// records the server's flight is, and ReadFlight waits for that many
// records on a new connection: once they are in, the server has done all of
// its cryptography for the connection and the client none. `pqedge bench
// handshake -replay` floods a server this way.
//
// # Errors
//
// Every failure is an *Error with a Kind (dial, timeout, alert, malformed,
// verify, unsupported, not-tls) so that a harness can count failures by
// kind. Malformed server messages give KindMalformed, never a panic. A
// server whose first bytes are not a TLS record gives KindNotTLS with a
// *NotTLSError naming the protocol its answer shows (an HTTP 400, an SSH
// or SMTP banner).
package leanclient
