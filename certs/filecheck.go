package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// FileSet names the files one site's certificates come from, as a config
// lists them ([[site.cert]] pairs and pq_root).
type FileSet struct {
	// Pairs are certificate chain and key files (PEM, leaf first): at most
	// one classical and one ML-DSA pair.
	Pairs []FilePair
	// PQRoot, if set, is a PEM file of the roots the ML-DSA chain chains
	// up to (for PQTrusted).
	PQRoot string
	// Names are the server names every leaf must cover.
	Names []string
	// PQOnly says every pair must be ML-DSA: an ACME site's classical
	// chain comes from ACME, so its one pair is the ML-DSA one.
	PQOnly bool
}

// FilePair is a certificate chain file and its private key file.
type FilePair struct{ Cert, Key string }

// LoadedFiles is what LoadFiles read: the chains to serve and the PQ roots.
type LoadedFiles struct {
	Classical, PQ *tls.Certificate // nil when the set has no such pair
	PQRoots       []*x509.Certificate
	// Warnings are problems that do not stop the files from being served
	// (a chain out of order, a leaf about to expire).
	Warnings FileProblems
}

// FileProblem is one problem with one file of a FileSet. Field says which
// setting named the file, as a config spells it below its site:
// "cert.N.cert" or "cert.N.key" (N counting pairs from 0) or "pq_root".
type FileProblem struct {
	Field string
	File  string
	Err   error
}

func (p FileProblem) Error() string { return p.Err.Error() }
func (p FileProblem) Unwrap() error { return p.Err }

// FileProblems is the error LoadFiles returns: every problem it found, in
// the order of the set, so an operator fixes them in one go.
type FileProblems []FileProblem

func (ps FileProblems) Error() string {
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "; ")
}

// ExpiryWarning is how close to its end a leaf makes LoadFiles warn.
const ExpiryWarning = 14 * 24 * time.Hour

// LoadFiles reads and checks every file of fs as of now: each certificate
// file parses; each key parses and belongs to its certificate's leaf; each
// leaf is valid at now and covers every name; the set has at most one
// classical and one ML-DSA pair (with PQOnly, only ML-DSA); pq_root holds
// PEM certificates. It is the one loader of configured certificate files:
// `pqedge config check` calls it to report, the server to serve, so the
// two cannot disagree. Errors are FileProblems naming the file and the
// setting; it never writes.
func LoadFiles(fs FileSet, now time.Time) (*LoadedFiles, error) {
	out := &LoadedFiles{}
	var problems FileProblems
	add := func(field, file string, err error) {
		problems = append(problems, FileProblem{Field: field, File: file, Err: err})
	}
	for i, p := range fs.Pairs {
		certField, keyField := fmt.Sprintf("cert.%d.cert", i), fmt.Sprintf("cert.%d.key", i)
		cert, err := loadPair(p)
		var pe *pairError
		switch {
		case errors.As(err, &pe) && pe.key:
			add(keyField, p.Key, pe.err)
			continue
		case err != nil:
			add(certField, p.Cert, err)
			continue
		}
		if err := Check(cert.Leaf, fs.Names, now); err != nil {
			add(certField, p.Cert, fmt.Errorf("certificate %s: %w", p.Cert, err))
			continue
		}
		key, _ := DescribeKey(cert.Leaf.PublicKey) // keyPair checked it
		if fs.PQOnly && !key.PostQuantum {
			add(certField, p.Cert, fmt.Errorf("certificate %s: this pair is the site's ML-DSA chain (the classical one comes from ACME), but its key is %s", p.Cert, key.Name))
			continue
		}
		slot, kind := &out.Classical, "classical"
		if key.PostQuantum {
			slot, kind = &out.PQ, "ML-DSA"
		}
		if *slot != nil {
			add(certField, p.Cert, fmt.Errorf("certificate %s: the site already has a %s certificate; list at most one classical and one ML-DSA pair", p.Cert, kind))
			continue
		}
		*slot = cert
		out.Warnings = append(out.Warnings, chainWarnings(certField, p.Cert, cert, now)...)
	}
	if fs.PQRoot != "" {
		roots, err := ReadCertificatesFile(fs.PQRoot)
		if err != nil {
			add("pq_root", fs.PQRoot, err)
		}
		out.PQRoots = roots
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return out, nil
}

// pairError marks a loadPair failure that is the key file's.
type pairError struct {
	key bool
	err error
}

func (e *pairError) Error() string { return e.err.Error() }

// loadPair is LoadKeyPair, telling whether the certificate or the key is
// at fault so the problem points at the right setting.
func loadPair(p FilePair) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(p.Cert)
	if err != nil {
		return nil, fmt.Errorf("failed to read certificate: %w", err)
	}
	chain, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("failed to load certificate %q: %w", p.Cert, err)
	}
	keyPEM, err := os.ReadFile(p.Key)
	if err != nil {
		return nil, &pairError{key: true, err: fmt.Errorf("failed to read private key: %w", err)}
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, &pairError{key: true, err: fmt.Errorf("failed to load private key %q: %w", p.Key, err)}
	}
	cert, err := keyPair(chain, key)
	if err != nil {
		return nil, &pairError{key: true, err: fmt.Errorf("failed to pair %q with %q: %w", p.Cert, p.Key, err)}
	}
	return cert, nil
}

// chainWarnings reports what clients will trip over although the chain
// loads: certificates out of order, a leaf about to expire.
func chainWarnings(field, file string, cert *tls.Certificate, now time.Time) FileProblems {
	var ws FileProblems
	chain := make([]*x509.Certificate, 0, len(cert.Certificate))
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return ws // parsed once already by loadPair; cannot happen
		}
		chain = append(chain, c)
	}
	for i := 0; i+1 < len(chain); i++ {
		if chain[i].CheckSignatureFrom(chain[i+1]) != nil {
			ws = append(ws, FileProblem{Field: field, File: file, Err: fmt.Errorf(
				"certificate %s: certificate %d (%s) is not signed by certificate %d (%s): the chain is out of order or has a stray certificate, and clients may refuse it (`pqedge certs inspect %s` shows the chain)",
				file, i+1, chain[i].Subject, i+2, chain[i+1].Subject, file)})
			break
		}
	}
	if left := cert.Leaf.NotAfter.Sub(now); left < ExpiryWarning {
		ws = append(ws, FileProblem{Field: field, File: file, Err: fmt.Errorf(
			"certificate %s expires on %s, in %d days; renew it", file, cert.Leaf.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))})
	}
	return ws
}

// ReadCertificatesFile reads a PEM file of certificates, such as a config's
// pq_root or acme.ca_roots.
func ReadCertificatesFile(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("failed to load %s: %w", path, err)
	}
	return certs, nil
}
