package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/proxy"
)

// PoolTLS reads the files a pool's origin TLS names and returns the
// settings of its https:// upstreams: tls_ca's roots (PEM certificates),
// tls_client_cert and tls_client_key through certs.LoadFiles (they parse,
// belong together and are valid at now; an ML-DSA key gets the
// DefaultMLDSASigner), tls_server_name and pq_required. It is the one
// loader of these files: CheckFiles reports with it, the server builds
// pools with it, so the two cannot disagree.
//
// Errors are certs.FileProblems whose Field is the pool key that names
// the file ("tls_ca", "tls_client_cert", "tls_client_key"). warnings are
// problems that leave the files usable: a chain out of order, a
// certificate about to expire, one not meant for client authentication.
// A pool without https:// upstreams gives the zero settings.
func PoolTLS(p Pool, now time.Time) (settings proxy.UpstreamTLS, warnings certs.FileProblems, err error) {
	if !p.HTTPS() {
		return proxy.UpstreamTLS{}, nil, nil
	}
	settings = proxy.UpstreamTLS{ServerName: p.TLSServerName, PQRequired: p.PQRequired}
	var problems certs.FileProblems
	if p.TLSCA != "" {
		roots, err := certs.ReadCertificatesFile(p.TLSCA)
		if err != nil {
			problems = append(problems, certs.FileProblem{Field: "tls_ca", File: p.TLSCA, Err: err})
		}
		settings.RootCAs = roots
	}
	if p.TLSClientCert != "" {
		cert, ws, ps := loadClientCert(p, now)
		problems = append(problems, ps...)
		settings.Certificate, warnings = cert, ws
	}
	if len(problems) > 0 {
		return proxy.UpstreamTLS{}, warnings, problems
	}
	return settings, warnings, nil
}

// loadClientCert loads a pool's client certificate pair with the loader
// site certificates use, with its fields renamed to the pool's keys.
func loadClientCert(p Pool, now time.Time) (_ *tls.Certificate, warnings, problems certs.FileProblems) {
	field := map[string]string{"cert.0.cert": "tls_client_cert", "cert.0.key": "tls_client_key"}
	rename := func(ps certs.FileProblems) certs.FileProblems {
		for i := range ps {
			if f, ok := field[ps[i].Field]; ok {
				ps[i].Field = f
			}
		}
		return ps
	}
	loaded, err := certs.LoadFiles(certs.FileSet{Pairs: []certs.FilePair{{Cert: p.TLSClientCert, Key: p.TLSClientKey}}}, now)
	var fps certs.FileProblems
	switch {
	case errors.As(err, &fps):
		return nil, nil, rename(fps)
	case err != nil:
		return nil, nil, certs.FileProblems{{Field: "tls_client_cert", File: p.TLSClientCert, Err: err}}
	}
	cert := loaded.Classical
	if cert == nil {
		cert = loaded.PQ
	}
	warnings = rename(loaded.Warnings)
	if eku := cert.Leaf.ExtKeyUsage; len(eku) > 0 && !slices.Contains(eku, x509.ExtKeyUsageClientAuth) && !slices.Contains(eku, x509.ExtKeyUsageAny) {
		warnings = append(warnings, certs.FileProblem{Field: "tls_client_cert", File: p.TLSClientCert, Err: fmt.Errorf(
			"certificate %s is not for client authentication (its extended key usage lacks clientAuth): origins that verify client certificates refuse it", p.TLSClientCert)})
	}
	if err := certs.WrapSigner(cert, DefaultMLDSASigner); err != nil {
		return nil, nil, certs.FileProblems{{Field: "tls_client_key", File: p.TLSClientKey, Err: err}}
	}
	return cert, warnings, nil
}
