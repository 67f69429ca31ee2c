package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"encoding/asn1"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/pqedge/pqedge/pqtls"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrNoVerifiableChain is wrapped by Pick's error when no configured chain
// is one the client can verify: the handshake fails, and the server counts
// it as a "certificate" failure.
var ErrNoVerifiableChain = errors.New("no certificate chain the client can verify")

// certSigAlgs maps the signatureAlgorithm of a certificate (RFC 5280
// Section 4.1.1.2) to the TLS signature schemes that name it (RFC 8446
// Section 4.2.3; in TLS 1.2, RFC 5246 Section 7.4.1.4.1, the same code
// points are hash/signature pairs). ECDSA schemes are matched by hash, as
// TLS 1.2 does. An RSASSA-PSS signature is named by its hash, through
// pssSchemes.
var certSigAlgs = []struct {
	oid     []byte // OBJECT IDENTIFIER contents
	schemes [2]tls.SignatureScheme
}{
	{oidBytes(1, 2, 840, 10045, 4, 3, 2), [2]tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}},
	{oidBytes(1, 2, 840, 10045, 4, 3, 3), [2]tls.SignatureScheme{tls.ECDSAWithP384AndSHA384}},
	{oidBytes(1, 2, 840, 10045, 4, 3, 4), [2]tls.SignatureScheme{tls.ECDSAWithP521AndSHA512}},
	{oidBytes(1, 2, 840, 10045, 4, 1), [2]tls.SignatureScheme{tls.ECDSAWithSHA1}},
	{oidBytes(1, 2, 840, 113549, 1, 1, 11), [2]tls.SignatureScheme{tls.PKCS1WithSHA256}},
	{oidBytes(1, 2, 840, 113549, 1, 1, 12), [2]tls.SignatureScheme{tls.PKCS1WithSHA384}},
	{oidBytes(1, 2, 840, 113549, 1, 1, 13), [2]tls.SignatureScheme{tls.PKCS1WithSHA512}},
	{oidBytes(1, 2, 840, 113549, 1, 1, 5), [2]tls.SignatureScheme{tls.PKCS1WithSHA1}},
	{oidBytes(1, 3, 101, 112), [2]tls.SignatureScheme{tls.Ed25519}},
	{oidBytes(1, 3, 101, 113), [2]tls.SignatureScheme{0x0808}}, // ed448
	// RFC 9881 Section 2 (X.509) and draft-ietf-tls-mldsa (TLS 1.3).
	{oidBytes(2, 16, 840, 1, 101, 3, 4, 3, 17), [2]tls.SignatureScheme{tls.MLDSA44}},
	{oidBytes(2, 16, 840, 1, 101, 3, 4, 3, 18), [2]tls.SignatureScheme{tls.MLDSA65}},
	{oidBytes(2, 16, 840, 1, 101, 3, 4, 3, 19), [2]tls.SignatureScheme{tls.MLDSA87}},
}

var oidRSAPSS = oidBytes(1, 2, 840, 113549, 1, 1, 10)

// pssSchemes names an RSASSA-PSS signature by its hash (RFC 4055 Section
// 3.1): rsa_pss_rsae_* for an issuer with an rsaEncryption key, or
// rsa_pss_pss_* for one with an RSASSA-PSS key; either lets the client
// verify it.
var pssSchemes = []struct {
	hash    []byte
	schemes [2]tls.SignatureScheme
}{
	{oidBytes(2, 16, 840, 1, 101, 3, 4, 2, 1), [2]tls.SignatureScheme{tls.PSSWithSHA256, 0x0809}},
	{oidBytes(2, 16, 840, 1, 101, 3, 4, 2, 2), [2]tls.SignatureScheme{tls.PSSWithSHA384, 0x080a}},
	{oidBytes(2, 16, 840, 1, 101, 3, 4, 2, 3), [2]tls.SignatureScheme{tls.PSSWithSHA512, 0x080b}},
}

func oidBytes(arcs ...int) []byte {
	der, err := asn1.Marshal(asn1.ObjectIdentifier(arcs))
	if err != nil {
		panic(err)
	}
	return der[2:] // tag and one-byte length: every OID above is short
}

// certSignature slices what Pick needs out of a DER certificate without
// parsing the rest (so it does not allocate): issuer and subject, to skip
// self-signed certificates, and the TLS schemes that name the signature
// the issuer made on it. ok is false for a certificate it cannot read or
// whose signature algorithm TLS has no name for.
func certSignature(der []byte) (issuer, subject []byte, schemes [2]tls.SignatureScheme, ok bool) {
	in := cryptobyte.String(der)
	var cert, tbs, sigAlg, oid cryptobyte.String
	var iss, sub cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) ||
		!cert.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!cert.ReadASN1(&sigAlg, cbasn1.SEQUENCE) ||
		!sigAlg.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
		!tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || // version
		!tbs.SkipASN1(cbasn1.INTEGER) || // serialNumber
		!tbs.SkipASN1(cbasn1.SEQUENCE) || // signature
		!tbs.ReadASN1Element(&iss, cbasn1.SEQUENCE) ||
		!tbs.SkipASN1(cbasn1.SEQUENCE) || // validity
		!tbs.ReadASN1Element(&sub, cbasn1.SEQUENCE) {
		return nil, nil, schemes, false
	}
	if bytes.Equal(oid, oidRSAPSS) {
		schemes, ok = pssHash(sigAlg)
		return iss, sub, schemes, ok
	}
	for _, a := range certSigAlgs {
		if bytes.Equal(oid, a.oid) {
			return iss, sub, a.schemes, true
		}
	}
	return iss, sub, schemes, false
}

// pssHash reads the hash of RSASSA-PSS-params (RFC 4055 Section 3.1):
// SEQUENCE { [0] EXPLICIT AlgorithmIdentifier, ... }. An absent hash means
// SHA-1, which TLS never pairs with PSS.
func pssHash(params cryptobyte.String) ([2]tls.SignatureScheme, bool) {
	var seq, hashAlg, alg, oid cryptobyte.String
	if !params.ReadASN1(&seq, cbasn1.SEQUENCE) ||
		!seq.ReadASN1(&hashAlg, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!hashAlg.ReadASN1(&alg, cbasn1.SEQUENCE) ||
		!alg.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
		return [2]tls.SignatureScheme{}, false
	}
	for _, h := range pssSchemes {
		if bytes.Equal(oid, h.hash) {
			return h.schemes, true
		}
	}
	return [2]tls.SignatureScheme{}, false
}

// checkChainSignatures reports a certificate of c whose signature no TLS
// client could be known to verify, so Validate refuses the chain instead of
// Pick never choosing it.
func checkChainSignatures(c *tls.Certificate) error {
	for i, der := range c.Certificate {
		if _, _, _, ok := certSignature(der); !ok {
			return fmt.Errorf("certificate %d of the chain is signed with an algorithm TLS has no signature scheme for", i+1)
		}
	}
	return nil
}

// clientCanVerify reports whether the client can verify everything of c it
// must: the CertificateVerify the leaf's key will make (RFC 8446 Section
// 4.4.3, a scheme from signature_algorithms) and the signature on every
// certificate of the chain that is not self-signed (Section 4.4.2.2:
// signature_algorithms_cert when the client sent it, else
// signature_algorithms; RFC 8422 Section 5.1 and RFC 5246 Section 7.4.2
// for TLS 1.2). Self-signed certificates begin a path and are not
// verified by their signature. cached is c's parsed chain when the
// caller kept one (nil: parse it now).
func clientCanVerify(c *tls.Certificate, cached *chainSigs, info *tls.ClientHelloInfo, hello *pqtls.ClientHello) bool {
	var sigs, certSigs []tls.SignatureScheme
	var versions, suites []uint16
	var groups []tls.CurveID
	if info != nil {
		sigs, versions, groups, suites = info.SignatureSchemes, info.SupportedVersions, info.SupportedCurves, info.CipherSuites
	}
	if hello != nil {
		if sigs == nil {
			sigs = hello.SignatureAlgorithms
		}
		if versions == nil {
			versions = hello.SupportedVersions
		}
		if groups == nil {
			groups = hello.Groups
		}
		if suites == nil {
			suites = hello.CipherSuites
		}
		certSigs = hello.SignatureAlgorithmsCert
	}
	if len(certSigs) == 0 {
		certSigs = sigs
	}
	// A client that lists no versions is taken for a TLS 1.3 one: real
	// ClientHelloInfos always carry them.
	tls13 := len(versions) == 0 || slices.Contains(versions, tls.VersionTLS13)
	if !leafCanSign(c, sigs, tls13) || !tls13 && (!leafCurveOffered(c, groups) || !leafSuiteOffered(c, suites)) {
		return false
	}
	if len(certSigs) == 0 {
		// TLS 1.2 without signature_algorithms (only under tlssha1=1 does
		// its leaf pass above): RFC 5246 Section 7.4.2 constrains the
		// chain's signatures only when the client sent the extension.
		return true
	}
	verifies := func(cs certSig) bool {
		return cs.selfSigned || slices.Contains(certSigs, cs.schemes[0]) || (cs.schemes[1] != 0 && slices.Contains(certSigs, cs.schemes[1]))
	}
	if chain := cached.of(c); chain != nil {
		return chain.ok && !slices.ContainsFunc(chain.certs, func(cs certSig) bool { return !verifies(cs) })
	}
	// Parsed as it is walked, without allocating (Pick's promise).
	for _, der := range c.Certificate {
		iss, sub, schemes, ok := certSignature(der)
		if !ok || !verifies(certSig{selfSigned: bytes.Equal(iss, sub), schemes: schemes}) {
			return false
		}
	}
	return true
}

// chainSigs is what clientCanVerify needs of a chain's certificates,
// parsed from their DER once: Selector.Validate keeps it for the
// Classical and PQ chains, so that a handshake does not walk the ASN.1 of
// every certificate again (about 3,500 instructions for a leaf and an
// intermediate, docs/BENCHMARKS.md "Handshake with one request").
type chainSigs struct {
	cert  *tls.Certificate // the chain it was parsed from
	n     int              // len(cert.Certificate) then
	ok    bool             // every signature algorithm has a TLS scheme
	certs []certSig
}

// certSig is one certificate's signature: whether it is self-signed (it
// begins a path, and no one verifies its signature) and the schemes that
// verify it.
type certSig struct {
	selfSigned bool
	schemes    [2]tls.SignatureScheme
}

func parseChainSigs(c *tls.Certificate) *chainSigs {
	cs := &chainSigs{cert: c, n: len(c.Certificate), ok: true, certs: make([]certSig, 0, len(c.Certificate))}
	for _, der := range c.Certificate {
		iss, sub, schemes, ok := certSignature(der)
		if !ok {
			cs.ok = false
			return cs
		}
		cs.certs = append(cs.certs, certSig{selfSigned: bytes.Equal(iss, sub), schemes: schemes})
	}
	return cs
}

// of returns cs when it was parsed from c as c is now, else nil: a chain
// passed to Pick in place of the one Validate saw (ClassicalFor's) is
// parsed afresh.
func (cs *chainSigs) of(c *tls.Certificate) *chainSigs {
	if cs == nil || cs.cert != c || cs.n != len(c.Certificate) {
		return nil
	}
	return cs
}

// leafCanSign reports whether c's key can make a CertificateVerify (or
// TLS 1.2 ServerKeyExchange) signature with a scheme the client offered
// that crypto/tls will use. TLS 1.3 ties ECDSA to the key's curve and RSA
// to PSS; TLS 1.2 takes any hash and PKCS#1 v1.5, but not SHA-1 (RFC
// 9155; crypto/tls since Go 1.25 unless GODEBUG=tlssha1=1); ML-DSA exists
// only in TLS 1.3.
func leafCanSign(c *tls.Certificate, offered []tls.SignatureScheme, tls13 bool) bool {
	info, err := describeKey(leafPublicKey(c))
	if err != nil {
		return false
	}
	if len(offered) == 0 {
		if tls13 {
			return false // RFC 8446 Section 4.2.3: the extension is required
		}
		// RFC 5246 Section 7.4.1.4.1: a TLS 1.2 client without the
		// extension supports {sha1,rsa} and {sha1,ecdsa} only.
		offered = tls12ImpliedSchemes
	}
	sha1 := !tls13 && tls12SHA1
	ecdsa := info.Scheme == tls.ECDSAWithP256AndSHA256 || info.Scheme == tls.ECDSAWithP384AndSHA384 || info.Scheme == tls.ECDSAWithP521AndSHA512
	switch {
	case info.PostQuantum:
		return tls13 && slices.Contains(offered, info.Scheme)
	case ecdsa && !tls13:
		return slices.ContainsFunc(offered, func(s tls.SignatureScheme) bool {
			return s == tls.ECDSAWithP256AndSHA256 || s == tls.ECDSAWithP384AndSHA384 || s == tls.ECDSAWithP521AndSHA512 || sha1 && s == tls.ECDSAWithSHA1
		})
	case info.Alg == AlgRSA:
		return slices.ContainsFunc(offered, func(s tls.SignatureScheme) bool {
			pss := s == tls.PSSWithSHA256 || s == tls.PSSWithSHA384 || s == tls.PSSWithSHA512
			pkcs1 := s == tls.PKCS1WithSHA256 || s == tls.PKCS1WithSHA384 || s == tls.PKCS1WithSHA512 || sha1 && s == tls.PKCS1WithSHA1
			return pss || !tls13 && pkcs1
		})
	}
	return slices.Contains(offered, info.Scheme) // ECDSA in TLS 1.3, Ed25519
}

// tls12ImpliedSchemes are what a TLS 1.2 ClientHello without
// signature_algorithms offers (RFC 5246 Section 7.4.1.4.1).
var tls12ImpliedSchemes = []tls.SignatureScheme{tls.PKCS1WithSHA1, tls.ECDSAWithSHA1}

// tls12SHA1 is whether crypto/tls signs with SHA-1 in TLS 1.2: only under
// GODEBUG=tlssha1=1 (Go 1.25 turned it off, RFC 9155; pqedge's go.mod
// sets no godebug line, so the environment alone can turn it back on).
var tls12SHA1 = godebugValue(os.Getenv("GODEBUG"), "tlssha1") == "1"

// godebugValue returns the value of key in a GODEBUG string
// ("k1=v1,k2=v2"; the last setting of a key wins, as the runtime reads it),
// or "" when it is not set.
func godebugValue(godebug, key string) string {
	v := ""
	for kv := range strings.SplitSeq(godebug, ",") {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// leafPublicKey returns the public key of c's leaf, or nil.
func leafPublicKey(c *tls.Certificate) crypto.PublicKey {
	if c.Leaf != nil {
		return c.Leaf.PublicKey
	}
	if s, ok := c.PrivateKey.(crypto.Signer); ok {
		return s.Public()
	}
	return nil
}

// leafCurveOffered reports whether a TLS 1.2 client can take c's leaf for
// its curve: an ECDSA key must be on a curve of the client's
// supported_groups when it sent them (RFC 8422 Section 5.1: a server
// negotiates an ECC cipher suite only if it can complete the handshake
// within the client's curves; OpenSSL clients abort with "wrong curve").
// A client without the extension takes any curve (RFC 8422 Section 4),
// and TLS 1.3 names the curve in the signature scheme instead (RFC 8446
// Section 4.2.7). Keys without a curve always fit.
func leafCurveOffered(c *tls.Certificate, groups []tls.CurveID) bool {
	k, ok := leafPublicKey(c).(*ecdsa.PublicKey)
	if !ok || len(groups) == 0 {
		return true
	}
	var id tls.CurveID
	switch k.Curve {
	case elliptic.P256():
		id = tls.CurveP256
	case elliptic.P384():
		id = tls.CurveP384
	case elliptic.P521():
		id = tls.CurveP521
	default:
		return false
	}
	return slices.Contains(groups, id)
}

// tls12Suites are the TLS 1.2 cipher suites crypto/tls serves by default
// (tls.CipherSuites, less RSA key exchange, off since Go 1.22), by the
// certificate key they need: ECDHE_ECDSA suites an ECDSA or Ed25519
// key, ECDHE_RSA suites an RSA key (RFC 8422 Section 2, RFC 5246 Section
// 7.4.2).
var tls12Suites = func() (s struct{ ecdsa, rsa []uint16 }) {
	for _, cs := range tls.CipherSuites() {
		if !slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			continue
		}
		switch {
		case strings.HasPrefix(cs.Name, "TLS_ECDHE_ECDSA_"):
			s.ecdsa = append(s.ecdsa, cs.ID)
		case strings.HasPrefix(cs.Name, "TLS_ECDHE_RSA_"):
			s.rsa = append(s.rsa, cs.ID)
		}
	}
	return s
}()

// leafSuiteOffered reports whether a TLS 1.2 client offers a cipher suite
// for c's leaf key: a server must pick a suite whose key exchange fits its
// certificate (RFC 5246 Section 7.4.2; RFC 8422 Section 5.1), so a
// client offering only ECDHE_RSA suites cannot take an ECDSA chain. A
// client that offers no suite crypto/tls serves for any key is not ruled
// out here: crypto/tls refuses it for its suites, not its certificate.
// Keys TLS 1.2 has no suite for (ML-DSA) are left to leafCanSign.
func leafSuiteOffered(c *tls.Certificate, suites []uint16) bool {
	offers := func(ids []uint16) bool {
		return slices.ContainsFunc(suites, func(id uint16) bool { return slices.Contains(ids, id) })
	}
	if !offers(tls12Suites.ecdsa) && !offers(tls12Suites.rsa) {
		return true
	}
	switch leafPublicKey(c).(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
		return offers(tls12Suites.ecdsa)
	case *rsa.PublicKey:
		return offers(tls12Suites.rsa)
	}
	return true
}
