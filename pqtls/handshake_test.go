package pqtls

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/mldsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"strings"
	"testing"
)

func TestSignatureFor(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ml44, _ := mldsa.GenerateKey(mldsa.MLDSA44())
	ml65, _ := mldsa.GenerateKey(mldsa.MLDSA65())
	ml87, _ := mldsa.GenerateKey(mldsa.MLDSA87())
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)

	chromium := []tls.SignatureScheme{0x0a0a, tls.MLDSA44, tls.MLDSA65, tls.MLDSA87, tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256, tls.PKCS1WithSHA256, tls.ECDSAWithP384AndSHA384, tls.PSSWithSHA384, tls.PKCS1WithSHA384, tls.PSSWithSHA512, tls.PKCS1WithSHA512}
	tests := []struct {
		name    string
		pub     crypto.PublicKey
		version uint16
		peer    []tls.SignatureScheme
		want    tls.SignatureScheme
		wantErr string
	}{
		{"ecdsa p256 tls13", &p256.PublicKey, tls.VersionTLS13, chromium, tls.ECDSAWithP256AndSHA256, ""},
		{"ecdsa p384 tls13", &p384.PublicKey, tls.VersionTLS13, chromium, tls.ECDSAWithP384AndSHA384, ""},
		{"ecdsa p521 tls13 not offered", &p521.PublicKey, tls.VersionTLS13, chromium, 0, "no signature scheme"},
		{"ecdsa p384 tls12 takes peer order", &p384.PublicKey, tls.VersionTLS12, chromium, tls.ECDSAWithP256AndSHA256, ""},
		{"ed25519", edPub, tls.VersionTLS13, []tls.SignatureScheme{tls.Ed25519}, tls.Ed25519, ""},
		{"rsa tls13 uses pss", &rsaKey.PublicKey, tls.VersionTLS13, []tls.SignatureScheme{tls.PKCS1WithSHA256, tls.PSSWithSHA384}, tls.PSSWithSHA384, ""},
		{"rsa tls12 pkcs1 allowed", &rsaKey.PublicKey, tls.VersionTLS12, []tls.SignatureScheme{tls.PKCS1WithSHA256}, tls.PKCS1WithSHA256, ""},
		{"rsa tls12 no extension", &rsaKey.PublicKey, tls.VersionTLS12, nil, tls.PSSWithSHA256, ""},
		{"mldsa44", ml44.PublicKey(), tls.VersionTLS13, chromium, tls.MLDSA44, ""},
		{"mldsa65", ml65.PublicKey(), tls.VersionTLS13, chromium, tls.MLDSA65, ""},
		{"mldsa87", ml87.PublicKey(), tls.VersionTLS13, chromium, tls.MLDSA87, ""},
		{"mldsa65 not offered (firefox)", ml65.PublicKey(), tls.VersionTLS13, []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, 0, "no signature scheme for a ML-DSA-65 key"},
		{"unsupported key", x25519.PublicKey(), tls.VersionTLS13, chromium, 0, "unsupported key type *ecdh.PublicKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SignatureFor(tt.pub, tt.version, tt.peer)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("SignatureFor = %s, %v; want %s", SignatureName(got), err, SignatureName(tt.want))
			}
		})
	}
}

func TestNewPolicy(t *testing.T) {
	tests := []struct {
		name       string
		preset     string
		groups     []string
		allowClass bool
		minVersion string
		wantGroups string
		wantMin    uint16
		wantErr    string
	}{
		{name: "default", wantGroups: "X25519MLKEM768,SecP256r1MLKEM768,SecP384r1MLKEM1024,x25519,secp256r1", wantMin: tls.VersionTLS12},
		{name: "pq-only", preset: "pq-only", wantGroups: "X25519MLKEM768,SecP256r1MLKEM768,SecP384r1MLKEM1024", wantMin: tls.VersionTLS13},
		{name: "explicit", groups: []string{"x25519mlkem768", "MLKEM1024"}, wantGroups: "X25519MLKEM768,MLKEM1024", wantMin: tls.VersionTLS12},
		{name: "classical refused", groups: []string{"x25519"}, wantErr: "no post-quantum group"},
		{name: "classical allowed", groups: []string{"x25519"}, allowClass: true, wantGroups: "x25519", wantMin: tls.VersionTLS12},
		{name: "pq-only refuses classical", preset: "pq-only", groups: []string{"X25519MLKEM768", "x25519"}, wantErr: "allows only post-quantum"},
		{name: "not servable", groups: []string{"MLKEM768"}, wantErr: "cannot be served"},
		{name: "unknown preset", preset: "pq-maybe", wantErr: "unknown policy"},
		{name: "min 1.3", minVersion: "1.3", wantGroups: "X25519MLKEM768,SecP256r1MLKEM768,SecP384r1MLKEM1024,x25519,secp256r1", wantMin: tls.VersionTLS13},
		{name: "pq-only with 1.2", preset: "pq-only", minVersion: "1.2", wantErr: "conflicts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy(tt.preset, tt.groups, tt.allowClass, tt.minVersion)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var c tls.Config
			p.Apply(&c)
			if got := strings.Join(p.GroupNames(), ","); got != tt.wantGroups {
				t.Errorf("groups = %s, want %s", got, tt.wantGroups)
			}
			if c.MinVersion != tt.wantMin || len(c.CurvePreferences) != len(p.Groups) {
				t.Errorf("Apply set MinVersion %x and %d groups", c.MinVersion, len(c.CurvePreferences))
			}
		})
	}
}

func TestNames(t *testing.T) {
	for _, g := range Groups() {
		id, err := ParseGroup(g.Name)
		if err != nil || id != g.ID || GroupName(id) != g.Name {
			t.Errorf("group %s does not round-trip: %v %v", g.Name, id, err)
		}
	}
	for _, s := range SignatureSchemes() {
		id, err := ParseSignatureScheme(s.Name)
		if err != nil || id != s.ID || SignatureName(id) != s.Name {
			t.Errorf("scheme %s does not round-trip", s.Name)
		}
	}
	if GroupName(0x2a2a) != "GREASE" || GroupName(0x1234) != "0x1234" {
		t.Errorf("GREASE/unknown names wrong: %s %s", GroupName(0x2a2a), GroupName(0x1234))
	}
	if !IsPostQuantumGroup(tls.X25519MLKEM768) || IsPostQuantumGroup(tls.X25519) {
		t.Error("IsPostQuantumGroup wrong")
	}
	// Every suite's name is crypto/tls's, known or not.
	for _, id := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_RC4_128_SHA, 0x0a0a, 0x1234} {
		if got, want := CipherSuiteName(id), tls.CipherSuiteName(id); got != want {
			t.Errorf("CipherSuiteName(0x%04x) = %q, want %q", id, got, want)
		}
	}
	if n := testing.AllocsPerRun(10, func() { CipherSuiteName(tls.TLS_AES_128_GCM_SHA256) }); n != 0 {
		t.Errorf("CipherSuiteName allocates %v times per call", n)
	}
}

func TestCheckPolicyReportsEveryProblem(t *testing.T) {
	_, problems := CheckPolicy("pq-only", []string{"x25519", "bogus"}, true, "1.2")
	var got []string
	for _, p := range problems {
		got = append(got, p.Field+": "+p.Msg)
	}
	want := []string{
		`groups: policy "pq-only" allows only post-quantum groups, but groups lists "x25519"`,
		`groups: unknown group "bogus"`,
		`min_version: min_version 1.2 conflicts with policy "pq-only"`,
	}
	if len(got) != len(want) {
		t.Fatalf("problems:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
	if _, problems := CheckPolicy("", []string{"x25519"}, true, ""); len(problems) != 0 {
		t.Errorf("an explicitly classical list was refused: %v", problems)
	}
	if _, problems := CheckPolicy("", nil, true, ""); len(problems) != 1 || problems[0].Field != "allow_classical_only" {
		t.Errorf("allow_classical_only without groups: %v", problems)
	}
}

func TestSchemeUsed(t *testing.T) {
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ml44, _ := mldsa.GenerateKey(mldsa.MLDSA44())
	ml87, _ := mldsa.GenerateKey(mldsa.MLDSA87())
	tests := []struct {
		name string
		pub  crypto.PublicKey
		opts crypto.SignerOpts
		want tls.SignatureScheme
	}{
		{"ecdsa sha256", &ec256.PublicKey, crypto.SHA256, tls.ECDSAWithP256AndSHA256},
		{"ecdsa p384 sha384", &ec384.PublicKey, crypto.SHA384, tls.ECDSAWithP384AndSHA384},
		{"ecdsa sha1 (TLS 1.2 without signature_algorithms)", &ec256.PublicKey, crypto.SHA1, tls.ECDSAWithSHA1},
		{"rsa pss sha256", &rsaKey.PublicKey, &rsa.PSSOptions{Hash: crypto.SHA256}, tls.PSSWithSHA256},
		{"rsa pss sha512", &rsaKey.PublicKey, &rsa.PSSOptions{Hash: crypto.SHA512}, tls.PSSWithSHA512},
		{"rsa pkcs1 sha1", &rsaKey.PublicKey, crypto.SHA1, tls.PKCS1WithSHA1},
		{"rsa pkcs1 sha384", &rsaKey.PublicKey, crypto.SHA384, tls.PKCS1WithSHA384},
		{"ed25519", edPub, crypto.Hash(0), tls.Ed25519},
		{"mldsa44", ml44.PublicKey(), crypto.Hash(0), tls.MLDSA44},
		{"mldsa87", ml87.PublicKey(), crypto.Hash(0), tls.MLDSA87},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SchemeUsed(tt.pub, tt.opts)
			if err != nil || got != tt.want {
				t.Errorf("SchemeUsed = %s, %v; want %s", SignatureName(got), err, SignatureName(tt.want))
			}
		})
	}
	if _, err := SchemeUsed(&ec256.PublicKey, crypto.MD5); err == nil {
		t.Error("SchemeUsed accepted ECDSA with MD5")
	}
	if _, err := SchemeUsed("not a key", crypto.SHA256); err == nil || !strings.Contains(err.Error(), "unsupported key type string") {
		t.Errorf("SchemeUsed(string) error = %v, want unsupported key type", err)
	}
}
