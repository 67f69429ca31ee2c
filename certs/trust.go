package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TrustFileBase is the base name of the files `pqedge certs trust --out`
// writes for a CA made by `pqedge certs init`: .crt (PEM) and .cer (DER).
const TrustFileBase = "pqedge-root"

// TrustRoot is a root certificate to make clients trust, with the base name
// of the files (and the NSS nickname) it is written under.
type TrustRoot struct {
	Base string
	Cert *x509.Certificate
}

// FindTrustRoots returns the roots of a CA directory: root.crt of a CA made
// by InitCA, or both roots of a local development directory made by
// EnsureLocal (classical and ML-DSA).
func FindTrustRoots(dir string) ([]TrustRoot, error) {
	candidates := []struct{ file, base string }{
		{RootCertFile, TrustFileBase},
		{localClassical.caBase + ".crt", "pqedge-local-classical"},
		{localPQ.caBase + ".crt", "pqedge-local-pq"},
	}
	var roots []TrustRoot
	for _, c := range candidates {
		path := filepath.Join(dir, c.file)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read %q: %w", path, err)
		}
		chain, err := ParseCertificatesPEM(data)
		if err != nil {
			return nil, fmt.Errorf("failed to load %q: %w", path, err)
		}
		roots = append(roots, TrustRoot{Base: c.base, Cert: chain[0]})
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("no CA root in %q: expected %s (from `pqedge certs init`) or %s and %s (the local development CA in data_dir/local)",
			dir, RootCertFile, localClassical.caBase+".crt", localPQ.caBase+".crt")
	}
	return roots, nil
}

// WriteTrustFiles writes root to dir as BASE.crt (PEM, for Debian and NSS)
// and BASE.cer (DER, for macOS and Windows) and returns both paths.
func WriteTrustFiles(root *x509.Certificate, dir, base string) (pemPath, derPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("failed to make %q: %w", dir, err)
	}
	pemPath = filepath.Join(dir, base+".crt")
	derPath = filepath.Join(dir, base+".cer")
	if err := writeFileAtomic(pemPath, chainPEM([][]byte{root.Raw}), certMode); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(derPath, root.Raw, certMode); err != nil {
		return "", "", err
	}
	return pemPath, derPath, nil
}

// TrustInstructions returns the commands that make a machine or browser
// trust the root stored at pemPath (PEM) and derPath (DER) under the name
// base.
func TrustInstructions(root *x509.Certificate, base, pemPath, derPath string) string {
	var b strings.Builder
	k, _ := DescribeKey(root.PublicKey)
	fmt.Fprintf(&b, "Root: %s (%s), valid until %s\n\n", root.Subject, k.Name, root.NotAfter.UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Debian / Ubuntu (system store: curl, OpenSSL, Go):\n")
	fmt.Fprintf(&b, "  sudo cp %s /usr/local/share/ca-certificates/%s.crt && sudo update-ca-certificates\n\n", pemPath, base)
	fmt.Fprintf(&b, "Chromium and Firefox on Linux (NSS database; Firefox: use the profile directory):\n")
	fmt.Fprintf(&b, "  certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n %s -i %s\n", base, pemPath)
	fmt.Fprintf(&b, "  certutil -d sql:$HOME/.mozilla/firefox/PROFILE -A -t C,, -n %s -i %s\n\n", base, pemPath)
	fmt.Fprintf(&b, "macOS:\n")
	fmt.Fprintf(&b, "  sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain %s\n\n", derPath)
	fmt.Fprintf(&b, "Windows (administrator prompt):\n")
	fmt.Fprintf(&b, "  certutil -addstore -f Root %s\n", derPath)
	if k.PostQuantum {
		fmt.Fprintf(&b, "\nThis is an ML-DSA root: only clients that verify ML-DSA signatures can use it\n")
		fmt.Fprintf(&b, "(Go 1.27, OpenSSL 3.5: `curl --cacert %s` with an OpenSSL 3.5 curl).\n", pemPath)
		fmt.Fprintf(&b, "Clients that do not trust it still get the classical chain under pq mode \"trusted\".\n")
	}
	return b.String()
}
