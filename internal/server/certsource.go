package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/config"
)

// certSource builds sites' certificate selectors from their settings, for
// the certificate store (a transaction's prepare, or a refresh). The local
// development CA is shared by every site with certs = "local", so a
// developer trusts one root for all of them.
type certSource struct {
	cfg   *config.Config
	now   time.Time
	local *certs.LocalSet // made on first use
}

func (cs *certSource) selector(site config.Site) (*certs.Selector, error) {
	mode, err := certs.ParsePQMode(site.PQCerts)
	if err != nil {
		return nil, err
	}
	// A chain is served only if the client can verify every signature in
	// it (RFC 8446 section 4.4.2.2); else the next chain; else the
	// handshake fails, counted as certificate (issue 12, kind 8).
	sel := &certs.Selector{Mode: mode, VerifiableChainsOnly: true}
	for _, r := range site.PQRule {
		// Validated by package config.
		sel.ClientRules = append(sel.ClientRules, certs.ClientRule{Network: netip.MustParsePrefix(r.Network), Mode: certs.PQMode(r.Mode)})
	}
	switch site.Certs {
	case config.CertsLocal:
		set, err := cs.localSet()
		if err != nil {
			return nil, err
		}
		sel.Classical, sel.PQ = set.Classical, set.PQ
		sel.PQRoots = []*x509.Certificate{set.PQRoot}
	case config.CertsFiles, config.CertsACME:
		if site.Certs == config.CertsACME {
			// The classical chain comes from the site's ACME Manager on
			// every handshake (acme.go), so renewals need no rebuild; this
			// placeholder is what the selector returns when the client is
			// to get it.
			sel.Classical = &tls.Certificate{}
		}
		for _, pair := range site.Cert {
			cert, err := certs.LoadKeyPair(pair.Cert, pair.Key)
			if err != nil {
				return nil, err
			}
			if err := certs.Check(cert.Leaf, site.ServerNames, cs.now); err != nil {
				return nil, fmt.Errorf("certificate %s: %w", pair.Cert, err)
			}
			key, err := certs.DescribeKey(cert.Leaf.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("certificate %s: %w", pair.Cert, err)
			}
			isPQ := key.PostQuantum
			if site.Certs == config.CertsACME && !isPQ {
				return nil, fmt.Errorf("certificate %s: an ACME site's [[site.cert]] is its ML-DSA pair, but this key is %s; the classical certificate comes from ACME", pair.Cert, key.Alg)
			}
			slot := &sel.Classical
			if isPQ {
				slot = &sel.PQ
			}
			if *slot != nil {
				kind := map[bool]string{false: "classical", true: "ML-DSA"}[isPQ]
				return nil, fmt.Errorf("certificate %s: the site already has a %s certificate; list at most one classical and one ML-DSA pair", pair.Cert, kind)
			}
			*slot = cert
		}
		if site.PQRoot != "" {
			data, err := os.ReadFile(site.PQRoot)
			if err != nil {
				return nil, fmt.Errorf("failed to read pq_root: %w", err)
			}
			roots, err := certs.ParseCertificatesPEM(data)
			if err != nil {
				return nil, fmt.Errorf("failed to load pq_root %q: %w", site.PQRoot, err)
			}
			sel.PQRoots = roots
		}
	default:
		return nil, fmt.Errorf("certificate mode %q is not available in this build", site.Certs)
	}
	if sel.PQ != nil {
		kind, err := certs.ParseSignerKind(site.TLS.MLDSASigner)
		if err != nil {
			return nil, err
		}
		if err := certs.WrapSigner(sel.PQ, kind); err != nil {
			return nil, err
		}
	}
	if err := sel.Validate(); err != nil {
		return nil, err
	}
	return sel, nil
}

// localSet creates or reuses the local CA and a leaf for the names of every
// local site.
func (cs *certSource) localSet() (*certs.LocalSet, error) {
	if cs.local != nil {
		return cs.local, nil
	}
	var names []string
	for _, s := range cs.cfg.Site {
		if s.Certs == config.CertsLocal || cs.cfg.Compat != nil && cs.cfg.Compat.Site == s.Name {
			names = append(names, s.ServerNames...)
		}
	}
	slices.Sort(names)
	set, err := certs.EnsureLocal(filepath.Join(cs.cfg.DataDir, "local"), slices.Compact(names), cs.now)
	if err != nil {
		return nil, err
	}
	cs.local = set
	return set, nil
}

// expiryDays reports days until a certificate's leaf expires.
func expiryDays(c *tls.Certificate, now time.Time) (float64, bool) {
	if c == nil || c.Leaf == nil {
		return 0, false
	}
	return c.Leaf.NotAfter.Sub(now).Hours() / 24, true
}
