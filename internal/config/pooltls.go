package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/proxy"
)

// checkPoolTLS checks a pool's origin TLS keys without reading the files
// they name (CheckFiles does): they need https:// upstreams, which a pool
// must not mix with plain ones (a request's protection would hang on the
// upstream picked); a client certificate needs its key and the other way
// round; the server name is a DNS name or an IP address.
func (v *validator) checkPoolTLS(key string, p Pool) {
	https := 0
	for _, u := range p.Upstreams {
		if isHTTPSUpstream(u) {
			https++
		}
	}
	if https > 0 && https < len(p.Upstreams) {
		v.addf(key+".upstreams", "a pool's upstreams are all https:// or none; put each kind in a pool of its own",
			"pool %q mixes https:// and plain upstreams: whether a request's origin leg is encrypted would depend on the upstream picked", p.Name)
	}
	keys := []struct {
		name string
		set  bool
	}{
		{"tls_ca", p.TLSCA != ""}, {"tls_server_name", p.TLSServerName != ""},
		{"tls_client_cert", p.TLSClientCert != ""}, {"tls_client_key", p.TLSClientKey != ""}, {"pq_required", p.PQRequired},
	}
	if https == 0 {
		for _, k := range keys {
			if k.set {
				v.addf(key+"."+k.name, "write the upstreams as \"https://host:port\", or remove "+k.name,
					"pool %q: %s is for https:// upstreams, and the pool has none", p.Name, k.name)
			}
		}
		return
	}
	switch {
	case p.TLSClientCert != "" && p.TLSClientKey == "":
		v.addf(key+".tls_client_cert", "set tls_client_key to the certificate's private key file", "pool %q has tls_client_cert but no tls_client_key", p.Name)
	case p.TLSClientKey != "" && p.TLSClientCert == "":
		v.addf(key+".tls_client_key", "set tls_client_cert to the certificate chain file", "pool %q has tls_client_key but no tls_client_cert", p.Name)
	}
	if n := p.TLSServerName; n != "" {
		if err := checkServerName(n); err != nil || strings.HasPrefix(n, "*.") {
			v.addf(key+".tls_server_name", "the name the origins' certificates carry, e.g. \"origin.example.com\"", "bad server name %q", n)
		}
	}
}

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
