package certs

import (
	"context"
	"crypto/mldsa"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudflare/circl/pki"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/pqedge/pqedge/internal/peers"
)

var update = flag.Bool("update", false, "regenerate testdata/ with OpenSSL 3.5 from the trixie peer")

// testdata/ holds keys and certificates written by other tools, in their
// default encodings, so that loading them is tested without the tools:
//
//	openssl-<alg>.crt/.key         openssl req -x509 -newkey <alg> (default encodings)
//	openssl-mldsaNN-seed.key       openssl pkey -provparam ml-dsa.output_formats=seed-only
//	openssl-mldsaNN-expanded.key   ... output_formats=priv-only (no seed: refused)
//	openssl-ecdsa-sec1.key         openssl ec (EC PRIVATE KEY)
//	openssl-rsa-pkcs1.key          openssl rsa -traditional (RSA PRIVATE KEY)
//	circl-mldsa65.crt/.key         circl pki.MarshalPEMPrivateKey ("ML-DSA-65 PRIVATE KEY")
//
// The keys are test keys, published here on purpose.
func TestUpdateTestdata(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate testdata/")
	}
	p := peers.Trixie(t)
	host, inside := p.TempDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(args ...string) {
		t.Helper()
		cmd := p.Command(ctx, "openssl", args...)
		cmd.Dir = "/"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	in := func(name string) string { return inside + "/" + name }
	req := func(name string, newkey ...string) {
		args := append([]string{"req", "-x509"}, newkey...)
		run(append(args, "-nodes", "-keyout", in(name+".key"), "-out", in(name+".crt"),
			"-subj", "/CN="+name, "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "36500")...)
	}
	for _, a := range []string{"44", "65", "87"} {
		name := "openssl-mldsa" + a
		req(name, "-newkey", "ML-DSA-"+a)
		run("pkey", "-in", in(name+".key"), "-provparam", "ml-dsa.output_formats=seed-only", "-out", in(name+"-seed.key"))
		run("pkey", "-in", in(name+".key"), "-provparam", "ml-dsa.output_formats=priv-only", "-out", in(name+"-expanded.key"))
	}
	req("openssl-ecdsa", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
	run("ec", "-in", in("openssl-ecdsa.key"), "-out", in("openssl-ecdsa-sec1.key"))
	req("openssl-rsa", "-newkey", "rsa:2048")
	run("rsa", "-traditional", "-in", in("openssl-rsa.key"), "-out", in("openssl-rsa-pkcs1.key"))
	req("openssl-ed25519", "-newkey", "ed25519")

	entries, err := os.ReadDir(host)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(host, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// circl's PEM form, with a certificate made by Go for the same key.
	_, sk, err := mldsa65.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.MarshalPEMPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	std, err := mldsa.NewPrivateKey(mldsa.MLDSA65(), sk.Seed())
	if err != nil {
		t.Fatal(err)
	}
	tmpl := leafTemplate([]string{"localhost"}, time.Now(), 100*365*24*time.Hour)
	c, err := signCert(tmpl, std, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/circl-mldsa65.key", keyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/circl-mldsa65.crt", chainPEM(c.Certificate), 0o644); err != nil {
		t.Fatal(err)
	}
}
