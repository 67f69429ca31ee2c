package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
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
	// Served is the certificate the servers of this CA send whose public
	// key stands for the whole CA in an SPKI allow-list: the intermediate,
	// which signs every leaf, or the local development leaf; nil for a CA
	// without an intermediate (each leaf's own key must then be listed).
	Served *x509.Certificate
}

// FindTrustRoots returns the roots of a CA directory: root.crt of a CA made
// by InitCA, or both roots of a local development directory made by
// EnsureLocal (classical and ML-DSA).
func FindTrustRoots(dir string) ([]TrustRoot, error) {
	candidates := []struct{ file, base, served string }{
		{RootCertFile, TrustFileBase, IntermediateCertFile},
		{localClassical.caBase + ".crt", "pqedge-local-classical", localClassical.leafBase + ".crt"},
		{localPQ.caBase + ".crt", "pqedge-local-pq", localPQ.leafBase + ".crt"},
	}
	var roots []TrustRoot
	for _, c := range candidates {
		root, err := readFirstCert(filepath.Join(dir, c.file))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		r := TrustRoot{Base: c.base, Cert: root}
		// The served certificate only helps when it exists and is
		// really this root's.
		if s, err := readFirstCert(filepath.Join(dir, c.served)); err == nil && s.CheckSignatureFrom(root) == nil {
			r.Served = s
		}
		roots = append(roots, r)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("no CA root in %q: expected %s (from `pqedge certs init`) or %s and %s (the local development CA in data_dir/local)",
			dir, RootCertFile, localClassical.caBase+".crt", localPQ.caBase+".crt")
	}
	return roots, nil
}

func readFirstCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read %q: %w", path, err)
	}
	chain, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("failed to load %q: %w", path, err)
	}
	return chain[0], nil
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

// SPKIHash is the base64 SHA-256 of a certificate's SubjectPublicKeyInfo
// (RFC 7469 Section 2.4), the form Chromium's
// --ignore-certificate-errors-spki-list takes.
func SPKIHash(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(h[:])
}

// TrustInstructions returns the commands that make a machine or browser
// trust r, whose PEM is at pemPath and whose DER is at derPath ("" when no
// DER file was written: the commands then use the PEM, which every store
// below also reads).
//
// Which clients can trust an ML-DSA root is a fact of today's software,
// checked on Debian bookworm and trixie: OpenSSL 3.5 and Go 1.27 verify
// ML-DSA chains; NSS 3.87's certutil refuses to import an ML-DSA
// certificate (SEC_ERROR_ADDING_CERT), so Chromium and Firefox on Linux
// cannot be told to trust one; Chromium accepts an ML-DSA chain only
// through --ignore-certificate-errors-spki-list, which it honours only
// with --user-data-dir; Firefox offers no ML-DSA signature at all.
func TrustInstructions(r TrustRoot, pemPath, derPath string) string {
	var b strings.Builder
	k, _ := DescribeKey(r.Cert.PublicKey)
	fmt.Fprintf(&b, "Root: %s (%s), valid until %s\n\n", r.Cert.Subject, k.Name, r.Cert.NotAfter.UTC().Format("2006-01-02"))
	if derPath == "" {
		derPath = pemPath
	}
	pemPath, derPath = shellQuote(pemPath), shellQuote(derPath)
	if k.PostQuantum {
		mldsaInstructions(&b, r, k, pemPath)
		return b.String()
	}
	fmt.Fprintf(&b, "Debian / Ubuntu (the system store: curl, OpenSSL and Go programs):\n")
	fmt.Fprintf(&b, "  sudo cp %s /usr/local/share/ca-certificates/%s.crt && sudo update-ca-certificates\n\n", pemPath, r.Base)
	fmt.Fprintf(&b, "Chromium on Linux (its NSS database; the first two lines make it if it does not exist yet):\n")
	fmt.Fprintf(&b, "  mkdir -p $HOME/.pki/nssdb\n")
	fmt.Fprintf(&b, "  [ -f $HOME/.pki/nssdb/cert9.db ] || certutil -d sql:$HOME/.pki/nssdb -N --empty-password\n")
	fmt.Fprintf(&b, "  certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n %s -i %s\n\n", r.Base, pemPath)
	fmt.Fprintf(&b, "Firefox on Linux (each profile has its own database; start Firefox once so that it exists):\n")
	fmt.Fprintf(&b, "  for p in $HOME/.mozilla/firefox/*/; do if [ -f \"$p/cert9.db\" ]; then certutil -d \"sql:$p\" -A -t C,, -n %s -i %s; fi; done\n\n", r.Base, pemPath)
	fmt.Fprintf(&b, "Restart the browser afterwards. certutil is in Debian's libnss3-tools package.\n\n")
	fmt.Fprintf(&b, "macOS:\n")
	fmt.Fprintf(&b, "  sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain %s\n\n", derPath)
	fmt.Fprintf(&b, "Windows (administrator prompt):\n")
	fmt.Fprintf(&b, "  certutil -addstore -f Root %s\n", derPath)
	return b.String()
}

// shellQuote quotes a path for the POSIX shell when it needs it, so that a
// pasted command works for any --out.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-+:,=@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// mldsaInstructions says plainly which clients can trust an ML-DSA root
// today, and how; the other stores have no way yet, so no recipe is
// printed for them.
func mldsaInstructions(b *strings.Builder, r TrustRoot, k KeyInfo, pemPath string) {
	fmt.Fprintf(b, "This is an %s root. Few clients can trust one today:\n\n", k.Name)
	fmt.Fprintf(b, "OpenSSL 3.5 or later (curl and openssl s_client on Debian trixie), per command:\n")
	fmt.Fprintf(b, "  curl --cacert %s https://HOST/\n", pemPath)
	fmt.Fprintf(b, "  openssl s_client -CAfile %s -connect HOST:443\n", pemPath)
	// Neither names its roots in certificate_authorities, so under
	// pq_certs = "trusted" pqedge serves them the classical chain, which
	// this root does not verify (curl: exit 60).
	fmt.Fprintf(b, "  They name no root in certificate_authorities: pqedge sends them the ML-DSA chain\n")
	fmt.Fprintf(b, "  only with pq_certs = \"always\", or a [[site.pq_rule]] with mode = \"always\"\n")
	fmt.Fprintf(b, "  for their network; otherwise they get the classical chain, which this root\n")
	fmt.Fprintf(b, "  does not verify.\n\n")
	fmt.Fprintf(b, "Go 1.27 or later programs (crypto/x509 verifies ML-DSA; Go reads SSL_CERT_FILE on Linux):\n")
	fmt.Fprintf(b, "  SSL_CERT_FILE=%s PROGRAM\n\n", pemPath)
	fmt.Fprintf(b, "Chromium: cannot trust an ML-DSA root (its NSS certutil refuses to import one).\n")
	fmt.Fprintf(b, "A test profile can accept this CA's chains by a public key they carry:\n")
	if r.Served != nil {
		sk, _ := DescribeKey(r.Served.PublicKey)
		role := "the public key of the intermediate, which signs every leaf of this CA"
		if !r.Served.IsCA {
			role = "the public key of the development leaf"
		}
		fmt.Fprintf(b, "  chromium --user-data-dir=DIR --ignore-certificate-errors-spki-list=%s\n", SPKIHash(r.Served))
		fmt.Fprintf(b, "  (the SHA-256 of %s, %s; Chromium ignores the flag without --user-data-dir)\n\n", role, sk.Name)
	} else {
		fmt.Fprintf(b, "  chromium --user-data-dir=DIR --ignore-certificate-errors-spki-list=HASH\n")
		fmt.Fprintf(b, "  (HASH: each leaf's \"SPKI SHA-256\" from `pqedge certs inspect LEAF.crt`; Chromium\n")
		fmt.Fprintf(b, "  ignores the flag without --user-data-dir)\n\n")
	}
	fmt.Fprintf(b, "Firefox offers no ML-DSA signatures: pqedge serves it the classical chain.\n")
	fmt.Fprintf(b, "NSS databases, macOS and Windows: no known way to trust an ML-DSA root yet.\n\n")
	fmt.Fprintf(b, "With pq_certs = \"trusted\" pqedge sends the ML-DSA chain only to clients that\n")
	fmt.Fprintf(b, "name this root in certificate_authorities; the others get the classical chain.\n")
}
