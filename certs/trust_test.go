package certs

import (
	"strings"
	"testing"
	"time"
)

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"pqedge-root.crt":              "pqedge-root.crt",
		"/tmp/out dir/pqedge-root.crt": "'/tmp/out dir/pqedge-root.crt'",
		"it's.crt":                     `'it'\''s.crt'`,
		"$HOME/x.crt":                  "'$HOME/x.crt'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestTrustInstructions: a classical root gets every store's recipe; an
// ML-DSA root only the clients that can trust it today, and a plain word
// on the others.
func TestTrustInstructions(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		root     Alg
		inter    bool
		want     []string
		dontWant []string
	}{
		{name: "ecdsa-p384", root: AlgECDSAP384,
			want: []string{"update-ca-certificates", "mkdir -p $HOME/.pki/nssdb", "-N --empty-password", "-n pqedge-root -i 'my dir/pqedge-root.crt'",
				"$HOME/.mozilla/firefox/*/", "security add-trusted-cert", "certutil -addstore -f Root 'my dir/pqedge-root.cer'"},
			dontWant: []string{"ML-DSA"}},
		{name: "mldsa87 with intermediate", root: AlgMLDSA87, inter: true,
			want: []string{"This is an ML-DSA-87 root", "curl --cacert 'my dir/pqedge-root.crt'", `only with pq_certs = "always", or a [[site.pq_rule]]`, "SSL_CERT_FILE=", "Chromium: cannot trust",
				"--ignore-certificate-errors-spki-list=", "the intermediate, which signs every leaf of this CA, ML-DSA-44", "no known way"},
			dontWant: []string{"certutil -d", "update-ca-certificates", "security add-trusted-cert"}},
		{name: "mldsa65 without intermediate", root: AlgMLDSA65,
			want:     []string{"--ignore-certificate-errors-spki-list=HASH", "pqedge certs inspect LEAF.crt"},
			dontWant: []string{"certutil -d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := InitCA(dir, CAOptions{Alg: tt.root, Intermediate: tt.inter, Now: now}); err != nil {
				t.Fatal(err)
			}
			roots, err := FindTrustRoots(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(roots) != 1 || (roots[0].Served != nil) != tt.inter {
				t.Fatalf("roots = %+v, want one, with Served set iff there is an intermediate", roots)
			}
			out := TrustInstructions(roots[0], "my dir/pqedge-root.crt", "my dir/pqedge-root.cer")
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("instructions lack %q:\n%s", w, out)
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(out, w) {
					t.Errorf("instructions have %q:\n%s", w, out)
				}
			}
		})
	}
}
