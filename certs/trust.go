package certs

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TrustFileBase is the base name of the files `pqedge certs trust --out`
// writes: .crt (PEM) and .cer (DER).
const TrustFileBase = "pqedge-root"

// WriteTrustFiles writes root to dir as TrustFileBase.crt (PEM, for Debian
// and NSS) and TrustFileBase.cer (DER, for macOS and Windows) and returns
// both paths.
func WriteTrustFiles(root *x509.Certificate, dir string) (pemPath, derPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("failed to make %q: %w", dir, err)
	}
	pemPath = filepath.Join(dir, TrustFileBase+".crt")
	derPath = filepath.Join(dir, TrustFileBase+".cer")
	if err := writeFileAtomic(pemPath, chainPEM([][]byte{root.Raw}), certMode); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(derPath, root.Raw, certMode); err != nil {
		return "", "", err
	}
	return pemPath, derPath, nil
}

// TrustInstructions returns the commands that make a machine or browser
// trust the root stored at pemPath (PEM) and derPath (DER).
func TrustInstructions(root *x509.Certificate, pemPath, derPath string) string {
	var b strings.Builder
	k, _ := DescribeKey(root.PublicKey)
	fmt.Fprintf(&b, "Root: %s (%s), valid until %s\n\n", root.Subject, k.Name, root.NotAfter.UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Debian / Ubuntu (system store: curl, OpenSSL, Go):\n")
	fmt.Fprintf(&b, "  sudo cp %s /usr/local/share/ca-certificates/%s.crt && sudo update-ca-certificates\n\n", pemPath, TrustFileBase)
	fmt.Fprintf(&b, "Chromium and Firefox on Linux (NSS database; Firefox: use the profile directory):\n")
	fmt.Fprintf(&b, "  certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n %s -i %s\n", TrustFileBase, pemPath)
	fmt.Fprintf(&b, "  certutil -d sql:$HOME/.mozilla/firefox/PROFILE -A -t C,, -n %s -i %s\n\n", TrustFileBase, pemPath)
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
