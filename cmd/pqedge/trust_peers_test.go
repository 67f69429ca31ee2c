package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/peers"
)

// recipe returns the command lines printed under the heading that starts
// with title in `pqedge certs trust` output.
func recipe(t *testing.T, out, title string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(out, "\n"+title)
	if !ok {
		t.Fatalf("no %q section in:\n%s", title, out)
	}
	var lines []string
	for _, l := range strings.Split(rest, "\n")[1:] {
		if !strings.HasPrefix(l, "  ") {
			break
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	return lines
}

// runShell runs a printed recipe with sh under a HOME of its own; stdin is
// empty, so a command that would prompt fails instead of waiting.
func runShell(t *testing.T, home string, lines []string) {
	t.Helper()
	// Bounds a recipe that waits for input it will never get.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-ec", strings.Join(lines, "\n"))
	cmd.Env = append(os.Environ(), "HOME="+home)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("recipe failed: %v\n%s\n%s", err, strings.Join(lines, "\n"), out)
	}
}

func nssList(t *testing.T, certutil, db string) string {
	t.Helper()
	out, err := exec.Command(certutil, "-d", "sql:"+db, "-L").CombinedOutput()
	if err != nil {
		t.Fatalf("certutil -L %s: %v\n%s", db, err, out)
	}
	return string(out)
}

// TestTrustRecipesNSS runs the NSS commands `pqedge certs trust` prints,
// as a user would paste them, with NSS's real certutil: for Chromium in a
// HOME that has no database yet (twice: pasting again must not prompt or
// fail), and for Firefox over one profile with a database and one without.
func TestTrustRecipesNSS(t *testing.T) {
	certutil := peers.Binary(t, "certutil")
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if r := runCertsCLI("init", "--dir", ca, "--alg", "ecdsa-p384"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r := runCertsCLI("trust", ca, "--out", filepath.Join(dir, "out"))
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}

	chromium := recipe(t, r.stdout, "Chromium on Linux")
	runShell(t, home, chromium)
	runShell(t, home, chromium)
	if got := nssList(t, certutil, filepath.Join(home, ".pki", "nssdb")); !strings.Contains(got, "pqedge-root") || !strings.Contains(got, "C,,") {
		t.Errorf("Chromium's database does not trust the root:\n%s", got)
	}

	profiles := filepath.Join(home, ".mozilla", "firefox")
	used, unused := filepath.Join(profiles, "abcd.default-esr"), filepath.Join(profiles, "efgh.never-started")
	for _, p := range []string{used, unused} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(certutil, "-N", "-d", "sql:"+used, "--empty-password").CombinedOutput(); err != nil {
		t.Fatalf("certutil -N: %v\n%s", err, out)
	}
	runShell(t, home, recipe(t, r.stdout, "Firefox on Linux"))
	if got := nssList(t, certutil, used); !strings.Contains(got, "pqedge-root") {
		t.Errorf("the Firefox profile does not trust the root:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(unused, "cert9.db")); err == nil {
		t.Error("the recipe made a database in a profile Firefox never started")
	}
}

// TestNSSRefusesMLDSARoot checks the fact `pqedge certs trust` states for
// ML-DSA roots: NSS's certutil cannot import one, so no NSS recipe is
// printed. When NSS learns ML-DSA this test fails, and the instructions
// should gain the NSS recipe.
func TestNSSRefusesMLDSARoot(t *testing.T) {
	certutil := peers.Binary(t, "certutil")
	dir := t.TempDir()
	if _, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{Alg: certs.AlgMLDSA87}); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(certutil, "-N", "-d", "sql:"+db, "--empty-password").CombinedOutput(); err != nil {
		t.Fatalf("certutil -N: %v\n%s", err, out)
	}
	out, err := exec.Command(certutil, "-A", "-d", "sql:"+db, "-n", "mldsa", "-t", "C,,", "-i", filepath.Join(dir, "ca", certs.RootCertFile)).CombinedOutput()
	if err == nil {
		t.Fatalf("certutil imported an ML-DSA root; `pqedge certs trust` says it cannot (update certs.TrustInstructions):\n%s", out)
	}
}

// TestTrustRecipeChromiumSPKI serves a chain from `pqedge certs init
// --intermediate` and `certs issue` (ML-DSA-44 under an ML-DSA-44
// intermediate) and loads it in headless Chromium with the
// --ignore-certificate-errors-spki-list value `pqedge certs trust` prints:
// the intermediate's key must stand for every leaf it signs.
func TestTrustRecipeChromiumSPKI(t *testing.T) {
	chromium := peers.Binary(t, "chromium", "chromium-browser")
	dir := t.TempDir()
	ca, leaf := filepath.Join(dir, "ca"), filepath.Join(dir, "site")
	for _, args := range [][]string{
		{"init", "--dir", ca, "--intermediate"},
		{"issue", "--ca", ca, "--name", "localhost", "--out", leaf},
	} {
		if r := runCertsCLI(args...); r.code != 0 {
			t.Fatal(r.stderr)
		}
	}
	r := runCertsCLI("trust", ca)
	_, flagValue, ok := strings.Cut(r.stdout, "--ignore-certificate-errors-spki-list=")
	if !ok {
		t.Fatalf("no SPKI recipe:\n%s", r.stdout)
	}
	flagValue, _, _ = strings.Cut(flagValue, "\n")

	cert, err := certs.LoadKeyPair(leaf+".crt", leaf+".key")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<p>served over ML-DSA</p>") }),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{*cert}},
		ReadHeaderTimeout: 10 * time.Second, // a stalled client must not hold the test
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.TLSConfig)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	load := func(spki string) string {
		// Chromium starts slowly on two shared cores.
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		args := append(peers.ChromiumFlags(filepath.Join(t.TempDir(), "profile")), "--dump-dom")
		if spki != "" {
			args = append(args, "--ignore-certificate-errors-spki-list="+spki)
		}
		cmd := exec.CommandContext(ctx, chromium, append(args, fmt.Sprintf("https://localhost:%d/", port))...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, _ := cmd.Output()
		return string(out)
	}
	if got := load(flagValue); !strings.Contains(got, "served over ML-DSA") {
		t.Errorf("Chromium with the printed SPKI flag did not load the page:\n%s", got)
	}
	if got := load(""); strings.Contains(got, "served over ML-DSA") {
		t.Error("Chromium loaded the page without the flag: the test proves nothing")
	}
}
