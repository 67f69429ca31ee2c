package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Lifetimes of the local development CA and its leaves. A leaf is re-issued
// when less than LocalRenewBefore of it remains, so a long-running
// development server restarted now and then never serves an expired one.
const (
	localCAValidity   = 10 * 365 * 24 * time.Hour
	localLeafValidity = 365 * 24 * time.Hour
	// LocalRenewBefore is how long before its end a local certificate is
	// re-issued.
	LocalRenewBefore = 30 * 24 * time.Hour
)

// LocalSet is the result of EnsureLocal: one classical and one ML-DSA chain
// for the same names, each from its own local CA.
type LocalSet struct {
	Dir string
	// Classical is an ECDSA P-256 leaf signed by the classical local CA.
	Classical *tls.Certificate
	// PQ is an ML-DSA-65 leaf signed by the ML-DSA-87 local CA.
	PQ *tls.Certificate
	// ClassicalRoot and PQRoot are the CA certificates a developer imports
	// (see `pqedge certs trust`); PQRoot is what a Selector's PQRoots needs.
	ClassicalRoot *x509.Certificate
	PQRoot        *x509.Certificate
	// Issued lists the files (re)written by this call, for the log.
	Issued []string

	classicalCA, pqCA *CA // for Issue
}

// Issue makes another leaf from the local CAs, in memory: ML-DSA leaves from
// the ML-DSA CA, the others from the classical one (the compatibility page
// serves one per algorithm).
func (s *LocalSet) Issue(opts LeafOptions) (*tls.Certificate, error) {
	if opts.Alg.PostQuantum() {
		return s.pqCA.Issue(opts)
	}
	return s.classicalCA.Issue(opts)
}

// LocalLeafFiles lists the certificate and key files of the leaves
// EnsureLocal keeps in dir, so a caller can notice when they are re-issued.
func LocalLeafFiles(dir string) []string {
	var files []string
	for _, f := range []localFamily{localClassical, localPQ} {
		base := filepath.Join(dir, f.leafBase)
		files = append(files, base+".crt", base+".key")
	}
	return files
}

// localFamily is one CA and its leaf in a local directory.
type localFamily struct {
	caBase, leafBase string // file names without .crt/.key
	caAlg, leafAlg   Alg
	caName           string
}

var (
	localClassical = localFamily{caBase: "classical-ca", leafBase: "classical", caAlg: AlgECDSAP256, leafAlg: AlgECDSAP256, caName: "pqedge local development CA (ECDSA)"}
	localPQ        = localFamily{caBase: "pq-ca", leafBase: "pq", caAlg: AlgMLDSA87, leafAlg: AlgMLDSA65, caName: "pqedge local development CA (ML-DSA)"}
)

// EnsureLocal makes sure dir holds a local development CA pair and leaf
// certificates for names, valid at now. The first call creates everything
// (dir 0700, keys 0600); later calls reuse what is there and re-issue a leaf
// that is missing, lacks one of names, is expired or is within 30 days of
// expiry. A CA that is missing or near its end is replaced, with its leaf.
func EnsureLocal(dir string, names []string, now time.Time) (*LocalSet, error) {
	if len(names) == 0 {
		return nil, errors.New("local certificates need at least one name")
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("failed to make local certificate directory: %w", err)
	}
	set := &LocalSet{Dir: dir}
	var err error
	if set.Classical, set.classicalCA, err = ensureLocalFamily(set, localClassical, names, now); err != nil {
		return nil, err
	}
	if set.PQ, set.pqCA, err = ensureLocalFamily(set, localPQ, names, now); err != nil {
		return nil, err
	}
	set.ClassicalRoot, set.PQRoot = set.classicalCA.Root, set.pqCA.Root
	return set, nil
}

func ensureLocalFamily(set *LocalSet, f localFamily, names []string, now time.Time) (*tls.Certificate, *CA, error) {
	caPath := filepath.Join(set.Dir, f.caBase)
	ca, err := loadLocalCA(caPath, now)
	if err != nil {
		return nil, nil, err
	}
	if ca == nil {
		caCert, err := newCACert(f.caAlg, f.caName, nil, now, localCAValidity)
		if err != nil {
			return nil, nil, err
		}
		if err := WriteKeyPair(caPath, caCert); err != nil {
			return nil, nil, err
		}
		set.Issued = append(set.Issued, caPath+".crt")
		ca = &CA{Dir: set.Dir, Root: caCert.Leaf, issuer: caCert.Leaf, issuerKey: caCert.PrivateKey.(crypto.Signer)}
	}
	leafPath := filepath.Join(set.Dir, f.leafBase)
	leaf, err := LoadKeyPair(leafPath+".crt", leafPath+".key")
	if err == nil && localLeafUsable(leaf.Leaf, ca.Root, names, now) {
		return leaf, ca, nil
	}
	leaf, err = ca.Issue(LeafOptions{Names: names, Alg: f.leafAlg, Validity: localLeafValidity, Now: now})
	if err != nil {
		return nil, nil, err
	}
	if err := WriteKeyPair(leafPath, leaf); err != nil {
		return nil, nil, err
	}
	set.Issued = append(set.Issued, leafPath+".crt")
	return leaf, ca, nil
}

// loadLocalCA returns the CA at base, or nil when it must be (re)made: it is
// missing or within LocalRenewBefore of its end. A CA that exists but does
// not load is an error, not a reason to overwrite files someone may need.
func loadLocalCA(base string, now time.Time) (*CA, error) {
	keyFile := base + ".key"
	if _, err := os.Stat(keyFile); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err := checkKeyFileMode(keyFile); err != nil {
		return nil, err
	}
	c, err := LoadKeyPair(base+".crt", keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w; remove %s.crt and %s.key to make a new local CA", err, base, base)
	}
	if now.Add(LocalRenewBefore).After(c.Leaf.NotAfter) {
		return nil, nil
	}
	return &CA{Root: c.Leaf, issuer: c.Leaf, issuerKey: c.PrivateKey.(crypto.Signer)}, nil
}

// localLeafUsable reports whether leaf can be served again: it names every
// name, is signed by root and has more than LocalRenewBefore left.
func localLeafUsable(leaf, root *x509.Certificate, names []string, now time.Time) bool {
	return Check(leaf, names, now) == nil &&
		now.Add(LocalRenewBefore).Before(leaf.NotAfter) &&
		leaf.CheckSignatureFrom(root) == nil
}
