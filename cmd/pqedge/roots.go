package main

import (
	"crypto/x509"
	"fmt"
	"runtime/debug"

	// Mozilla's CA roots, built in. pqedge verifies public TLS servers
	// (an ACME directory such as Let's Encrypt's) with the system's roots,
	// and a scratch container has none: without this, ACME fails there
	// with "certificate signed by unknown authority". crypto/x509 uses the
	// bundle only when the system has no roots (SSL_CERT_FILE,
	// SSL_CERT_DIR, /etc/ssl/certs...); GODEBUG=x509usefallbackroots=1
	// forces it. Keep the module current: its roots are its releases'.
	_ "golang.org/x/crypto/x509roots/fallback"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

const fallbackModule = "golang.org/x/crypto/x509roots/fallback"

// caRoots says which CA roots verify public TLS servers, for `pqedge
// version`: the system's, or the built-in bundle and its version.
func caRoots() string {
	sys, err := x509.SystemCertPool()
	if err != nil {
		return "none (" + err.Error() + ")"
	}
	builtin, n := builtinRoots()
	if !sys.Equal(builtin) {
		return "the system's (the built-in bundle is used only where the system has none)"
	}
	return fmt.Sprintf("built in, %d roots from Mozilla (%s %s): the system has none", n, fallbackModule, moduleVersion(fallbackModule))
}

// builtinRoots is the pool the fallback package hands crypto/x509, built
// the same way, so that x509.CertPool.Equal recognises it.
func builtinRoots() (*x509.CertPool, int) {
	pool, n := x509.NewCertPool(), 0
	for root := range bundle.Roots() {
		cert, err := x509.ParseCertificate(root.Certificate)
		if err != nil {
			continue // the fallback package panics on these at init: unreachable
		}
		if root.Constraint == nil {
			pool.AddCert(cert)
		} else {
			pool.AddCertWithConstraint(cert, root.Constraint)
		}
		n++
	}
	return pool, n
}

func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == path {
				return m.Version
			}
		}
	}
	return "(unknown version)"
}
