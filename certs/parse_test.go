package certs

import (
	"bytes"
	"crypto/mldsa"
	"encoding/asn1"
	"encoding/pem"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// oneAsymmetricKey builds a PKCS#8 OneAsymmetricKey (RFC 5958 Section 2)
// around inner, the privateKey OCTET STRING's contents. params, when not
// nil, is appended to the AlgorithmIdentifier (ML-DSA's must be absent).
func oneAsymmetricKey(t *testing.T, version int64, oid asn1.ObjectIdentifier, params []byte, inner []byte) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(version)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			if params != nil {
				b.AddBytes(params)
			}
		})
		b.AddASN1OctetString(inner)
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// mldsaChoice builds one arm of the ML-DSA-PrivateKey CHOICE (RFC 9881
// Section 6) with the given pieces.
func mldsaChoice(t *testing.T, build func(b *cryptobyte.Builder)) []byte {
	t.Helper()
	var b cryptobyte.Builder
	build(&b)
	out, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestParsePKCS8MLDSAErrors covers every way the ML-DSA CHOICE parser says
// no; FuzzParsePKCS8 only checks that it does not panic.
func TestParsePKCS8MLDSAErrors(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	ck, err := newCirclKey(mldsa.MLDSA44(), seed)
	if err != nil {
		t.Fatal(err)
	}
	expanded := ck.priv.Bytes()
	seedOnly := func(s []byte, trailing ...byte) []byte {
		return mldsaChoice(t, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(s) })
			b.AddBytes(trailing)
		})
	}
	both := func(parts ...[]byte) []byte {
		return mldsaChoice(t, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, p := range parts {
					b.AddASN1OctetString(p)
				}
			})
		})
	}
	otherExpanded := append([]byte(nil), expanded...)
	otherExpanded[100] ^= 1

	tests := []struct {
		name    string
		der     []byte
		wantErr string
	}{
		{"seed-only with trailing bytes", oneAsymmetricKey(t, 0, oidMLDSA44, nil, seedOnly(seed, 0x05, 0x00)), "malformed ML-DSA-44 seed-only private key"},
		{"seed-only, short seed", oneAsymmetricKey(t, 0, oidMLDSA44, nil, seedOnly(seed[:31])), "ML-DSA-44 seed is 31 bytes, want 32"},
		{"seed-only, long seed", oneAsymmetricKey(t, 0, oidMLDSA65, nil, seedOnly(append(seed, 0))), "ML-DSA-65 seed is 33 bytes, want 32"},
		{"both without the expanded key", oneAsymmetricKey(t, 0, oidMLDSA44, nil, both(seed)), "malformed ML-DSA-44 seed-and-expanded private key"},
		{"both with a third part", oneAsymmetricKey(t, 0, oidMLDSA44, nil, both(seed, expanded, seed)), "malformed ML-DSA-44 seed-and-expanded private key"},
		{"both, expanded key truncated", oneAsymmetricKey(t, 0, oidMLDSA44, nil, both(seed, expanded[:len(expanded)-1])), "does not match its seed"},
		{"both, expanded key of another seed", oneAsymmetricKey(t, 0, oidMLDSA44, nil, both(seed, otherExpanded)), "does not match its seed"},
		{"expanded only", oneAsymmetricKey(t, 0, oidMLDSA87, nil, mldsaChoice(t, func(b *cryptobyte.Builder) { b.AddASN1OctetString(expanded) })), "holds only the expanded key"},
		{"unknown CHOICE arm", oneAsymmetricKey(t, 0, oidMLDSA44, nil, mldsaChoice(t, func(b *cryptobyte.Builder) { b.AddASN1Int64(1) })), "malformed ML-DSA-44 private key"},
		{"empty privateKey", oneAsymmetricKey(t, 0, oidMLDSA44, nil, nil), "malformed ML-DSA-44 private key"},
		// Not ML-DSA as RFC 9881 writes it: left to crypto/x509, which
		// refuses it.
		{"ML-DSA OID with NULL parameters", oneAsymmetricKey(t, 0, oidMLDSA44, []byte{0x05, 0x00}, seedOnly(seed)), "failed to parse PKCS#8 private key"},
		{"unknown algorithm", oneAsymmetricKey(t, 0, asn1.ObjectIdentifier{1, 2, 3, 4}, nil, seedOnly(seed)), "failed to parse PKCS#8 private key"},
		{"seed and expanded key, trailing data", append(oneAsymmetricKey(t, 0, oidMLDSA44, nil, both(seed, expanded)), 0), "failed to parse PKCS#8 private key"},
		{"empty", nil, "failed to parse PKCS#8 private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePKCS8(tt.der)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParsePKCS8 = %T, %v; want error containing %q", k, err, tt.wantErr)
			}
		})
	}

	// The same builders make keys that parse, so the failures above come
	// from the one broken part of each.
	for name, der := range map[string][]byte{
		"seed-only": oneAsymmetricKey(t, 0, oidMLDSA44, nil, seedOnly(seed)),
		"both":      oneAsymmetricKey(t, 0, oidMLDSA44, nil, both(seed, expanded)),
		"version 1": oneAsymmetricKey(t, 1, oidMLDSA44, nil, seedOnly(seed)),
	} {
		k, err := ParsePKCS8(der)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(k.Public().(interface{ Bytes() []byte }).Bytes()) != string(ck.pub.Bytes()) {
			t.Fatalf("%s: parsed a different key", name)
		}
	}
}

func TestParseCertificatesPEMErrors(t *testing.T) {
	block := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	ca, err := InitCA(t.TempDir(), CAOptions{Alg: AlgMLDSA44})
	if err != nil {
		t.Fatal(err)
	}
	good := block("CERTIFICATE", ca.Root.Raw)
	tests := []struct {
		name, pem, wantErr string
	}{
		{"empty", "", "no CERTIFICATE PEM block found; the file must hold PEM certificates"},
		{"not PEM", "hello\n", "no CERTIFICATE PEM block found; the file must hold PEM certificates"},
		{"DER", string(ca.Root.Raw), "convert DER with `openssl x509 -inform der"},
		{"only a key", block("PRIVATE KEY", []byte{0x30, 0x00}), "the certificate and key files may be swapped"},
		{"only a CSR", block("CERTIFICATE REQUEST", []byte{0x30, 0x00}), "no CERTIFICATE PEM block found"},
		{"garbage certificate", block("CERTIFICATE", []byte("garbage")), "failed to parse certificate 1"},
		{"garbage after a good one", good + block("CERTIFICATE", []byte{0x30, 0x00}), "failed to parse certificate 2"},
		{"truncated PEM", good[:len(good)/2], "no CERTIFICATE PEM block found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain, err := ParseCertificatesPEM([]byte(tt.pem))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseCertificatesPEM = %d certificates, %v; want error containing %q", len(chain), err, tt.wantErr)
			}
		})
	}
}

// TestParseNames covers the three name parsers the config and CLI use:
// every accepted spelling and a rejection naming the known values.
func TestParseNames(t *testing.T) {
	algs := []struct {
		in, want, wantErr string
	}{
		{in: "mldsa44", want: "mldsa44"},
		{in: " MLDSA65 ", want: "mldsa65"},
		{in: "mldsa87", want: "mldsa87"},
		{in: "ECDSA-P256", want: "ecdsa-p256"},
		{in: "ecdsa-p384", want: "ecdsa-p384"},
		{in: "ed25519", want: "ed25519"},
		{in: "", wantErr: `unknown key algorithm "" (known: mldsa44`},
		{in: "rsa", wantErr: `unknown key algorithm "rsa"`}, // loads, never generated from config
		{in: "ML-DSA-65", wantErr: `unknown key algorithm "ML-DSA-65"`},
		{in: "ecdsa-p521", wantErr: "unknown key algorithm"},
		{in: "mldsa65,ed25519", wantErr: "unknown key algorithm"},
	}
	for _, tt := range algs {
		t.Run("alg/"+tt.in, func(t *testing.T) {
			got, err := ParseAlg(tt.in)
			checkParsed(t, "ParseAlg", tt.in, string(got), err, tt.want, tt.wantErr)
		})
	}
	signers := []struct {
		in, want, wantErr string
	}{
		{in: "", want: string(DefaultSignerKind)},
		{in: "circl", want: "circl"},
		{in: "stdlib", want: "stdlib"},
		{in: "Circl", wantErr: `unknown signer "Circl" (known: circl, stdlib)`},
		{in: "openssl", wantErr: `unknown signer "openssl"`},
	}
	for _, tt := range signers {
		t.Run("signer/"+tt.in, func(t *testing.T) {
			got, err := ParseSignerKind(tt.in)
			checkParsed(t, "ParseSignerKind", tt.in, string(got), err, tt.want, tt.wantErr)
		})
	}
	modes := []struct {
		in, want, wantErr string
	}{
		{in: "", want: string(DefaultPQMode)},
		{in: "off", want: "off"},
		{in: "trusted", want: "trusted"},
		{in: "always", want: "always"},
		{in: "on", wantErr: `unknown pq mode "on" (known: off, trusted, always)`},
		{in: " always", wantErr: "unknown pq mode"},
	}
	for _, tt := range modes {
		t.Run("mode/"+tt.in, func(t *testing.T) {
			got, err := ParsePQMode(tt.in)
			checkParsed(t, "ParsePQMode", tt.in, string(got), err, tt.want, tt.wantErr)
		})
	}
}

func checkParsed(t *testing.T, fn, in, got string, err error, want, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("%s(%q) = %q, %v; want error containing %q", fn, in, got, err, wantErr)
		}
		return
	}
	if err != nil || got != want {
		t.Fatalf("%s(%q) = %q, %v; want %q", fn, in, got, err, want)
	}
}
