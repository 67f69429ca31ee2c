package pqtls

import (
	"crypto/tls"
	"slices"
	"testing"
)

func TestFamilyCaptures(t *testing.T) {
	hellos := parseCaptures(t)
	want := map[string]string{
		"chromium":                   FamilyChromium,
		"firefox":                    FamilyFirefox,
		"go":                         FamilyGo,
		"go-split":                   FamilyGo,
		"openssl":                    FamilyCurlOpenSSL,
		"openssl-x25519mlkem768":     FamilyCurlOpenSSL,
		"openssl-secp256r1mlkem768":  FamilyCurlOpenSSL,
		"openssl-secp384r1mlkem1024": FamilyCurlOpenSSL,
		"openssl-mlkem1024":          FamilyCurlOpenSSL,
		"curl-trixie":                FamilyCurlOpenSSL,
		"curl-host":                  FamilyCurlOpenSSL,
		// -sigalgs mldsa44 removes the OpenSSL-only schemes; the EC
		// point formats still tell.
		"openssl-mldsa44": FamilyCurlOpenSSL,
	}
	for name, ch := range hellos {
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("capture %s has no expected family in this test", name)
			}
			if got := ch.Family(); got != w {
				t.Errorf("Family() = %s, want %s", got, w)
			}
		})
	}
}

// TestFamilySignals removes or adds one signal at a time from real
// captures and checks the verdict moves accordingly.
func TestFamilySignals(t *testing.T) {
	hellos := parseCaptures(t)
	without := func(ch *ClientHello, exts ...uint16) *ClientHello {
		c := *ch
		c.Extensions = slices.DeleteFunc(slices.Clone(ch.Extensions), func(e uint16) bool { return slices.Contains(exts, e) })
		return &c
	}
	safari := *without(hellos["chromium"], extApplicationSettings)
	safari.CipherSuites = append(slices.Clone(safari.CipherSuites), 0xc008)
	noPointFormats := *without(hellos["openssl-mldsa44"], extECPointFormats)
	noPointFormats.ECPointFormats = nil
	// Chromium over QUIC: no GREASE in suites, extensions or groups, ALPS
	// still there.
	chromiumQUIC := *hellos["chromium"]
	isGREASE := func(v uint16) bool { return IsGREASE(v) }
	chromiumQUIC.CipherSuites = slices.DeleteFunc(slices.Clone(chromiumQUIC.CipherSuites), isGREASE)
	chromiumQUIC.Extensions = slices.DeleteFunc(slices.Clone(chromiumQUIC.Extensions), isGREASE)
	chromiumQUIC.Groups = slices.DeleteFunc(slices.Clone(chromiumQUIC.Groups), func(g tls.CurveID) bool { return IsGREASE(uint16(g)) })
	chromiumQUICNoALPS := *without(&chromiumQUIC, extApplicationSettings, extApplicationSettingsO)
	goQUICProbe := *hellos["go"] // crypto/tls under pqtls/quicclient: its ALPN says who it is
	goQUICProbe.ALPN = []string{"h3", ALPNPQEdge}
	goQUICBrowser := *hellos["go"]
	goQUICBrowser.ALPN = []string{"h3"}
	goPadded := *hellos["go"]
	goPadded.Extensions = append(slices.Clone(goPadded.Extensions), extPadding)
	// The shape of pqtls/leanclient's hello (its own test checks the real
	// ones); each row below changes one thing about it.
	lean := func(change func(ch *ClientHello)) *ClientHello {
		ch := &ClientHello{
			SupportedVersions: []uint16{0x0304},
			CipherSuites:      []uint16{0x1301, 0x1302, 0x1303},
			Extensions:        []uint16{extServerName, extSupportedGroups, extSignatureAlgorithms, extALPN, extSupportedVersions, extKeyShare},
			Groups:            []tls.CurveID{tls.X25519MLKEM768},
		}
		if change != nil {
			change(ch)
		}
		return ch
	}
	tests := []struct {
		name string
		ch   *ClientHello
		want string
	}{
		{"leanclient", lean(nil), FamilyPQEdge},
		{"leanclient, minimal", lean(func(ch *ClientHello) {
			ch.Extensions = []uint16{extSupportedGroups, extSignatureAlgorithms, extSupportedVersions, extKeyShare}
		}), FamilyPQEdge},
		{"leanclient after HelloRetryRequest, resuming", lean(func(ch *ClientHello) {
			ch.Extensions = []uint16{extServerName, extSupportedGroups, extSignatureAlgorithms, extSupportedVersions, extCookie, extKeyShare, extPSKKeyExchangeModes, extPreSharedKey}
		}), FamilyPQEdge},
		{"leanclient probing with a GREASE group", lean(func(ch *ClientHello) { ch.Groups = []tls.CurveID{0x0a0a, tls.X25519} }), FamilyPQEdge},
		{"leanclient shape plus ec_point_formats", lean(func(ch *ClientHello) { ch.Extensions = append(ch.Extensions, extECPointFormats) }), FamilyOther},
		{"leanclient shape offering TLS 1.2", lean(func(ch *ClientHello) { ch.SupportedVersions = []uint16{0x0304, 0x0303} }), FamilyOther},
		{"leanclient shape with a TLS 1.2 suite", lean(func(ch *ClientHello) { ch.CipherSuites = append(ch.CipherSuites, 0xc02b) }), FamilyOther},
		{"leanclient shape, key_share before supported_versions", lean(func(ch *ClientHello) {
			ch.Extensions = []uint16{extSupportedGroups, extSignatureAlgorithms, extKeyShare, extSupportedVersions}
		}), FamilyOther},
		{"leanclient shape without signature_algorithms", lean(func(ch *ClientHello) {
			ch.Extensions = []uint16{extSupportedGroups, extSupportedVersions, extKeyShare}
		}), FamilyOther},
		{"chromium without ALPS", without(hellos["chromium"], extApplicationSettings), FamilyOther},
		{"GREASE, no ALPS, 3DES offered", &safari, FamilySafari},
		{"firefox without delegated_credential", without(hellos["firefox"], extDelegatedCredential), FamilyOther},
		{"openssl without encrypt_then_mac", without(hellos["openssl"], extEncryptThenMAC), FamilyOther},
		{"openssl -sigalgs mldsa44 without point formats", &noPointFormats, FamilyOther},
		{"go without signature_algorithms_cert", without(hellos["go"], extSignatureAlgorithmsCert), FamilyOther},
		{"go with padding", &goPadded, FamilyOther},
		{"go offering pqedge's probe ALPN (quicclient)", &goQUICProbe, FamilyPQEdge},
		{"chromium without GREASE (its QUIC hello)", &chromiumQUIC, FamilyChromium},
		{"chromium without GREASE or ALPS", &chromiumQUICNoALPS, FamilyOther},
		{"go offering h3 alone", &goQUICBrowser, FamilyGo},
		{"empty", &ClientHello{}, FamilyOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ch.Family(); got != tt.want {
				t.Errorf("Family() = %s, want %s", got, tt.want)
			}
		})
	}
}
