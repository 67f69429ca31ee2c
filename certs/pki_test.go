package certs

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInitAndIssue(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name         string
		root         Alg
		intermediate bool
		interAlg     Alg
		leaf         Alg
	}{
		{name: "mldsa87 root, mldsa44 leaf", root: AlgMLDSA87, leaf: AlgMLDSA44},
		{name: "mldsa87 root and intermediate, mldsa65 leaf", root: AlgMLDSA87, intermediate: true, interAlg: AlgMLDSA87, leaf: AlgMLDSA65},
		{name: "mldsa87 root, default (mldsa44) intermediate, mldsa44 leaf", root: AlgMLDSA87, intermediate: true, leaf: AlgMLDSA44},
		{name: "mldsa65 root, mldsa44 intermediate, mldsa44 leaf", root: AlgMLDSA65, intermediate: true, interAlg: AlgMLDSA44, leaf: AlgMLDSA44},
		{name: "mldsa44 root, mldsa87 leaf", root: AlgMLDSA44, leaf: AlgMLDSA87},
		{name: "ecdsa-p384 root, ecdsa-p256 leaf", root: AlgECDSAP384, intermediate: true, leaf: AlgECDSAP256},
		{name: "mldsa87 root, ed25519 leaf", root: AlgMLDSA87, leaf: AlgEd25519},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			if _, err := InitCA(dir, CAOptions{Alg: tt.root, Intermediate: tt.intermediate, IntermediateAlg: tt.interAlg, Now: now}); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{RootKeyFile, IntermediateKeyFile} {
				if fi, err := os.Stat(filepath.Join(dir, f)); err == nil && fi.Mode().Perm() != 0o600 {
					t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
				}
			}
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("CA dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
			}
			ca, err := OpenCA(dir, now)
			if err != nil {
				t.Fatal(err)
			}
			if (ca.Intermediate != nil) != tt.intermediate {
				t.Fatalf("intermediate = %v, want %v", ca.Intermediate != nil, tt.intermediate)
			}
			if tt.intermediate {
				want := tt.interAlg
				if want == "" {
					want = DefaultIntermediateAlg(tt.root)
				}
				if info, _ := DescribeKey(ca.Intermediate.PublicKey); info.Alg != want {
					t.Errorf("intermediate alg %s, want %s", info.Alg, want)
				}
			}
			leaf, err := ca.Issue(LeafOptions{Names: []string{"example.test", "127.0.0.1", "::1"}, Alg: tt.leaf, Validity: 30 * 24 * time.Hour, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(t.TempDir(), "leaf")
			if err := WriteKeyPair(base, leaf); err != nil {
				t.Fatal(err)
			}
			loaded, err := LoadKeyPair(base+".crt", base+".key")
			if err != nil {
				t.Fatal(err)
			}
			if want := 1 + btoi(tt.intermediate); len(loaded.Certificate) != want {
				t.Fatalf("chain has %d certificates, want %d (leaf + intermediates, no root)", len(loaded.Certificate), want)
			}
			l := loaded.Leaf
			if info, _ := DescribeKey(l.PublicKey); info.Alg != tt.leaf {
				t.Errorf("leaf alg %s, want %s", info.Alg, tt.leaf)
			}
			if !slices.Equal(l.DNSNames, []string{"example.test"}) || len(l.IPAddresses) != 2 || !l.IPAddresses[1].Equal(net.ParseIP("::1")) {
				t.Errorf("SANs %v %v", l.DNSNames, l.IPAddresses)
			}
			if l.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(l.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || l.IsCA {
				t.Errorf("usage %v %v, IsCA %v", l.KeyUsage, l.ExtKeyUsage, l.IsCA)
			}
			issuer := ca.Root
			if ca.Intermediate != nil {
				issuer = ca.Intermediate
			}
			if len(l.SubjectKeyId) != 20 || !bytes.Equal(l.AuthorityKeyId, issuer.SubjectKeyId) {
				t.Errorf("SKI %x AKI %x, issuer SKI %x", l.SubjectKeyId, l.AuthorityKeyId, issuer.SubjectKeyId)
			}
			if got := l.NotAfter.Sub(now); got < 29*24*time.Hour || got > 31*24*time.Hour {
				t.Errorf("validity %v, want 30 days", got)
			}
			// The chain must verify with the root as the only anchor.
			roots, inters := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(ca.Root)
			for _, der := range loaded.Certificate[1:] {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				inters.AddCert(c)
			}
			if _, err := l.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: "example.test", CurrentTime: now}); err != nil {
				t.Fatalf("chain does not verify: %v", err)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestOpenCARefuses(t *testing.T) {
	now := time.Now()
	t.Run("group-readable key", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := InitCA(dir, CAOptions{Alg: AlgMLDSA44, Now: now}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, RootKeyFile), 0o640); err != nil {
			t.Fatal(err)
		}
		_, err := OpenCA(dir, now)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("OpenCA error = %v, want a chmod 600 hint", err)
		}
	})
	t.Run("expired root", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := InitCA(dir, CAOptions{Alg: AlgMLDSA44, Now: now.Add(-DefaultRootValidity - 24*time.Hour)}); err != nil {
			t.Fatal(err)
		}
		_, err := OpenCA(dir, now)
		if err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("OpenCA error = %v, want expired", err)
		}
	})
	t.Run("expired intermediate", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := InitCA(dir, CAOptions{Alg: AlgMLDSA44, Intermediate: true, Now: now.Add(-DefaultIntermediateValidity - 24*time.Hour)}); err != nil {
			t.Fatal(err)
		}
		_, err := OpenCA(dir, now)
		if err == nil || !strings.Contains(err.Error(), IntermediateCertFile) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("OpenCA error = %v, want intermediate expired", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := OpenCA(filepath.Join(t.TempDir(), "none"), now)
		if err == nil || !strings.Contains(err.Error(), "pqedge certs init") {
			t.Fatalf("OpenCA error = %v, want a certs init hint", err)
		}
	})
	t.Run("init over existing CA", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := InitCA(dir, CAOptions{Alg: AlgMLDSA44, Now: now}); err != nil {
			t.Fatal(err)
		}
		if _, err := InitCA(dir, CAOptions{Alg: AlgMLDSA44, Now: now}); err == nil || !strings.Contains(err.Error(), "already holds a CA") {
			t.Fatalf("second InitCA error = %v", err)
		}
	})
	t.Run("leaf outliving its issuer is cut", func(t *testing.T) {
		dir := t.TempDir()
		ca, err := InitCA(dir, CAOptions{Alg: AlgMLDSA44, Now: now.Add(-DefaultRootValidity + 10*24*time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := ca.Issue(LeafOptions{Names: []string{"a.test"}, Alg: AlgMLDSA44, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if !leaf.Leaf.NotAfter.Equal(ca.Root.NotAfter) {
			t.Fatalf("leaf NotAfter %v, root %v", leaf.Leaf.NotAfter, ca.Root.NotAfter)
		}
	})
}

func TestEnsureLocal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "local")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	names := []string{"localhost", "127.0.0.1"}

	first, err := EnsureLocal(dir, names, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Issued) != 4 {
		t.Fatalf("first start issued %v, want 2 CAs and 2 leaves", first.Issued)
	}
	for _, c := range []struct {
		cert *x509.Certificate
		root *x509.Certificate
		alg  Alg
	}{{first.Classical.Leaf, first.ClassicalRoot, AlgECDSAP256}, {first.PQ.Leaf, first.PQRoot, AlgMLDSA65}} {
		if info, _ := DescribeKey(c.cert.PublicKey); info.Alg != c.alg {
			t.Errorf("leaf alg %s, want %s", info.Alg, c.alg)
		}
		pool := x509.NewCertPool()
		pool.AddCert(c.root)
		if _, err := c.cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost", CurrentTime: now}); err != nil {
			t.Errorf("%s leaf does not verify: %v", c.alg, err)
		}
	}
	if info, _ := DescribeKey(first.PQRoot.PublicKey); info.Alg != AlgMLDSA87 {
		t.Errorf("PQ root alg %s", info.Alg)
	}
	keys, _ := filepath.Glob(filepath.Join(dir, "*.key"))
	if len(keys) != 4 {
		t.Fatalf("keys %v", keys)
	}
	for _, k := range keys {
		if fi, _ := os.Stat(k); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", k, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", fi.Mode().Perm())
	}

	steps := []struct {
		name       string
		names      []string
		now        time.Time
		wantIssued int  // files written
		sameRoot   bool // the PQ root is kept
	}{
		{name: "restart reuses everything", names: names, now: now.Add(time.Hour), wantIssued: 0, sameRoot: true},
		{name: "new name re-issues leaves", names: append(names, "dev.test"), now: now.Add(2 * time.Hour), wantIssued: 2, sameRoot: true},
		{name: "near expiry re-issues leaves", names: append(names, "dev.test"), now: now.Add(localLeafValidity - 10*24*time.Hour), wantIssued: 2, sameRoot: true},
		{name: "ageing CA is replaced", names: names, now: now.Add(localCAValidity - 5*24*time.Hour), wantIssued: 4, sameRoot: false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			set, err := EnsureLocal(dir, s.names, s.now)
			if err != nil {
				t.Fatal(err)
			}
			if len(set.Issued) != s.wantIssued {
				t.Fatalf("issued %v, want %d files", set.Issued, s.wantIssued)
			}
			if got := set.PQRoot.Equal(first.PQRoot); got != s.sameRoot {
				t.Fatalf("same PQ root = %v, want %v", got, s.sameRoot)
			}
			for _, c := range []*x509.Certificate{set.Classical.Leaf, set.PQ.Leaf} {
				if err := Check(c, s.names, s.now); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	t.Run("deleted leaf is re-issued", func(t *testing.T) {
		if err := os.Remove(filepath.Join(dir, "pq.crt")); err != nil {
			t.Fatal(err)
		}
		set, err := EnsureLocal(dir, names, now.Add(localCAValidity-5*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if len(set.Issued) != 1 || !strings.HasSuffix(set.Issued[0], "pq.crt") {
			t.Fatalf("issued %v, want pq.crt", set.Issued)
		}
	})
}

func TestLocalSetIssue(t *testing.T) {
	dir := t.TempDir()
	set, err := EnsureLocal(dir, []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		alg  Alg
		root *x509.Certificate
	}{
		{AlgMLDSA44, set.PQRoot}, {AlgMLDSA87, set.PQRoot}, {AlgECDSAP256, set.ClassicalRoot}, {AlgEd25519, set.ClassicalRoot},
	} {
		leaf, err := set.Issue(LeafOptions{Names: []string{"localhost"}, Alg: tt.alg})
		if err != nil {
			t.Fatalf("%s: %v", tt.alg, err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(tt.root)
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost"}); err != nil {
			t.Errorf("a %s leaf does not verify against the %s root: %v", tt.alg, tt.root.Subject, err)
		}
	}
	// Reopening the directory issues from the same CAs.
	again, err := EnsureLocal(dir, []string{"localhost"}, time.Now())
	if err != nil || len(again.Issued) != 0 {
		t.Fatalf("reopen: issued %v, %v", again.Issued, err)
	}
	leaf, err := again.Issue(LeafOptions{Names: []string{"localhost"}, Alg: AlgMLDSA65})
	if err != nil || leaf.Leaf.CheckSignatureFrom(set.PQRoot) != nil {
		t.Errorf("a leaf issued after reopening is not from the same ML-DSA CA: %v", err)
	}
	files := LocalLeafFiles(dir)
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("LocalLeafFiles names %s, which EnsureLocal did not write", f)
		}
	}
}

func TestNewChain(t *testing.T) {
	for _, alg := range []Alg{AlgECDSAP256, AlgEd25519, AlgRSA, AlgMLDSA44, AlgMLDSA65, AlgMLDSA87} {
		t.Run(string(alg), func(t *testing.T) {
			leaf, root, err := NewChain(alg, []string{"localhost", "127.0.0.1"}, time.Now(), 24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if len(leaf.Certificate) != 2 {
				t.Fatalf("chain has %d certificates, want leaf + intermediate", len(leaf.Certificate))
			}
			inter, err := x509.ParseCertificate(leaf.Certificate[1])
			if err != nil {
				t.Fatal(err)
			}
			roots, inters := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(root)
			inters.AddCert(inter)
			if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: "localhost"}); err != nil {
				t.Errorf("chain does not verify: %v", err)
			}
			for _, c := range []*x509.Certificate{root, inter, leaf.Leaf} {
				if k, _ := DescribeKey(c.PublicKey); k.Alg != alg {
					t.Errorf("%s has a %s key, want %s", c.Subject, k.Alg, alg)
				}
			}
		})
	}
	if _, _, err := NewChain(AlgMLDSA44, nil, time.Now(), time.Hour); err == nil {
		t.Error("a chain without names was made")
	}
}

// TestPKIOptionErrors: every option a caller can get wrong is refused with
// an error that names it, before anything is written.
func TestPKIOptionErrors(t *testing.T) {
	now := time.Now()
	ca, err := InitCA(t.TempDir(), CAOptions{Alg: AlgMLDSA44, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		run     func(dir string) error
		wantErr string
	}{
		{"init: leaf-only algorithm", func(dir string) error {
			_, err := InitCA(dir, CAOptions{Alg: AlgEd25519})
			return err
		}, `a root CA key must be mldsa87, mldsa65, mldsa44 or ecdsa-p384, not "ed25519"`},
		{"init: RSA", func(dir string) error { _, err := InitCA(dir, CAOptions{Alg: AlgRSA}); return err }, `not "rsa"`},
		{"init: unknown algorithm", func(dir string) error { _, err := InitCA(dir, CAOptions{Alg: "mldsa99"}); return err }, `not "mldsa99"`},
		{"init: unknown intermediate algorithm", func(dir string) error {
			_, err := InitCA(dir, CAOptions{Alg: AlgMLDSA44, Intermediate: true, IntermediateAlg: "mldsa99"})
			return err
		}, `an intermediate CA key must be mldsa87, mldsa65, mldsa44 or ecdsa-p384, not "mldsa99"`},
		{"init: leaf-only intermediate algorithm", func(dir string) error {
			_, err := InitCA(dir, CAOptions{Alg: AlgECDSAP384, Intermediate: true, IntermediateAlg: AlgEd25519})
			return err
		}, `an intermediate CA key must be mldsa87, mldsa65, mldsa44 or ecdsa-p384, not "ed25519"`},
		{"issue: no names", func(string) error { _, err := ca.Issue(LeafOptions{Alg: AlgMLDSA44}); return err }, "at least one name"},
		{"issue: bad name", func(string) error {
			_, err := ca.Issue(LeafOptions{Names: []string{"a.test", "bad name!"}, Alg: AlgMLDSA44})
			return err
		}, `bad server name "bad name!": ' ' is not allowed`},
		{"issue: empty label", func(string) error {
			_, err := ca.Issue(LeafOptions{Names: []string{"a..test"}, Alg: AlgMLDSA44})
			return err
		}, `bad server name "a..test"`},
		{"issue: no algorithm", func(string) error { _, err := ca.Issue(LeafOptions{Names: []string{"a.test"}}); return err }, `unknown key algorithm "" (known: mldsa44`},
		{"issue: RSA", func(string) error {
			_, err := ca.Issue(LeafOptions{Names: []string{"a.test"}, Alg: AlgRSA})
			return err
		}, `unknown key algorithm "rsa"`},
		{"issue: unnormalised spelling", func(string) error {
			_, err := ca.Issue(LeafOptions{Names: []string{"a.test"}, Alg: "MLDSA44"})
			return err
		}, `unknown key algorithm "MLDSA44"`},
		{"local: no names", func(dir string) error { _, err := EnsureLocal(dir, nil, now); return err }, "at least one name"},
		{"chain: unknown algorithm", func(string) error {
			_, _, err := NewChain("mldsa99", []string{"a.test"}, now, time.Hour)
			return err
		}, `cannot generate keys of algorithm "mldsa99"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			err := tt.run(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			// A refused call leaves no key behind.
			if keys, _ := filepath.Glob(filepath.Join(dir, "*.key")); len(keys) > 0 {
				t.Fatalf("refused call wrote %v", keys)
			}
		})
	}
}
