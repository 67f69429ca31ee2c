package main

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

type cliResult struct {
	code           int
	stdout, stderr string
}

func runCertsCLI(args ...string) cliResult {
	var out, errb bytes.Buffer
	code := runCerts(args, &out, &errb)
	return cliResult{code, out.String(), errb.String()}
}

// TestCertsCLI walks a CA's life through the CLI: each step runs in the
// same temporary directory, in order.
func TestCertsCLI(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	leaf := filepath.Join(dir, "site")
	local := filepath.Join(dir, "local")
	if _, err := certs.EnsureLocal(local, []string{"localhost"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		noStdout   []string
		wantStderr []string
	}{
		{name: "init", args: []string{"init", "--dir", ca, "--intermediate", "--intermediate-alg", "mldsa44"}, wantStdout: []string{"root.crt", "ML-DSA-87", "intermediate.crt", "ML-DSA-44"}},
		{name: "init again", args: []string{"init", "--dir", ca}, wantCode: 1, wantStderr: []string{"pqedge: error: ", "already holds a CA", "hint: choose another --dir"}},
		{name: "init without dir", args: []string{"init"}, wantCode: 2, wantStderr: []string{"pqedge: error: no CA directory given", "hint: pass --dir DIR"}},
		{name: "init bad alg", args: []string{"init", "--dir", filepath.Join(dir, "x"), "--alg", "rsa"}, wantCode: 1, wantStderr: []string{"unknown key algorithm", "hint: set --alg"}},
		{name: "init bad flag", args: []string{"init", "--dri", ca}, wantCode: 2, wantStderr: []string{"flag provided but not defined", "hint: see `pqedge certs init --help`"}},
		{name: "issue", args: []string{"issue", "--ca", ca, "--name", "pq.test", "--name", "127.0.0.1", "--alg", "mldsa44", "--out", leaf, "--days", "30"}, wantStdout: []string{"site.crt (2 certificate(s)", "ML-DSA-44 for pq.test, 127.0.0.1", "first flight", "fits TCP's initial window"}},
		{name: "issue without name", args: []string{"issue", "--ca", ca, "--out", leaf}, wantCode: 2, wantStderr: []string{"no names given", "hint: pass --name HOST"}},
		{name: "issue bad alg", args: []string{"issue", "--ca", ca, "--name", "a.test", "--alg", "mldsa99", "--out", leaf}, wantCode: 1, wantStderr: []string{"unknown key algorithm", "hint: set --alg"}},
		{name: "issue bad name", args: []string{"issue", "--ca", ca, "--name", "bad name!", "--out", filepath.Join(dir, "badname")}, wantCode: 1, wantStderr: []string{`bad server name "bad name!"`, "hint: check --name"}},
		{name: "issue without CA", args: []string{"issue", "--ca", filepath.Join(dir, "none"), "--name", "a.test", "--out", filepath.Join(dir, "other")}, wantCode: 1, wantStderr: []string{"pqedge certs init", "hint: check --ca"}},
		{name: "issue over an existing leaf", args: []string{"issue", "--ca", ca, "--name", "a.test", "--out", leaf}, wantCode: 1, wantStderr: []string{"site.crt already exists", "hint: choose another --out, or add --force"}},
		{name: "issue --force", args: []string{"issue", "--ca", ca, "--name", "pq.test", "--name", "127.0.0.1", "--out", leaf, "--days", "30", "--force"}, wantStdout: []string{"site.crt (2 certificate(s)"}},
		{name: "issue bad days", args: []string{"issue", "--ca", ca, "--name", "a.test", "--out", leaf, "--days", "0"}, wantCode: 2, wantStderr: []string{"hint: set --days"}},
		{name: "inspect leaf", args: []string{"inspect", leaf + ".crt"}, wantStdout: []string{"2 certificate(s)", "ML-DSA-44, public key 1312 B", "names:      pq.test, 127.0.0.1", "[2], signature verified", "CertificateVerify (ML-DSA-44", "chain adds", "fits TCP's initial window (14600 B)"}},
		{name: "inspect root", args: []string{"inspect", filepath.Join(ca, "root.crt")}, wantStdout: []string{"self-signed root; CA", "is a CA certificate"}},
		{name: "inspect nothing", args: []string{"inspect"}, wantCode: 2, wantStderr: []string{"no certificate files given"}},
		{name: "inspect key", args: []string{"inspect", leaf + ".key"}, wantCode: 1, wantStderr: []string{"may be swapped"}},
		// An ML-DSA root: only the recipes that work today.
		{name: "trust print", args: []string{"trust", ca}, wantStdout: []string{"Save this root as pqedge-root.crt:", "-----BEGIN CERTIFICATE-----",
			"This is an ML-DSA-87 root", "curl --cacert pqedge-root.crt", "SSL_CERT_FILE=pqedge-root.crt", "Chromium: cannot trust an ML-DSA root",
			"--ignore-certificate-errors-spki-list={intermediate SPKI}", "the intermediate, which signs every leaf",
			"Firefox offers no ML-DSA signatures", "no known way"},
			noStdout: []string{"update-ca-certificates", "certutil -d", ".cer"}},
		{name: "trust write", args: []string{"trust", ca, "--out", filepath.Join(dir, "trust")}, wantStdout: []string{"pqedge-root.crt (PEM)", "pqedge-root.cer (DER)", "curl --cacert " + filepath.Join(dir, "trust", "pqedge-root.crt")}},
		// The local development CA: the classical root gets the NSS, Debian,
		// macOS and Windows recipes, the ML-DSA root the ML-DSA ones.
		{name: "trust local", args: []string{"trust", local, "--out", filepath.Join(dir, "localtrust")}, wantStdout: []string{"pqedge-local-classical.crt (PEM)", "pqedge-local-pq.crt (PEM)",
			"-n pqedge-local-classical -i " + filepath.Join(dir, "localtrust", "pqedge-local-classical.crt"),
			"certutil -addstore -f Root " + filepath.Join(dir, "localtrust", "pqedge-local-classical.cer"),
			"--ignore-certificate-errors-spki-list=" + certs.SPKIHash(mustLocal(t, local).PQ.Leaf), "the development leaf, ML-DSA-65"},
			noStdout: []string{"-n pqedge-local-pq"}},
		{name: "trust not a CA dir", args: []string{"trust", filepath.Join(dir, "trust")}, wantCode: 1, wantStderr: []string{"no CA root in", "hint: DIR must be a directory made by `pqedge certs init --dir DIR`, or pqedge's data_dir/local"}},
		{name: "trust without dir", args: []string{"trust"}, wantCode: 2, wantStderr: []string{"hint: pqedge certs trust DIR"}},
		{name: "inspect DER", args: []string{"inspect", filepath.Join(dir, "trust", "pqedge-root.cer")}, wantStdout: []string{"ML-DSA-87, public key 2592 B"}},
		{name: "unknown command", args: []string{"sign"}, wantCode: 2, wantStderr: []string{`unknown certs command "sign"`, "hint: commands are init, issue, inspect and trust"}},
		{name: "no command", args: nil, wantCode: 2, wantStderr: []string{"usage: pqedge certs"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := runCertsCLI(s.args...)
			if r.code != s.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, s.wantCode, r.stdout, r.stderr)
			}
			for _, w := range s.wantStdout {
				if strings.Contains(w, "{intermediate SPKI}") { // known once init ran
					w = strings.ReplaceAll(w, "{intermediate SPKI}", certs.SPKIHash(mustCA(t, ca).Intermediate))
				}
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
			for _, w := range s.noStdout {
				if strings.Contains(r.stdout, w) {
					t.Errorf("stdout has %q:\n%s", w, r.stdout)
				}
			}
			for _, w := range s.wantStderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}

	// The files the steps wrote.
	if fi, err := os.Stat(leaf + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("leaf key: %v %v", fi.Mode(), err)
	}
	if c, err := certs.LoadKeyPair(leaf+".crt", leaf+".key"); err != nil || c.Leaf.NotAfter.Sub(time.Now()) > 31*24*time.Hour {
		t.Errorf("issued pair: %v", err)
	}
	der, err := os.ReadFile(filepath.Join(dir, "trust", "pqedge-root.cer"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		t.Errorf("trust .cer is not DER: %v", err)
	}
}

func mustCA(t *testing.T, dir string) *certs.CA {
	t.Helper()
	ca, err := certs.OpenCA(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustLocal(t *testing.T, dir string) *certs.LocalSet {
	t.Helper()
	set, err := certs.EnsureLocal(dir, []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestCertsCLIRefusesUnsafeCA(t *testing.T) {
	t.Run("readable key", func(t *testing.T) {
		ca := t.TempDir()
		if r := runCertsCLI("init", "--dir", ca, "--alg", "mldsa44"); r.code != 0 {
			t.Fatal(r.stderr)
		}
		if err := os.Chmod(filepath.Join(ca, "root.key"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runCertsCLI("issue", "--ca", ca, "--name", "a.test", "--out", filepath.Join(t.TempDir(), "x"))
		if r.code != 1 || !strings.Contains(r.stderr, "chmod 600") || !strings.Contains(r.stderr, "hint: check --ca") {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})
	t.Run("expired CA", func(t *testing.T) {
		ca := t.TempDir()
		if _, err := certs.InitCA(ca, certs.CAOptions{Alg: certs.AlgMLDSA44, Now: time.Now().Add(-certs.DefaultRootValidity - 48*time.Hour)}); err != nil {
			t.Fatal(err)
		}
		r := runCertsCLI("issue", "--ca", ca, "--name", "a.test", "--out", filepath.Join(t.TempDir(), "x"))
		if r.code != 1 || !strings.Contains(r.stderr, "expired") || !strings.Contains(r.stderr, "pqedge certs init") {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})
	t.Run("large chain verdict", func(t *testing.T) {
		ca := t.TempDir()
		if r := runCertsCLI("init", "--dir", ca, "--intermediate"); r.code != 0 {
			t.Fatal(r.stderr)
		}
		out := filepath.Join(t.TempDir(), "big")
		r := runCertsCLI("issue", "--ca", ca, "--name", "a.test", "--alg", "mldsa87", "--out", out)
		if r.code != 0 || !strings.Contains(r.stdout, "exceeds TCP's initial window") {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}

// TestCertsCLIBadInput: every flag and argument answers garbage with exit 2
// (usage) or 1 (failed) and a hint naming what to change, writing nothing.
func TestCertsCLIBadInput(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.crt")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr []string
	}{
		{"init unexpected argument", []string{"init", "--dir", out, "extra"}, 2, []string{`unexpected argument "extra"`}},
		{"init leaf-only alg", []string{"init", "--dir", out, "--alg", "ed25519"}, 1, []string{"ed25519 is for leaves, not CAs", "hint: set --alg to mldsa87, mldsa65, mldsa44 or ecdsa-p384"}},
		{"init leaf-only intermediate alg", []string{"init", "--dir", out, "--intermediate", "--intermediate-alg", "ecdsa-p256"}, 1, []string{"ecdsa-p256 is for leaves, not CAs", "hint: set --intermediate-alg to mldsa87, mldsa65, mldsa44 or ecdsa-p384"}},
		{"init intermediate-alg alone", []string{"init", "--dir", out, "--intermediate-alg", "mldsa44"}, 2, []string{"--intermediate-alg needs --intermediate"}},
		{"init bad intermediate-alg", []string{"init", "--dir", out, "--intermediate", "--intermediate-alg", "mldsa-44"}, 1, []string{`unknown key algorithm "mldsa-44"`, "hint: set --intermediate-alg"}},
		{"init bool flag with value", []string{"init", "--dir", out, "--intermediate=maybe"}, 2, []string{"invalid boolean value", "hint: see `pqedge certs init --help`"}},
		{"issue days not a number", []string{"issue", "--ca", out, "--name", "a.test", "--out", out, "--days", "ninety"}, 2, []string{`invalid value "ninety" for flag -days`, "hint: see `pqedge certs issue --help`"}},
		{"issue negative days", []string{"issue", "--ca", out, "--name", "a.test", "--out", out, "--days", "-1"}, 2, []string{"--days must be positive, not -1"}},
		{"issue only commas for names", []string{"issue", "--ca", out, "--name", " , ,", "--out", out}, 2, []string{"no names given"}},
		{"issue without out", []string{"issue", "--ca", out, "--name", "a.test"}, 2, []string{"no output path given", "hint: pass --out PATH"}},
		{"issue without ca", []string{"issue", "--name", "a.test", "--out", out}, 2, []string{"no CA given", "hint: pass --ca DIR"}},
		{"issue flag without value", []string{"issue", "--ca"}, 2, []string{"flag needs an argument: -ca"}},
		{"inspect missing file", []string{"inspect", filepath.Join(dir, "none.crt")}, 1, []string{"failed to read certificate", "hint: pass the path of a PEM or DER certificate file"}},
		{"inspect garbage certificate", []string{"inspect", garbage}, 1, []string{"failed to parse certificate 1", "hint: pass a PEM or DER certificate file"}},
		{"inspect text file", []string{"inspect", text}, 1, []string{"no CERTIFICATE PEM block found", "hint: pass a PEM or DER certificate file"}},
		{"trust two directories", []string{"trust", dir, out}, 2, []string{"trust needs exactly one CA directory"}},
		{"trust missing directory", []string{"trust", filepath.Join(dir, "none")}, 1, []string{"no CA root in"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCertsCLI(tt.args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tt.wantCode, r.stdout, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "pqedge: error: ") && !strings.Contains(r.stderr, "\npqedge: error: ") {
				t.Errorf("stderr lacks the pqedge: error: line:\n%s", r.stderr)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if keys, _ := filepath.Glob(filepath.Join(out, "*.key")); len(keys) > 0 {
				t.Fatalf("a refused command wrote %v", keys)
			}
		})
	}
}
