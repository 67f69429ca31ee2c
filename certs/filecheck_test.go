package certs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLoadFiles: every kind of broken file a config can name gives one
// problem naming the file and the setting that named it; a good set loads
// both chains and the roots.
func TestLoadFiles(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	ca, err := InitCA(filepath.Join(dir, "ca"), CAOptions{Alg: AlgMLDSA44, Intermediate: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string, alg Alg, names []string, at time.Time, validity time.Duration) FilePair {
		t.Helper()
		leaf, err := ca.Issue(LeafOptions{Names: names, Alg: alg, Validity: validity, Now: at})
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Join(dir, name)
		if err := WriteKeyPair(base, leaf); err != nil {
			t.Fatal(err)
		}
		return FilePair{Cert: base + ".crt", Key: base + ".key"}
	}
	names := []string{"www.example.com"}
	ecdsa := issue("ecdsa", AlgECDSAP256, names, now, 90*24*time.Hour)
	mldsa := issue("mldsa", AlgMLDSA44, names, now, 90*24*time.Hour)
	other := issue("other", AlgECDSAP256, names, now, 90*24*time.Hour)
	expired := issue("expired", AlgECDSAP256, names, now.Add(-100*24*time.Hour), 30*24*time.Hour)
	wrongName := issue("wrongname", AlgECDSAP256, []string{"other.example.com"}, now, 90*24*time.Hour)
	ageing := issue("ageing", AlgECDSAP256, names, now, 5*24*time.Hour)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM at all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A chain written root-last but leaf and intermediate swapped.
	swapped := filepath.Join(dir, "swapped.crt")
	data, _ := os.ReadFile(ecdsa.Cert)
	blocks := strings.SplitAfter(string(data), "-----END CERTIFICATE-----\n")
	if err := os.WriteFile(swapped, []byte(blocks[0]+blocks[1]+blocks[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name     string
		fs       FileSet
		problems []string // "field: text"
		warnings []string
	}{
		{name: "both kinds and a root", fs: FileSet{Pairs: []FilePair{ecdsa, mldsa}, PQRoot: filepath.Join(dir, "ca", RootCertFile), Names: names}},
		{name: "missing certificate", fs: FileSet{Pairs: []FilePair{{Cert: missing, Key: ecdsa.Key}}, Names: names},
			problems: []string{"cert.0.cert: failed to read certificate: open " + missing}},
		{name: "missing key", fs: FileSet{Pairs: []FilePair{{Cert: ecdsa.Cert, Key: missing}}, Names: names},
			problems: []string{"cert.0.key: failed to read private key: open " + missing}},
		{name: "garbage certificate", fs: FileSet{Pairs: []FilePair{{Cert: garbage, Key: ecdsa.Key}}, Names: names},
			problems: []string{"cert.0.cert: no CERTIFICATE PEM block found"}},
		{name: "swapped files", fs: FileSet{Pairs: []FilePair{{Cert: ecdsa.Key, Key: ecdsa.Cert}}, Names: names},
			problems: []string{"cert.0.cert: may be swapped"}},
		{name: "key of another certificate", fs: FileSet{Pairs: []FilePair{{Cert: ecdsa.Cert, Key: other.Key}}, Names: names},
			problems: []string{"cert.0.key: the private key does not match the certificate"}},
		{name: "expired", fs: FileSet{Pairs: []FilePair{expired}, Names: names},
			problems: []string{"cert.0.cert: expired on"}},
		{name: "not yet valid", fs: FileSet{Pairs: []FilePair{issue("future", AlgECDSAP256, names, now.Add(48*time.Hour), 90*24*time.Hour)}, Names: names},
			problems: []string{"cert.0.cert: is not valid before"}},
		{name: "name not covered", fs: FileSet{Pairs: []FilePair{wrongName}, Names: names},
			problems: []string{`cert.0.cert: does not cover "www.example.com" (it covers other.example.com)`}},
		{name: "two classical pairs", fs: FileSet{Pairs: []FilePair{ecdsa, other}, Names: names},
			problems: []string{"cert.1.cert: the site already has a classical certificate"}},
		{name: "ACME site with a classical pair", fs: FileSet{Pairs: []FilePair{ecdsa}, Names: names, PQOnly: true},
			problems: []string{"cert.0.cert: this pair is the site's ML-DSA chain (the classical one comes from ACME), but its key is ECDSA P-256"}},
		{name: "missing pq_root", fs: FileSet{Pairs: []FilePair{mldsa}, PQRoot: missing, Names: names},
			problems: []string{"pq_root: failed to read " + missing}},
		{name: "garbage pq_root", fs: FileSet{Pairs: []FilePair{mldsa}, PQRoot: garbage, Names: names},
			problems: []string{"pq_root: failed to load " + garbage}},
		{name: "every problem at once", fs: FileSet{Pairs: []FilePair{expired, {Cert: mldsa.Cert, Key: missing}}, PQRoot: garbage, Names: names},
			problems: []string{"cert.0.cert: expired", "cert.1.key: failed to read private key", "pq_root: failed to load"}},
		{name: "chain out of order", fs: FileSet{Pairs: []FilePair{{Cert: swapped, Key: ecdsa.Key}}, Names: names},
			warnings: []string{"cert.0.cert: certificate 2 (CN=pqedge root CA intermediate"}},
		{name: "about to expire", fs: FileSet{Pairs: []FilePair{ageing}, Names: names},
			warnings: []string{"cert.0.cert: certificate " + ageing.Cert + " expires on"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loaded, err := LoadFiles(tt.fs, now)
			var got FileProblems
			if err != nil && !errors.As(err, &got) {
				t.Fatalf("error %v (%T), want FileProblems", err, err)
			}
			if loaded != nil {
				got = append(got, loaded.Warnings...)
			}
			want := append(slices.Clone(tt.problems), tt.warnings...)
			if len(got) != len(want) {
				t.Fatalf("got %d problems and warnings, want %d:\n%v", len(got), len(want), got)
			}
			for i, w := range want {
				field, text, _ := strings.Cut(w, ": ")
				if got[i].Field != field || !strings.Contains(got[i].Error(), text) {
					t.Errorf("problem %d = %s: %v, want %s: ...%s...", i, got[i].Field, got[i].Err, field, text)
				}
			}
			if len(tt.problems) > 0 {
				if loaded != nil {
					t.Error("a set with problems was loaded")
				}
				return
			}
			if loaded == nil {
				t.Fatalf("not loaded: %v", err)
			}
			for _, p := range tt.fs.Pairs {
				leaf, _ := LoadKeyPair(p.Cert, p.Key)
				if k, _ := DescribeKey(leaf.Leaf.PublicKey); k.PostQuantum && loaded.PQ == nil || !k.PostQuantum && loaded.Classical == nil {
					t.Errorf("%s was not loaded into its slot", p.Cert)
				}
			}
			if tt.fs.PQRoot != "" && len(loaded.PQRoots) != 1 {
				t.Errorf("pq roots %d, want 1", len(loaded.PQRoots))
			}
		})
	}
}
