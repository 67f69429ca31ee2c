package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/pqedge/pqedge/pqtls"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// PQMode says which clients get the ML-DSA chain.
type PQMode string

const (
	// PQOff never serves the ML-DSA chain.
	PQOff PQMode = "off"
	// PQTrusted serves it only to clients that offer a matching ML-DSA
	// signature scheme and name the PQ root (or an intermediate) in
	// certificate_authorities, i.e. clients known to trust it.
	PQTrusted PQMode = "trusted"
	// PQAlways serves it to every client offering a matching ML-DSA scheme.
	// Chromium offers ML-DSA by default but trusts no private ML-DSA root:
	// this mode breaks it unless the root is installed.
	PQAlways PQMode = "always"
)

// DefaultPQMode is the mode a site gets when its config names none, and
// what a Selector's zero Mode means: off, so a site serves its ML-DSA chain
// only when the operator opts in (issue #2). Chromium offers ML-DSA by
// default and trusts no private ML-DSA root.
const DefaultPQMode = PQOff

// ParsePQMode parses a mode name; "" means DefaultPQMode.
func ParsePQMode(s string) (PQMode, error) {
	switch PQMode(s) {
	case "":
		return DefaultPQMode, nil
	case PQOff, PQTrusted, PQAlways:
		return PQMode(s), nil
	}
	return "", fmt.Errorf("unknown pq mode %q (known: off, trusted, always)", s)
}

// ClientRule overrides a Selector's Mode for clients connecting from
// Network, e.g. an office network whose machines have the PQ root installed
// but whose browsers do not send certificate_authorities.
type ClientRule struct {
	Network netip.Prefix
	Mode    PQMode
}

// Selector picks the certificate chain for one handshake. It is a value: do
// not modify it once in use. To rotate certificates, build a new Selector
// and publish it through an atomic.Pointer[Selector] that the
// GetCertificate callback loads on every handshake.
type Selector struct {
	// Classical is served to every client that does not get PQ. It may be
	// nil only when every client is expected to get PQ, or when
	// ClassicalFor supplies it.
	Classical *tls.Certificate
	// ClassicalFor, if set, supplies the classical chain for a handshake
	// in place of Classical: a chain that changes without a new Selector,
	// such as an ACME manager's current certificate. It is called from
	// Pick, on the handshake's goroutine, only when the client does not
	// get PQ; an error fails the handshake.
	ClassicalFor func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// PQ is the ML-DSA chain, leaf first; nil disables PQ selection.
	PQ *tls.Certificate
	// Mode is the default policy; "" means DefaultPQMode.
	Mode PQMode
	// PQRoots are the roots PQ chains up to; under PQTrusted a client must
	// name one of them (or an intermediate of PQ) in certificate_authorities.
	PQRoots []*x509.Certificate
	// ClientRules are checked in order against the client's address; the
	// first match replaces Mode.
	ClientRules []ClientRule
	// VerifiableChainsOnly makes Pick serve a chain only if the client can
	// verify every signature in it (RFC 8446 Section 4.4.2.2, RFC 8422
	// Section 5.1): the leaf's CertificateVerify with a scheme from
	// signature_algorithms, and the signature on each certificate that is
	// not self-signed with a scheme from signature_algorithms_cert (or
	// signature_algorithms when the client sent no _cert list), and over
	// TLS 1.2 an ECDSA leaf on a curve of the client's supported_groups
	// when it sent them, and a leaf whose key fits one of the client's
	// cipher suites (ECDHE_ECDSA or ECDHE_RSA, RFC 5246 Section 7.4.2)
	// when it offers any crypto/tls serves. A chain
	// that fails is passed over for the next (PQ, then classical); when
	// none is left Pick fails with ErrNoVerifiableChain. Go 1.27 clients
	// leave ML-DSA out of signature_algorithms_cert (go.dev/issue/82536),
	// so they get the classical chain. A ClientHello that was not captured
	// (Pick's hello is nil) hides signature_algorithms_cert, so whether
	// the client can verify the ML-DSA chain's signatures is unknown: the
	// ML-DSA chain is then passed over for a classical one when there is
	// one, and judged by signature_algorithms alone only when it is the
	// only chain. Without it Pick chooses by mode and the leaf's scheme
	// alone, as before issue 12.
	VerifiableChainsOnly bool

	// classicalSigs and pqSigs are the parsed signatures of Classical and
	// PQ, made by Validate for VerifiableChainsOnly; nil until then.
	classicalSigs, pqSigs *chainSigs
}

// Validate checks a Selector before use: the PQ chain must have an ML-DSA
// key and the modes must be known. With VerifiableChainsOnly it also
// keeps the parsed signatures of Classical and PQ for Pick, so a
// Selector must not be changed after Validate (Pick parses a chain that
// differs from the one Validate saw, so a change costs time, not
// correctness).
func (s *Selector) Validate() error {
	if err := s.validate(); err != nil {
		return err
	}
	if s.VerifiableChainsOnly {
		if s.Classical != nil {
			s.classicalSigs = parseChainSigs(s.Classical)
		}
		if s.PQ != nil {
			s.pqSigs = parseChainSigs(s.PQ)
		}
	}
	return nil
}

func (s *Selector) validate() error {
	if s.Classical == nil && s.ClassicalFor == nil && s.PQ == nil {
		return errors.New("no certificate to serve")
	}
	if s.Classical != nil && s.ClassicalFor != nil {
		return errors.New("both Classical and ClassicalFor are set: ClassicalFor would never be used")
	}
	if _, err := ParsePQMode(string(s.Mode)); err != nil {
		return err
	}
	for _, r := range s.ClientRules {
		if _, err := ParsePQMode(string(r.Mode)); err != nil || r.Mode == "" {
			return fmt.Errorf("client rule for %s: unknown pq mode %q (known: off, trusted, always)", r.Network, r.Mode)
		}
	}
	if s.VerifiableChainsOnly {
		for _, c := range []struct {
			kind string
			cert *tls.Certificate
		}{{"classical", s.Classical}, {"ML-DSA", s.PQ}} {
			if c.cert == nil {
				continue
			}
			if err := checkChainSignatures(c.cert); err != nil {
				return fmt.Errorf("the %s chain: %w", c.kind, err)
			}
		}
	}
	if s.PQ == nil {
		return nil
	}
	if pqScheme(s.PQ) == 0 {
		return errors.New("the PQ certificate does not have an ML-DSA key")
	}
	if s.mode(nil) == PQTrusted && len(s.PQRoots) == 0 && len(s.PQ.Certificate) < 2 {
		return errors.New("pq mode \"trusted\" needs the PQ root: without it no client is ever recognised as trusting the chain")
	}
	return nil
}

// Pick returns the chain for a handshake. hello is the parsed ClientHello
// when the connection captured one, else nil (then PQTrusted cannot see
// certificate_authorities and serves the classical chain, and
// VerifiableChainsOnly cannot see signature_algorithms_cert). It runs on
// every handshake and does not allocate unless it fails.
func (s *Selector) Pick(info *tls.ClientHelloInfo, hello *pqtls.ClientHello) (*tls.Certificate, error) {
	check := s.VerifiableChainsOnly
	// Without the ClientHello (over QUIC, a client the recorder did not
	// follow: its table full, the flight not read whole; over TCP, a hello
	// beyond the capture limit or one pqtls cannot parse) the _cert list
	// is unknown, and clientCanVerify would take signature_algorithms for
	// it: a Go 1.27 client, which lists ML-DSA only there, would be served
	// an ML-DSA-signed chain it cannot verify. The classical chain is the
	// safer guess then.
	blind := check && hello == nil && (s.Classical != nil || s.ClassicalFor != nil)
	if s.wantsPQ(info, hello) && !blind && (!check || clientCanVerify(s.PQ, s.pqSigs, info, hello)) {
		return s.PQ, nil
	}
	classical := s.Classical
	if s.ClassicalFor != nil {
		c, err := s.ClassicalFor(info)
		if err != nil {
			return nil, err
		}
		classical = c
	}
	if classical == nil {
		return nil, fmt.Errorf("%w: the client does not qualify for the ML-DSA chain and no classical certificate is configured", ErrNoVerifiableChain)
	}
	if check && !clientCanVerify(classical, s.classicalSigs, info, hello) {
		return nil, fmt.Errorf("%w: the client offers no signature scheme for the classical chain (or for the ML-DSA one, if it qualifies), or over TLS 1.2 no curve or cipher suite for its leaf's key", ErrNoVerifiableChain)
	}
	return classical, nil
}

func (s *Selector) wantsPQ(info *tls.ClientHelloInfo, hello *pqtls.ClientHello) bool {
	if s.PQ == nil {
		return false
	}
	mode := s.mode(info)
	if mode == PQOff {
		return false
	}
	// RFC 8446 Section 4.2.3: the server's CertificateVerify must use a
	// scheme the client offered; an ML-DSA key has exactly one.
	scheme := pqScheme(s.PQ)
	offered := false
	if info != nil {
		for _, sc := range info.SignatureSchemes {
			if sc == scheme {
				offered = true
				break
			}
		}
	} else if hello != nil {
		for _, sc := range hello.SignatureAlgorithms {
			if sc == scheme {
				offered = true
				break
			}
		}
	}
	if !offered {
		return false
	}
	if mode == PQAlways {
		return true
	}
	return hello != nil && s.clientTrusts(hello.CertificateAuthorities)
}

// mode applies ClientRules to the client's address.
func (s *Selector) mode(info *tls.ClientHelloInfo) PQMode {
	if len(s.ClientRules) > 0 && info != nil && info.Conn != nil {
		if addr, ok := remoteAddr(info.Conn); ok {
			for _, r := range s.ClientRules {
				if r.Network.Contains(addr) {
					return r.Mode
				}
			}
		}
	}
	if s.Mode == "" {
		return DefaultPQMode
	}
	return s.Mode
}

// remoteAddr reads the client's IP without allocating for TCP connections.
func remoteAddr(c net.Conn) (netip.Addr, bool) {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	}
	return netip.Addr{}, false
}

// clientTrusts reports whether one of the client's certificate_authorities
// (RFC 8446 Section 4.2.4) is the subject of a PQ root or of a CA
// certificate in the PQ chain.
//
// The loops run over pqedge's few CA certificates outside the client's list,
// so each chain certificate's subject is sliced once per handshake rather
// than once per name the client sends (a client may send its whole trust
// store's subjects).
func (s *Selector) clientTrusts(cas [][]byte) bool {
	if len(cas) == 0 {
		return false
	}
	for _, r := range s.PQRoots {
		if containsName(cas, r.RawSubject) {
			return true
		}
	}
	for _, der := range s.PQ.Certificate[1:] {
		if subj, ok := rawSubject(der); ok && containsName(cas, subj) {
			return true
		}
	}
	return false
}

// containsName reports whether the DER Name subject is one of cas.
func containsName(cas [][]byte, subject []byte) bool {
	for _, dn := range cas {
		if string(dn) == string(subject) {
			return true
		}
	}
	return false
}

// rawSubject slices the subject Name out of a DER certificate (RFC 5280
// Section 4.1) without parsing the rest, so Pick stays allocation-free.
func rawSubject(der []byte) ([]byte, bool) {
	in := cryptobyte.String(der)
	var cert, tbs, subject cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) ||
		!cert.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || // version
		!tbs.SkipASN1(cbasn1.INTEGER) || // serialNumber
		!tbs.SkipASN1(cbasn1.SEQUENCE) || // signature
		!tbs.SkipASN1(cbasn1.SEQUENCE) || // issuer
		!tbs.SkipASN1(cbasn1.SEQUENCE) || // validity
		!tbs.ReadASN1Element(&subject, cbasn1.SEQUENCE) {
		return nil, false
	}
	return subject, true
}

// pqScheme returns the ML-DSA signature scheme of c's key, or 0.
func pqScheme(c *tls.Certificate) tls.SignatureScheme {
	var pub crypto.PublicKey
	if c.Leaf != nil {
		pub = c.Leaf.PublicKey
	} else if s, ok := c.PrivateKey.(crypto.Signer); ok {
		pub = s.Public()
	}
	// describeKey, not DescribeKey: Pick needs the scheme on every
	// handshake, not the human name.
	info, err := describeKey(pub)
	if err != nil || !info.PostQuantum {
		return 0
	}
	return info.Scheme
}
