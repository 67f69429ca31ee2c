package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pqedge/pqedge/certs"
)

const certsUsage = `usage: pqedge certs <command> [flags]

commands:
  init     --dir DIR [--alg mldsa87|mldsa65|mldsa44|ecdsa-p384] [--intermediate [--intermediate-alg ALG]]
           make a private CA: DIR/root.crt, DIR/root.key (and intermediate.crt/.key)
  issue    --ca DIR --name HOST [--name HOST...] --out PATH [--alg mldsa44|mldsa65|mldsa87|ecdsa-p256|ed25519] [--days N]
           issue a server certificate: PATH.crt (leaf, then intermediates) and PATH.key
  inspect  FILE...
           print algorithms, sizes, names, validity, the issuer chain and the handshake bytes
  trust    DIR [--out DIR]
           print (or write as PEM and DER) the CA's root with the commands that install it
`

// runCerts runs `pqedge certs ARGS...` and returns the process exit code:
// 0 on success, 1 when the command failed, 2 on a usage error.
func runCerts(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, certsUsage)
		return 2
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

func certsInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("certs init", stderr)
	dir := fs.String("dir", "", "directory for the CA files (made mode 0700)")
	alg := fs.String("alg", string(certs.AlgMLDSA87), "root key algorithm: mldsa87, mldsa65, mldsa44 or ecdsa-p384")
	inter := fs.Bool("intermediate", false, "add an intermediate CA that signs the leaves")
	interAlg := fs.String("intermediate-alg", "", "intermediate key algorithm (default: --alg)")
	name := fs.String("name", "pqedge root CA", "the root's common name")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	if *dir == "" {
		return &cliError{err: errors.New("no CA directory given"), hints: []string{"pass --dir DIR"}, usage: true}
	}
	a, err := certs.ParseAlg(*alg)
	if err != nil {
		return withHint(err, "set --alg to mldsa87 (default), mldsa65, mldsa44 or ecdsa-p384")
	}
	opts := certs.CAOptions{Alg: a, Intermediate: *inter, Name: *name}
	if *interAlg != "" {
		if !*inter {
			return &cliError{err: errors.New("--intermediate-alg needs --intermediate"), hints: []string{"add --intermediate, or drop --intermediate-alg"}, usage: true}
		}
		if opts.IntermediateAlg, err = certs.ParseAlg(*interAlg); err != nil {
			return withHint(err, "set --intermediate-alg to mldsa87, mldsa65, mldsa44 or ecdsa-p384")
		}
	}
	ca, err := certs.InitCA(*dir, opts)
	if err != nil {
		return withHint(err, "change --dir, or check --alg")
	}
	fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(*dir, certs.RootCertFile), filepath.Join(*dir, certs.RootKeyFile))
	printCert(stdout, "root", ca.Root)
	if ca.Intermediate != nil {
		fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(*dir, certs.IntermediateCertFile), filepath.Join(*dir, certs.IntermediateKeyFile))
		printCert(stdout, "intermediate", ca.Intermediate)
	}
	fmt.Fprintf(stdout, "next: pqedge certs issue --ca %s --name HOST --out PATH\n", *dir)
	return nil
}

func printCert(w io.Writer, role string, c *x509.Certificate) {
	k, _ := certs.DescribeKey(c.PublicKey)
	fmt.Fprintf(w, "  %s: %s, %s, valid until %s\n", role, c.Subject, k.Name, c.NotAfter.UTC().Format(time.DateOnly))
}

func certsIssue(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("certs issue", stderr)
	caDir := fs.String("ca", "", "CA directory made by `pqedge certs init`")
	var ns names
	fs.Var(&ns, "name", "DNS name or IP address (repeat, or comma-separate)")
	alg := fs.String("alg", string(certs.AlgMLDSA44), "leaf key algorithm: mldsa44, mldsa65, mldsa87, ecdsa-p256 or ed25519")
	out := fs.String("out", "", "output path without extension: writes PATH.crt and PATH.key")
	days := fs.Int("days", int(certs.DefaultLeafValidity/(24*time.Hour)), "validity in days")
	pos, err := parseFlags(fs, args)
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
		return withHint(err, "set --alg to mldsa44, mldsa65, mldsa87, ecdsa-p256 or ed25519")
	}
	now := time.Now()
	ca, err := certs.OpenCA(*caDir, now)
	if err != nil {
		return withHint(err, "check --ca")
	}
	leaf, err := ca.Issue(certs.LeafOptions{Names: ns, Alg: a, Validity: time.Duration(*days) * 24 * time.Hour, Now: now})
	if err != nil {
		return withHint(err, "check --alg and --name")
	}
	if err := certs.WriteKeyPair(*out, leaf); err != nil {
		return withHint(err, "change --out to a writable path")
	}
	fmt.Fprintf(stdout, "wrote %s.crt (%d certificate(s), leaf first) and %s.key (mode 0600)\n", *out, len(leaf.Certificate), *out)
	k, _ := certs.DescribeKey(leaf.Leaf.PublicKey)
	f := certs.EstimateFlight(leaf.Certificate, k)
	fmt.Fprintf(stdout, "  %s for %s, valid until %s\n", k.Name, strings.Join(ns, ", "), leaf.Leaf.NotAfter.UTC().Format(time.DateOnly))
	fmt.Fprintf(stdout, "  handshake: certificates + CertificateVerify %d B, first flight %d B: %s\n", f.ChainBytes(), f.Total, verdict(f))
	return nil
}

func verdict(f certs.Flight) string {
	if f.FitsInitialWindow {
		return fmt.Sprintf("fits TCP's initial window (%d B)", certs.InitialWindowBytes)
	}
	return fmt.Sprintf("exceeds TCP's initial window (%d B) by %d B: an extra round trip", certs.InitialWindowBytes, f.Total-certs.InitialWindowBytes)
}

func certsInspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("certs inspect", stderr)
	files, err := parseFlags(fs, args)
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
		return withHint(fmt.Errorf("failed to read certificate: %w", err), "check the FILE argument")
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

func certsTrust(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("certs trust", stderr)
	out := fs.String("out", "", "write pqedge-root.crt (PEM) and pqedge-root.cer (DER) here instead of printing the PEM")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &cliError{err: errors.New("trust needs exactly one CA directory"), hints: []string{"pqedge certs trust DIR [--out DIR]"}, usage: true}
	}
	roots, err := certs.FindTrustRoots(pos[0])
	if err != nil {
		return withHint(err, "DIR must be a directory made by `pqedge certs init --dir DIR`, or pqedge's data_dir/local")
	}
	for i, r := range roots {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if *out == "" {
			fmt.Fprintf(stdout, "%s", pemOf(r.Cert))
			fmt.Fprintf(stdout, "\nSave the PEM above as %s.crt (or run with --out DIR to write PEM and DER files), then:\n\n", r.Base)
			fmt.Fprint(stdout, certs.TrustInstructions(r.Cert, r.Base, r.Base+".crt", r.Base+".cer"))
			continue
		}
		pemPath, derPath, err := certs.WriteTrustFiles(r.Cert, *out, r.Base)
		if err != nil {
			return withHint(err, "change --out to a writable directory")
		}
		fmt.Fprintf(stdout, "wrote %s (PEM) and %s (DER)\n\n", pemPath, derPath)
		fmt.Fprint(stdout, certs.TrustInstructions(r.Cert, r.Base, pemPath, derPath))
	}
	return nil
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
