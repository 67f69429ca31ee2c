package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Files of a CA directory made by InitCA.
const (
	RootCertFile         = "root.crt"
	RootKeyFile          = "root.key"
	IntermediateCertFile = "intermediate.crt"
	IntermediateKeyFile  = "intermediate.key"
)

// Validity periods pqedge uses when the caller gives none.
const (
	DefaultRootValidity         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateValidity = 5 * 365 * 24 * time.Hour
	DefaultLeafValidity         = 90 * 24 * time.Hour
)

// CAOptions configures InitCA.
type CAOptions struct {
	// Alg is the root's key algorithm: mldsa87 (default), mldsa65, mldsa44
	// or ecdsa-p384.
	Alg Alg
	// Intermediate adds an intermediate CA that signs the leaves, so the
	// root key can stay offline.
	Intermediate bool
	// IntermediateAlg is the intermediate's algorithm: one of CAAlgs;
	// default DefaultIntermediateAlg(Alg). Its public key and its signature
	// on every leaf are sent in every handshake: with an ML-DSA-44
	// intermediate and leaf the server's first flight is about 14.2 KB and
	// fits TCP's initial window (InitialWindowBytes), with ML-DSA-65 or -87
	// it is 17.6 to 19.2 KB and costs a round trip more.
	IntermediateAlg Alg
	// Name is the root's common name; default "pqedge root CA".
	Name string
	// Now is the clock; zero means time.Now().
	Now time.Time
}

// DefaultIntermediateAlg is the intermediate InitCA makes under a root of
// algorithm root: ML-DSA-44 under an ML-DSA root, so that a chain of an
// ML-DSA-44 leaf and the intermediate fits TCP's initial window whatever
// the root (the root itself is not sent), and the root's algorithm
// otherwise.
func DefaultIntermediateAlg(root Alg) Alg {
	if root.PostQuantum() {
		return AlgMLDSA44
	}
	return root
}

// CA is a certificate authority directory opened by OpenCA or made by
// InitCA. Leaves are signed by the intermediate when there is one.
type CA struct {
	Dir          string
	Root         *x509.Certificate
	Intermediate *x509.Certificate // nil without an intermediate

	issuer    *x509.Certificate
	issuerKey crypto.Signer
}

// InitCA creates a CA in dir (made mode 0700 if missing). It refuses to
// overwrite an existing root key.
func InitCA(dir string, opts CAOptions) (*CA, error) {
	if opts.Alg == "" {
		opts.Alg = AlgMLDSA87
	}
	if !slices.Contains(CAAlgs(), opts.Alg) {
		return nil, fmt.Errorf("a root CA key must be %s, not %q", AlgList(CAAlgs(), " or "), opts.Alg)
	}
	if opts.IntermediateAlg == "" {
		opts.IntermediateAlg = DefaultIntermediateAlg(opts.Alg)
	}
	if opts.Intermediate && !slices.Contains(CAAlgs(), opts.IntermediateAlg) {
		return nil, fmt.Errorf("an intermediate CA key must be %s, not %q", AlgList(CAAlgs(), " or "), opts.IntermediateAlg)
	}
	if opts.Name == "" {
		opts.Name = "pqedge root CA"
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("failed to make CA directory: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, RootKeyFile)); err == nil {
		return nil, fmt.Errorf("%q already holds a CA (%s); choose another directory or remove it first", dir, RootKeyFile)
	}
	root, err := newCACert(opts.Alg, opts.Name, nil, now, DefaultRootValidity)
	if err != nil {
		return nil, err
	}
	ca := &CA{Dir: dir, Root: root.Leaf, issuer: root.Leaf, issuerKey: root.PrivateKey.(crypto.Signer)}
	if opts.Intermediate {
		inter, err := newCACert(opts.IntermediateAlg, opts.Name+" intermediate", root, now, DefaultIntermediateValidity)
		if err != nil {
			return nil, err
		}
		if err := WriteKeyPair(filepath.Join(dir, "intermediate"), inter); err != nil {
			return nil, err
		}
		ca.Intermediate, ca.issuer, ca.issuerKey = inter.Leaf, inter.Leaf, inter.PrivateKey.(crypto.Signer)
	}
	// The root is written last: its key's presence marks a complete CA.
	if err := WriteKeyPair(filepath.Join(dir, "root"), root); err != nil {
		return nil, err
	}
	return ca, nil
}

// newCACert makes a CA key and certificate, self-signed when parent is nil.
func newCACert(alg Alg, name string, parent *tls.Certificate, now time.Time, validity time.Duration) (*tls.Certificate, error) {
	key, err := GenerateKey(alg)
	if err != nil {
		return nil, fmt.Errorf("failed to make the %s CA key: %w", alg, err)
	}
	// Every CA gets a distinct subject: clients name trusted CAs by subject
	// in certificate_authorities (RFC 8446 Section 4.2.4), so two pqedge
	// CAs sharing "pqedge root CA" would be indistinguishable to Selector.
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s %x", name, ski[:4]), Organization: []string{"pqedge"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew between machines
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if parent != nil {
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	}
	return signCert(tmpl, key, parent)
}

// signCert fills serial and key identifiers, signs tmpl with parent (or
// self-signs) and returns the chain up to, not including, the root.
func signCert(tmpl *x509.Certificate, key crypto.Signer, parent *tls.Certificate) (*tls.Certificate, error) {
	var err error
	if tmpl.SerialNumber, err = randomSerial(); err != nil {
		return nil, err
	}
	if tmpl.SubjectKeyId, err = subjectKeyID(key.Public()); err != nil {
		return nil, err
	}
	issuer, issuerKey := tmpl, key
	if parent != nil {
		issuer, issuerKey = parent.Leaf, parent.PrivateKey.(crypto.Signer)
		tmpl.AuthorityKeyId = parent.Leaf.SubjectKeyId
		if tmpl.NotAfter.After(parent.Leaf.NotAfter) {
			// A certificate outliving its issuer fails verification
			// after the issuer expires anyway; say so in the dates.
			tmpl.NotAfter = parent.Leaf.NotAfter
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		return nil, fmt.Errorf("failed to sign certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("failed to parse the new certificate: %w", err)
	}
	out := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	if parent != nil && !isSelfSigned(parent.Leaf) {
		out.Certificate = append(out.Certificate, parent.Certificate...)
	}
	return out, nil
}

// isSelfSigned reports whether c is a root: issued by its own subject.
func isSelfSigned(c *x509.Certificate) bool {
	return string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// OpenCA loads a CA directory made by InitCA. It refuses key files others
// can read and CA certificates that are expired at now.
func OpenCA(dir string, now time.Time) (*CA, error) {
	root, err := loadCAFile(dir, "root", now)
	if err != nil {
		return nil, err
	}
	ca := &CA{Dir: dir, Root: root.Leaf, issuer: root.Leaf, issuerKey: root.PrivateKey.(crypto.Signer)}
	inter, err := loadCAFile(dir, "intermediate", now)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ca, nil
	case err != nil:
		return nil, err
	}
	if err := inter.Leaf.CheckSignatureFrom(root.Leaf); err != nil {
		return nil, fmt.Errorf("%q is not signed by %q: %w", filepath.Join(dir, IntermediateCertFile), filepath.Join(dir, RootCertFile), err)
	}
	ca.Intermediate, ca.issuer, ca.issuerKey = inter.Leaf, inter.Leaf, inter.PrivateKey.(crypto.Signer)
	return ca, nil
}

func loadCAFile(dir, base string, now time.Time) (*tls.Certificate, error) {
	certFile, keyFile := filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	if _, err := os.Stat(keyFile); err != nil {
		return nil, fmt.Errorf("failed to open CA %q: %w (make one with `pqedge certs init --dir %s`)", dir, err, dir)
	}
	if err := checkKeyFileMode(keyFile); err != nil {
		return nil, err
	}
	c, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if !c.Leaf.IsCA {
		return nil, fmt.Errorf("%q is not a CA certificate", certFile)
	}
	if now.After(c.Leaf.NotAfter) {
		return nil, fmt.Errorf("CA certificate %q expired on %s; make a new CA with `pqedge certs init --dir NEWDIR`", certFile, c.Leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	return c, nil
}

// LeafOptions configures CA.Issue.
type LeafOptions struct {
	// Names are DNS names or IP addresses; the first is the common name.
	Names []string
	// Alg is the leaf key's algorithm: mldsa44, mldsa65, mldsa87,
	// ecdsa-p256 or ed25519.
	Alg Alg
	// Validity defaults to DefaultLeafValidity; it is cut to the issuer's.
	Validity time.Duration
	// Now is the clock; zero means time.Now().
	Now time.Time
}

// Issue makes a server certificate for opts.Names. The returned chain is the
// leaf followed by the intermediate, if any (never the root: clients have
// it, and every byte of the chain costs handshake time).
func (ca *CA) Issue(opts LeafOptions) (*tls.Certificate, error) {
	if len(opts.Names) == 0 {
		return nil, errors.New("a certificate needs at least one name")
	}
	for _, n := range opts.Names {
		if err := CheckName(n); err != nil {
			return nil, fmt.Errorf("cannot issue a leaf certificate: %w", err)
		}
	}
	// The algorithms a leaf may have are those the CLI and config accept.
	if a, err := ParseAlg(string(opts.Alg)); err != nil || a != opts.Alg {
		return nil, fmt.Errorf("cannot issue a leaf certificate: unknown key algorithm %q (known: %s)", opts.Alg, AlgList(LeafAlgs(), ", "))
	}
	if opts.Validity <= 0 {
		opts.Validity = DefaultLeafValidity
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	key, err := GenerateKey(opts.Alg)
	if err != nil {
		return nil, err
	}
	tmpl := leafTemplate(opts.Names, now, opts.Validity)
	parent := &tls.Certificate{Leaf: ca.issuer, PrivateKey: ca.issuerKey}
	if ca.Intermediate != nil {
		parent.Certificate = [][]byte{ca.Intermediate.Raw}
	}
	return signCert(tmpl, key, parent)
}

// NewChain makes, in memory, a root, an intermediate and a leaf for names,
// all three with keys of alg: the shape of a real deployment's chain, for
// comparing algorithms (pqedge bench). The returned certificate is the leaf
// and the intermediate; root is what clients trust.
func NewChain(alg Alg, names []string, now time.Time, validity time.Duration) (leaf *tls.Certificate, root *x509.Certificate, err error) {
	if len(names) == 0 {
		return nil, nil, errors.New("a certificate needs at least one name")
	}
	rootCert, err := newCACert(alg, "pqedge "+string(alg)+" root", nil, now, validity)
	if err != nil {
		return nil, nil, err
	}
	inter, err := newCACert(alg, "pqedge "+string(alg)+" intermediate", rootCert, now, validity)
	if err != nil {
		return nil, nil, err
	}
	key, err := GenerateKey(alg)
	if err != nil {
		return nil, nil, err
	}
	leaf, err = signCert(leafTemplate(names, now, validity), key, inter)
	if err != nil {
		return nil, nil, err
	}
	return leaf, rootCert.Leaf, nil
}

// leafTemplate is a TLS server certificate for names (RFC 5280 Section
// 4.2.1.6: names go in the SAN; the CN is informative only).
func leafTemplate(names []string, now time.Time, validity time.Duration) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return tmpl
}
