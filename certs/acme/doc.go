// Package acme obtains and renews classical (ECDSA or RSA) certificates for
// pqedge sites from an ACME CA such as Let's Encrypt, and serves them during
// TLS handshakes. It is a thin layer over certmagic that fits it to pqedge:
// slog logging, a metrics hook, a data-directory layout and errors that say
// what to change.
//
// It is not for ML-DSA certificates. No public ACME CA issues them, and
// certmagic's storage cannot hold ML-DSA keys (its PEM helpers know ECDSA,
// RSA and Ed25519 only); ML-DSA chains are package certs' business. A site
// can have both; choosing between them for each handshake is the server's
// job.
//
// # Use
//
// New checks the options and opens storage under DataDir/acme (or uses
// Options.Storage: a fleet's shared store, see internal/fleet); Manage
// obtains certificates for a site's names (or loads them from storage) and
// hands them to a background renewer; GetCertificate serves them. Close stops
// the renewer.
//
// # Wiring a server
//
// The https listener's tls.Config (and any config its GetConfigForClient
// returns) must use Manager.GetCertificate, directly or from the server's own
// certificate selection, and must list ALPNProtocol ("acme-tls/1") in
// NextProtos next to "h2" and "http/1.1": without it
// crypto/tls refuses the CA's TLS-ALPN-01 validation handshake with a
// no_application_protocol alert. The server must pass such a handshake to
// GetCertificate untouched; IsTLSALPNChallenge recognises it.
//
// For HTTP-01 the server needs a plain-HTTP listener on port 80 whose handler
// is Manager.HTTPChallengeHandler, usually wrapping RedirectToHTTPS. If no
// listener of ours holds the challenge port, certmagic binds it for the
// duration of each challenge itself.
//
// # Renewal and metrics
//
// Certificates are checked every RenewCheckInterval and renewed inside the
// renewal window (a third of the lifetime by default, or earlier when the
// CA's ACME Renewal Information says so). A renewed certificate goes into
// the in-memory cache and new handshakes get it; a failed renewal is logged,
// reported through Options.OnEvent, retried with backoff, and the current
// certificate keeps being served. Expiry reports the NotAfter of every
// certificate being served, for a days-until-expiry gauge.
package acme
