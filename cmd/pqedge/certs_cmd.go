package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pqedge/pqedge/certs"
)

const certsUsage = `usage: pqedge certs COMMAND [flags]

A private post-quantum PKI: a CA, server certificates from it, and how to
make clients trust it.

commands:
  init     make a CA: a root and, with --intermediate, an intermediate
  issue    issue a server certificate from a CA
  inspect  algorithms, sizes, names, validity and handshake bytes of certificates
  trust    how to make clients trust a CA's root

Run 'pqedge certs COMMAND -h' for a command's flags. A chain whose handshake
fits TCP's initial window (no extra round trip):

  pqedge certs init --dir ca --alg mldsa87 --intermediate --intermediate-alg mldsa44
  pqedge certs issue --ca ca --name www.example.com --alg mldsa44 --out www
`

// runCerts runs `pqedge certs ARGS...` and returns the process exit code:
// 0 on success or help, 1 when the command failed, 2 on a usage error.
func runCerts(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, certsUsage)
		return 2
	case isHelp(args[0]):
		if len(args) > 1 {
			return runCerts(append([]string{args[1]}, "-h"), stdout, stderr)
		}
		fmt.Fprint(stdout, certsUsage)
		return 0
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) error{
		"init":    certsInit,
		"issue":   certsIssue,
		"inspect": certsInspect,
		"trust":   certsTrust,
	}
	run, ok := cmds[args[0]]
	if !ok {
		return cliFail(stderr, &cliError{err: fmt.Errorf("unknown certs command %q", args[0]), hints: []string{"commands are init, issue, inspect and trust; see `pqedge certs --help`"}, usage: true})
	}
	if err := run(args[1:], stdout, stderr); err != nil {
		return cliFail(stderr, err)
	}
	return 0
}

// names collects a repeatable --name flag.
type names []string

func (n *names) String() string { return strings.Join(*n, ",") }
func (n *names) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*n = append(*n, s)
		}
	}
	return nil
}

const certsInitAbout = `Makes a private CA in DIR (created mode 0700): root.crt and root.key and,
with --intermediate, intermediate.crt and intermediate.key; the
intermediate then signs the leaves, so the root key can be kept offline.
Keys are PKCS#8, mode 0600. A DIR that already holds a CA is refused.

Clients already hold the root, so its size costs nothing per handshake; the
intermediate's public key and its signature on the leaf are sent in every
handshake. The default intermediate under an ML-DSA root is mldsa44: with
an mldsa44 leaf the server's first flight (about 14.2 KB) stays within TCP's
initial window; an mldsa65 or mldsa87 intermediate pushes it past the
window, which costs every new connection a round trip.
`

func certsInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("certs init", "certs init --dir DIR [--alg ALG] [--intermediate [--intermediate-alg ALG]] [--name NAME]", certsInitAbout, stdout)
	caAlgs := certs.AlgList(certs.CAAlgs(), " or ")
	dir := fs.String("dir", "", "the CA directory `DIR` to make (mode 0700)")
	alg := fs.String("alg", string(certs.AlgMLDSA87), "root key algorithm `ALG`: "+caAlgs)
	inter := fs.Bool("intermediate", false, "add an intermediate CA that signs the leaves")
	interAlg := fs.String("intermediate-alg", "", "intermediate key algorithm `ALG`: "+caAlgs+
		"\n(default mldsa44 under an ML-DSA root, else the root's)")
	name := fs.String("name", "pqedge root CA", "the root's common `NAME`; a short key ID is appended, so two CAs never share a name")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	if *dir == "" {
		return &cliError{err: errors.New("no CA directory given"), hints: []string{"pass --dir DIR"}, usage: true}
	}
	a, err := parseCAAlg(*alg)
	if err != nil {
		return withHint(err, "set --alg to "+caAlgs)
	}
	opts := certs.CAOptions{Alg: a, Intermediate: *inter, Name: *name}
	if *interAlg != "" {
		if !*inter {
			return &cliError{err: errors.New("--intermediate-alg needs --intermediate"), hints: []string{"add --intermediate, or drop --intermediate-alg"}, usage: true}
		}
		if opts.IntermediateAlg, err = parseCAAlg(*interAlg); err != nil {
			return withHint(err, "set --intermediate-alg to "+caAlgs)
		}
	}
	ca, err := certs.InitCA(*dir, opts)
	if err != nil {
		return withHint(err, "choose another --dir")
	}
	fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(*dir, certs.RootCertFile), filepath.Join(*dir, certs.RootKeyFile))
	printCert(stdout, "root", ca.Root, "")
	if ca.Intermediate != nil {
		note := ""
		if *interAlg == "" {
			note = "the default --intermediate-alg for this root"
		}
		fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(*dir, certs.IntermediateCertFile), filepath.Join(*dir, certs.IntermediateKeyFile))
		printCert(stdout, "intermediate", ca.Intermediate, note)
	}
	// What a leaf issued with the defaults would cost, so the choice of
	// algorithms is visible before any leaf exists.
	if f, err := sampleFlight(ca, certs.AlgMLDSA44); err == nil {
		fmt.Fprintf(stdout, "  handshake with an mldsa44 leaf from this CA: first flight %d B, %s\n", f.Total, verdict(f))
	}
	fmt.Fprintf(stdout, "next: pqedge certs issue --ca %s --name HOST --out PATH\n", *dir)
	return nil
}

// parseCAAlg parses an algorithm a CA may have.
func parseCAAlg(s string) (certs.Alg, error) {
	a, err := certs.ParseAlg(s)
	if err != nil {
		return "", err
	}
	if !slices.Contains(certs.CAAlgs(), a) {
		return "", fmt.Errorf("%s is for leaves, not CAs", a)
	}
	return a, nil
}

// sampleFlight issues a throwaway leaf of alg in memory and estimates the
// first flight of a handshake that serves it.
func sampleFlight(ca *certs.CA, alg certs.Alg) (certs.Flight, error) {
	leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"www.example.com"}, Alg: alg})
	if err != nil {
		return certs.Flight{}, err
	}
	k, err := certs.DescribeKey(leaf.Leaf.PublicKey)
	if err != nil {
		return certs.Flight{}, err
	}
	return certs.EstimateFlight(leaf.Certificate, k), nil
}

func printCert(w io.Writer, role string, c *x509.Certificate, note string) {
	k, _ := certs.DescribeKey(c.PublicKey)
	if note != "" {
		note = " (" + note + ")"
	}
	fmt.Fprintf(w, "  %s: %s, %s%s, valid until %s\n", role, c.Subject, k.Name, note, c.NotAfter.UTC().Format(time.DateOnly))
}

const certsIssueAbout = `Issues a server certificate for the HOSTs (DNS names or IP addresses) from
a CA made by pqedge certs init, signed by its intermediate if it has one.
Writes PATH.crt (the leaf, then the intermediate: what a server sends) and
PATH.key (PKCS#8, mode 0600), and prints the first flight of a handshake
that serves this chain. An existing PATH.crt or PATH.key is only replaced
with --force.
`

func certsIssue(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("certs issue", "certs issue --ca DIR --name HOST [--name HOST...] --out PATH [--alg ALG] [--days N] [--force]", certsIssueAbout, stdout)
	leafAlgs := certs.AlgList(certs.LeafAlgs(), " or ")
	caDir := fs.String("ca", "", "the CA directory `DIR` made by pqedge certs init")
	var ns names
	fs.Var(&ns, "name", "a DNS name or IP address `HOST` to cover (repeat, or separate with commas); the first is the common name")
	alg := fs.String("alg", string(certs.AlgMLDSA44), "leaf key algorithm `ALG`: "+leafAlgs)
	out := fs.String("out", "", "output `PATH` without extension: writes PATH.crt and PATH.key")
	days := fs.Int("days", int(certs.DefaultLeafValidity/(24*time.Hour)), "validity in days `N`; cut to the issuing CA's")
	force := fs.Bool("force", false, "replace an existing PATH.crt and PATH.key")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError("unexpected argument %q", pos[0])
	case *caDir == "":
		return &cliError{err: errors.New("no CA given"), hints: []string{"pass --ca DIR (a directory made by `pqedge certs init --dir DIR`)"}, usage: true}
	case len(ns) == 0:
		return &cliError{err: errors.New("no names given"), hints: []string{"pass --name HOST, once per DNS name or IP address"}, usage: true}
	case *out == "":
		return &cliError{err: errors.New("no output path given"), hints: []string{"pass --out PATH; pqedge writes PATH.crt and PATH.key"}, usage: true}
	case *days <= 0:
		return &cliError{err: fmt.Errorf("--days must be positive, not %d", *days), hints: []string{"set --days to the validity in days, e.g. --days 90"}, usage: true}
	}
	a, err := certs.ParseAlg(*alg)
	if err != nil {
		return withHint(err, "set --alg to "+leafAlgs)
	}
	if !*force {
		for _, f := range []string{*out + ".crt", *out + ".key"} {
			if _, err := os.Stat(f); err == nil {
				return withHint(fmt.Errorf("%s already exists; a new certificate would replace it and its key", f),
					"choose another --out, or add --force to replace it")
			}
		}
	}
	now := time.Now()
	ca, err := certs.OpenCA(*caDir, now)
	if err != nil {
		return withHint(err, "check --ca: it must be a directory made by `pqedge certs init --dir DIR`")
	}
	leaf, err := ca.Issue(certs.LeafOptions{Names: ns, Alg: a, Validity: time.Duration(*days) * 24 * time.Hour, Now: now})
	if err != nil {
		return withHint(err, "check --name: DNS names or IP addresses")
	}
	if err := certs.WriteKeyPair(*out, leaf); err != nil {
		return withHint(err, "change --out to a writable path")
	}
	fmt.Fprintf(stdout, "wrote %s.crt (%d certificate(s), leaf first) and %s.key (mode 0600)\n", *out, len(leaf.Certificate), *out)
	k, _ := certs.DescribeKey(leaf.Leaf.PublicKey)
	f := certs.EstimateFlight(leaf.Certificate, k)
	fmt.Fprintf(stdout, "  %s for %s, valid until %s\n", k.Name, strings.Join(ns, ", "), leaf.Leaf.NotAfter.UTC().Format(time.DateOnly))
	fmt.Fprintf(stdout, "  handshake: certificates + CertificateVerify %d B, first flight %d B: %s\n", f.ChainBytes(), f.Total, verdict(f))
	if !f.FitsInitialWindow && k.PostQuantum {
		fmt.Fprintf(stdout, "  to fit: an mldsa44 leaf (--alg mldsa44) from a CA whose intermediate is mldsa44 (pqedge certs init --intermediate)\n")
	}
	return nil
}

func verdict(f certs.Flight) string {
	if f.FitsInitialWindow {
		return fmt.Sprintf("fits TCP's initial window (%d B)", certs.InitialWindowBytes)
	}
	return fmt.Sprintf("exceeds TCP's initial window (%d B) by %d B: an extra round trip", certs.InitialWindowBytes, f.Total-certs.InitialWindowBytes)
}

const certsInspectAbout = `Prints, for each PEM or DER certificate file (a chain, leaf first, or one
certificate): every certificate's key algorithm and size, the signature it
carries, its names and validity, whether the next certificate signed it,
and the SHA-256 of its public key (SPKI, base64, the form Chromium's
--ignore-certificate-errors-spki-list takes). For a leaf it adds the bytes
a TLS 1.3 handshake sends and whether the server's first flight fits TCP's
initial window (14600 B); beyond it every new connection waits one more
round trip.
`

func certsInspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("certs inspect", "certs inspect FILE...", certsInspectAbout, stdout)
	files, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return &cliError{err: errors.New("no certificate files given"), hints: []string{"pass one or more PEM or DER certificate files: pqedge certs inspect FILE..."}, usage: true}
	}
	now := time.Now()
	for i, file := range files {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if err := inspectFile(stdout, file, now); err != nil {
			return err
		}
	}
	return nil
}

func inspectFile(w io.Writer, file string, now time.Time) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return withHint(fmt.Errorf("failed to read certificate: %w", err), "pass the path of a PEM or DER certificate file")
	}
	chain, err := certs.ParseCertificatesPEM(data)
	if err != nil {
		// DER files (.cer) hold one or more concatenated certificates.
		if der, derErr := x509.ParseCertificates(data); derErr == nil && len(der) > 0 {
			chain, err = der, nil
		}
	}
	if err != nil {
		return withHint(fmt.Errorf("failed to load certificate %q: %w", file, err), "pass a PEM or DER certificate file")
	}
	infos, err := certs.DescribeChain(chain)
	if err != nil {
		return fmt.Errorf("failed to inspect %q: %w", file, err)
	}
	fmt.Fprintf(w, "%s: %d certificate(s)\n", file, len(chain))
	for i, c := range infos {
		fmt.Fprintf(w, "[%d] %s\n", i+1, c.Subject)
		fmt.Fprintf(w, "    key:        %s, public key %d B\n", c.Key.Name, c.Key.PublicKeyBytes)
		fmt.Fprintf(w, "    signature:  %s by %s, %d B\n", c.SignatureAlgorithm, c.Issuer, c.SignatureBytes)
		fmt.Fprintf(w, "    size:       %d B DER\n", c.DERBytes)
		fmt.Fprintf(w, "    spki:       %s (SHA-256 of the public key, base64)\n", c.SPKIHash)
		if len(c.Names) > 0 {
			fmt.Fprintf(w, "    names:      %s\n", strings.Join(c.Names, ", "))
		}
		fmt.Fprintf(w, "    valid:      %s to %s (%s)\n", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), validity(c, now))
		switch {
		case c.SelfSigned:
			fmt.Fprintf(w, "    issuer:     self-signed root%s\n", caNote(c))
		case i+1 < len(infos) && c.SignedByNext:
			fmt.Fprintf(w, "    issuer:     [%d], signature verified%s\n", i+2, caNote(c))
		case i+1 < len(infos):
			fmt.Fprintf(w, "    issuer:     %s, NOT [%d]: the chain is out of order or incomplete\n", c.Issuer, i+2)
		default:
			fmt.Fprintf(w, "    issuer:     %s (not in this file)%s\n", c.Issuer, caNote(c))
		}
	}
	if infos[0].IsCA {
		fmt.Fprintf(w, "handshake: %s is a CA certificate; it is not served as a leaf\n", file)
		return nil
	}
	// Roots are not sent: the client has them (RFC 8446 Section 4.4.2.2
	// allows omitting the self-signed root).
	sent := make([][]byte, 0, len(chain))
	for i, c := range chain {
		if i > 0 && infos[i].SelfSigned {
			break
		}
		sent = append(sent, c.Raw)
	}
	f := certs.EstimateFlight(sent, infos[0].Key)
	fmt.Fprintf(w, "handshake (TLS 1.3, X25519MLKEM768, %d certificate(s) sent):\n", len(sent))
	for _, row := range []struct {
		label string
		bytes int
	}{
		{"ServerHello + ChangeCipherSpec", f.ServerHello + f.ChangeCipherSpec},
		{"EncryptedExtensions", f.EncryptedExtensions},
		{"Certificate", f.Certificate},
		{"CertificateVerify (" + infos[0].Key.Name + ")", f.CertificateVerify},
		{"Finished", f.Finished},
		{"record overhead", f.RecordOverhead},
	} {
		fmt.Fprintf(w, "    %-34s %6d B\n", row.label, row.bytes)
	}
	fmt.Fprintf(w, "    chain adds %d B; first flight %d B: %s\n", f.ChainBytes(), f.Total, verdict(f))
	return nil
}

func caNote(c certs.CertInfo) string {
	if c.IsCA {
		return "; CA"
	}
	return ""
}

func validity(c certs.CertInfo, now time.Time) string {
	switch {
	case now.Before(c.NotBefore):
		return "NOT YET VALID"
	case now.After(c.NotAfter):
		return "EXPIRED"
	}
	return fmt.Sprintf("%d days left", int(c.NotAfter.Sub(now).Hours()/24))
}

const certsTrustAbout = `Prints how to make clients trust the root of a CA directory: one made by
pqedge certs init, or pqedge's local development CA (data_dir/local, which
holds a classical and an ML-DSA root). Without --out it prints each root as
PEM, to be saved under the file name the commands use; with --out it
writes NAME.crt (PEM) and NAME.cer (DER) into OUTDIR and the commands name
those files. For an ML-DSA root it says which clients can trust one today,
and how.
`

func certsTrust(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("certs trust", "certs trust DIR [--out OUTDIR]", certsTrustAbout, stdout)
	out := fs.String("out", "", "write each root as NAME.crt (PEM) and NAME.cer (DER) into `OUTDIR` instead of printing it")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &cliError{err: errors.New("trust needs exactly one CA directory"), hints: []string{"pqedge certs trust DIR [--out OUTDIR]"}, usage: true}
	}
	roots, err := certs.FindTrustRoots(pos[0])
	if err != nil {
		return withHint(err, "DIR must be a directory made by `pqedge certs init --dir DIR`, or pqedge's data_dir/local")
	}
	for i, r := range roots {
		if i > 0 {
			fmt.Fprint(stdout, "\n----\n\n")
		}
		if *out == "" {
			file := r.Base + ".crt"
			fmt.Fprintf(stdout, "Save this root as %s:\n\n%s\n", file, pemOf(r.Cert))
			fmt.Fprint(stdout, certs.TrustInstructions(r, file, ""))
			continue
		}
		pemPath, derPath, err := certs.WriteTrustFiles(r.Cert, *out, r.Base)
		if err != nil {
			return withHint(err, "change --out to a writable directory")
		}
		fmt.Fprintf(stdout, "wrote %s (PEM) and %s (DER)\n\n", pemPath, derPath)
		fmt.Fprint(stdout, certs.TrustInstructions(r, pemPath, derPath))
	}
	return nil
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
