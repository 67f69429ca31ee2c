package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/mholt/acmez/v3/acme"
)

// Error is a failure to get a certificate, with what the operator can do
// about it. Manage and RenewNow return it (RenewNow joins several).
type Error struct {
	Name      string // the server name
	Directory string // the ACME directory URL
	Hint      string // what to change; may be empty
	Err       error  // certmagic's error, with the CA's problem document if any
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("failed to get certificate for %q from %s: %v", e.Name, e.Directory, e.Err)
	if e.Hint != "" {
		msg += " (hint: " + e.Hint + ")"
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// explain wraps a certmagic error with the name, the directory and a hint
// chosen from the cause. The hint is a guess from the error's type, so it
// names the likely fix without claiming more. ownRoots says whether the
// directory's TLS certificate is checked against Options.CARoots
// (acme.ca_roots) rather than the system's roots.
func explain(directory, name string, ownRoots bool, err error) error {
	return &Error{Name: name, Directory: directory, Hint: hintFor(name, ownRoots, err), Err: err}
}

func hintFor(name string, ownRoots bool, err error) string {
	var (
		prob     acme.Problem
		unknown  x509.UnknownAuthorityError
		verify   *tls.CertificateVerificationError
		hostname x509.HostnameError
		netErr   net.Error
		dnsErr   *net.DNSError
		opErr    *net.OpError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "the ACME exchange was cut short by its deadline; check that the CA is reachable and that challenges are answered, then retry"
	case errors.As(err, &prob):
		return hintForProblem(name, prob)
	case errors.As(err, &unknown), errors.As(err, &verify), errors.As(err, &hostname):
		if ownRoots {
			return "the ACME server's TLS certificate is not trusted by the roots in acme.ca_roots; put there the root certificate of the CA that issued the directory's certificate"
		}
		// A public CA's certificate fails this way only when the roots are
		// missing or stale, or something on the path re-signs TLS.
		return "the ACME server's TLS certificate is not trusted by the system's CA roots, or by pqedge's built-in Mozilla roots where the system has none (`pqedge version` says which are used); " +
			"for a public CA such as Let's Encrypt, update the system's roots (or set SSL_CERT_FILE to a current bundle) and check for a TLS-inspecting proxy on the way; " +
			"for a private CA, set acme.ca_roots to its root certificate"
	case errors.As(err, &dnsErr), errors.As(err, &opErr), errors.As(err, &netErr):
		return "cannot reach the ACME directory; check acme.directory, DNS, and that this host may connect out to it (firewall, proxy)"
	}
	return ""
}

// hintForProblem reads an RFC 8555 section 6.7 problem document. A compound
// problem (a failed authorization) carries the validation error in its
// subproblems, so those are consulted first.
func hintForProblem(name string, p acme.Problem) string {
	for _, sub := range p.Subproblems {
		if h := hintForProblemType(name, sub.Type); h != "" {
			return h
		}
	}
	return hintForProblemType(name, p.Type)
}

func hintForProblemType(name, typ string) string {
	switch typ {
	case acme.ProblemTypeUnauthorized, acme.ProblemTypeConnection, acme.ProblemTypeDNS,
		acme.ProblemTypeTLS, acme.ProblemTypeIncorrectResponse:
		return fmt.Sprintf("the CA could not validate control of %q; make sure the name resolves to this host and the CA can reach pqedge on port 80 (HTTP-01) or 443 (TLS-ALPN-01, which needs \"acme-tls/1\" in the listener's ALPN list)", name)
	case acme.ProblemTypeCAA:
		return fmt.Sprintf("a DNS CAA record for %q forbids this CA; add the CA to the CAA record or use another CA", name)
	case acme.ProblemTypeInvalidContact, acme.ProblemTypeUnsupportedContact:
		return "the CA rejected the account email; set acme.email to an address at a real mail domain"
	case acme.ProblemTypeRateLimited:
		return "the CA's rate limit was reached; wait for the time in the CA's message before retrying, and keep the data directory between restarts so certificates are reused"
	case acme.ProblemTypeRejectedIdentifier, acme.ProblemTypeUnsupportedIdentifier:
		return fmt.Sprintf("the CA will not issue for %q; public CAs need a registered public domain name", name)
	case acme.ProblemTypeExternalAccountRequired:
		return "this CA requires external account binding (EAB), which pqedge does not support; use a CA that does not need it"
	}
	return ""
}
