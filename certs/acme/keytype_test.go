package acme

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/mldsa"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
)

func TestParseKeyType(t *testing.T) {
	tests := []struct {
		in      string
		want    KeyType
		wantErr string
	}{
		{in: "", want: KeyECDSAP256},
		{in: "ecdsa-p256", want: KeyECDSAP256},
		{in: " ECDSA-P384 ", want: KeyECDSAP384},
		{in: "rsa2048", want: KeyRSA2048},
		{in: "rsa4096", want: KeyRSA4096},
		{in: "mldsa44", wantErr: "no ACME CA issues ML-DSA"},
		{in: "mldsa65", wantErr: "no ACME CA issues ML-DSA"},
		{in: "mldsa87", wantErr: "no ACME CA issues ML-DSA"},
		{in: "ed25519", wantErr: "do not issue Ed25519"},
		{in: "x25519mlkem768", wantErr: "unsupported key type"},
		{in: "p256", wantErr: "unsupported key type"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKeyType(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKeyType(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseKeyType(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestDescribePublicKey(t *testing.T) {
	ecKey := func(c elliptic.Curve) crypto.PublicKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &k.PublicKey
	}
	mldsaKey := func(p mldsa.Parameters) crypto.PublicKey {
		k, err := mldsa.GenerateKey(p)
		if err != nil {
			t.Fatal(err)
		}
		return k.PublicKey()
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pub     crypto.PublicKey
		want    string
		wantErr string
	}{
		{name: "P-256", pub: ecKey(elliptic.P256()), want: "ecdsa-p256"},
		{name: "P-384", pub: ecKey(elliptic.P384()), want: "ecdsa-p384"},
		{name: "P-521", pub: ecKey(elliptic.P521()), want: "ecdsa-p521"},
		{name: "RSA 2048", pub: &rsaKey.PublicKey, want: "rsa2048"},
		{name: "Ed25519", pub: edPub, want: "ed25519"},
		{name: "ML-DSA-44", pub: mldsaKey(mldsa.MLDSA44()), want: "mldsa44"},
		{name: "ML-DSA-65", pub: mldsaKey(mldsa.MLDSA65()), want: "mldsa65"},
		{name: "ML-DSA-87", pub: mldsaKey(mldsa.MLDSA87()), want: "mldsa87"},
		{name: "X25519 (not a signing key)", pub: x25519.PublicKey(), wantErr: "unsupported key type *ecdh.PublicKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := describePublicKey(tt.pub)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("describePublicKey = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("describePublicKey = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// FuzzParseKeyType checks that an accepted key type parses to itself again
// and maps to a certmagic key type.
func FuzzParseKeyType(f *testing.F) {
	for _, s := range []string{"", "ecdsa-p256", "ECDSA-P384", "rsa2048", "rsa4096", "mldsa65", "ed25519", " rsa4096\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyType(s)
		if err != nil {
			return
		}
		again, err := ParseKeyType(string(k))
		if err != nil || again != k {
			t.Fatalf("ParseKeyType(%q) = %q, but ParseKeyType(%q) = %q, %v", s, k, k, again, err)
		}
		if cm, err := k.certmagic(); err != nil || cm == "" {
			t.Fatalf("accepted %q maps to certmagic key type %q, %v", k, cm, err)
		}
	})
}
