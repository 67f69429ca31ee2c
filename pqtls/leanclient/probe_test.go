package leanclient

import (
	"crypto/tls"
	"slices"
	"testing"

	"github.com/pqedge/pqedge/pqtls"
)

func groupStatus(r *ProbeReport) map[tls.CurveID]GroupSupport {
	m := map[tls.CurveID]GroupSupport{}
	for _, g := range r.Groups {
		m[g.Group] = g
	}
	return m
}

func certByName(r *ProbeReport, name string) CertificateProbe {
	for _, c := range r.Certificates {
		if c.Name == name {
			return c
		}
	}
	return CertificateProbe{}
}

func TestProbeGoServer(t *testing.T) {
	ecdsaChain, mldsaChain := newTestChain(t, "ecdsa"), newTestChain(t, "mldsa44")
	addr, _ := startGoServer(t, &tls.Config{
		// crypto/tls serves the first certificate the client's list fits.
		Certificates:     []tls.Certificate{ecdsaChain.cert, mldsaChain.cert},
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256},
	})
	r, err := Probe(testContext(t), addr, ProbeConfig{ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	st := groupStatus(r)
	for _, tt := range []struct {
		group          tls.CurveID
		direct, viaHRR bool
	}{
		{tls.X25519MLKEM768, true, true},
		{tls.X25519, true, true},
		{tls.CurveP256, true, true},
		{tls.SecP256r1MLKEM768, false, false},
		{tls.MLKEM1024, false, false},
		{pqtls.GroupMLKEM512, false, false},
		{pqtls.GroupX25519Kyber768Draft00, false, false},
	} {
		g := st[tt.group]
		if g.Direct != tt.direct || g.ViaHRR != tt.viaHRR {
			t.Errorf("%s: direct %v via HRR %v, want %v %v (err %v)", pqtls.GroupName(tt.group), g.Direct, g.ViaHRR, tt.direct, tt.viaHRR, g.Err)
		}
	}
	// crypto/tls prefers post-quantum first, whatever the client's order.
	if want := []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}; !slices.Equal(r.Preference, want) {
		t.Errorf("preference %v, want %v", r.Preference, want)
	}
	if r.FollowsClientOrder {
		t.Error("crypto/tls reported as following the client's order")
	}
	for _, tt := range []struct {
		list, key string
		scheme    tls.SignatureScheme
	}{
		{"ECDSA", "ECDSA P-256", tls.ECDSAWithP256AndSHA256},
		{"mldsa44", "ML-DSA-44", tls.MLDSA44},
		{"RSA", "", 0},
		{"mldsa65", "", 0},
	} {
		c := certByName(r, tt.list)
		if tt.key == "" {
			if KindOf(c.Err) != KindAlert {
				t.Errorf("%s: got %v, want an alert", tt.list, c.Err)
			}
			continue
		}
		if c.Err != nil {
			t.Errorf("%s: %v", tt.list, c.Err)
			continue
		}
		if got := pqtls.KeyAlgorithm(c.Result.Certificates[0].PublicKey); got != tt.key || c.Result.SignatureScheme != tt.scheme || len(c.Result.Certificates) != 2 {
			t.Errorf("%s: %s %s %d certs, want %s %s", tt.list, got, pqtls.SignatureName(c.Result.SignatureScheme), len(c.Result.Certificates), tt.key, pqtls.SignatureName(tt.scheme))
		}
	}
	if len(r.Splits) != 3 {
		t.Fatalf("%d split probes, want 3", len(r.Splits))
	}
	for _, s := range r.Splits {
		if s.Err != nil {
			t.Errorf("split %s: %v", s.Mode, s.Err)
		}
	}
}

func TestProbeOpenSSL(t *testing.T) {
	srv := startOpenSSL(t, "mldsa65", opensslGroups("MLKEM768", "X25519MLKEM768"))
	r, err := Probe(testContext(t), srv.addr, ProbeConfig{ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	st := groupStatus(r)
	for _, g := range []tls.CurveID{pqtls.GroupMLKEM768, tls.X25519MLKEM768} {
		if !st[g].Direct || !st[g].ViaHRR {
			t.Errorf("%s: %+v, want direct and via HRR", pqtls.GroupName(g), st[g])
		}
	}
	for _, g := range []tls.CurveID{tls.X25519, pqtls.GroupMLKEM512, tls.SecP256r1MLKEM768} {
		if st[g].Accepted() {
			t.Errorf("%s accepted by a server configured without it", pqtls.GroupName(g))
		}
	}
	if len(r.Preference) != 2 {
		t.Errorf("preference %v, want both configured groups", r.Preference)
	}
	if c := certByName(r, "mldsa65"); c.Err != nil || pqtls.KeyAlgorithm(c.Result.Certificates[0].PublicKey) != "ML-DSA-65" {
		t.Errorf("mldsa65: %+v", c)
	}
	if c := certByName(r, "ECDSA"); c.Err == nil {
		t.Errorf("ECDSA list accepted by an ML-DSA-65-only server")
	}
	for _, s := range r.Splits {
		if s.Err != nil {
			t.Errorf("split %s: %v", s.Mode, s.Err)
		}
	}
}
