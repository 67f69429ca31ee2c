package pqtls

import (
	"crypto/tls"
	"slices"
)

// Client families Family returns.
const (
	FamilyChromium    = "chromium"     // Chrome, Edge, Chromium and other BoringSSL browsers with ALPS
	FamilyFirefox     = "firefox"      // Firefox and other NSS clients
	FamilySafari      = "safari"       // Safari and Apple's network stack
	FamilyCurlOpenSSL = "curl-openssl" // OpenSSL libssl clients: curl, wget, openssl s_client...
	FamilyGo          = "go"           // Go crypto/tls
	// FamilyPQEdge is pqedge's own probe and bench traffic (package
	// pqtls/leanclient), counted apart so that it does not pass for
	// visitors in adoption numbers and failure alerts.
	FamilyPQEdge = "pqedge"
	FamilyOther  = "other"
)

// ALPNPQEdge is the ALPN id pqedge's own QUIC probes and benchmarks
// (package pqtls/quicclient) offer after "h3". Their ClientHello is
// crypto/tls's, whose shape they cannot change, so they say who they are
// the way a User-Agent does; a server ignores ids it does not know (RFC
// 7301 Section 3.2), and Family reads it as FamilyPQEdge.
const ALPNPQEdge = "x-pqedge-probe"

// extCookie is the cookie extension (RFC 8446 Section 4.2.2).
const extCookie uint16 = 44

// pqedgeExtensions is the order in which pqtls/leanclient writes its
// extensions; it sends no other, and those in brackets only sometimes:
// [server_name] supported_groups signature_algorithms
// [signature_algorithms_cert] [alpn] supported_versions [cookie] key_share
// [psk_key_exchange_modes] [pre_shared_key]. leanclient's TestFamilyOfLeanClient keeps the two in
// step.
var pqedgeExtensions = []struct {
	ext      uint16
	optional bool
}{
	{extServerName, true}, {extSupportedGroups, false}, {extSignatureAlgorithms, false}, {extSignatureAlgorithmsCert, true}, {extALPN, true},
	{extSupportedVersions, false}, {extCookie, true}, {extKeyShare, false}, {extPSKKeyExchangeModes, true},
	{extPreSharedKey, true},
}

// More extension codepoints the family signals use.
const (
	extStatusRequest        uint16 = 5
	extSCT                  uint16 = 18
	extPadding              uint16 = 21
	extEncryptThenMAC       uint16 = 22
	extRecordSizeLimit      uint16 = 28
	extDelegatedCredential  uint16 = 34
	extApplicationSettings  uint16 = 17613 // ALPS, current codepoint
	extApplicationSettingsO uint16 = 17513 // ALPS, the earlier codepoint older Chrome releases send
)

// Family guesses which kind of client sent the ClientHello, from the
// ClientHello alone (not the User-Agent, which the TLS layer never sees). It
// is a heuristic meant for statistics and for explaining a failed handshake,
// not for access control: any client can imitate another's ClientHello.
func (ch *ClientHello) Family() string {
	if ch.isPQEdge() || slices.Contains(ch.ALPN, ALPNPQEdge) {
		// First: the probe lists GREASE groups, which would send it down
		// the browsers' branch.
		return FamilyPQEdge
	}
	if ch.hasGREASE() {
		// GREASE (RFC 8701) comes from BoringSSL (Chromium) and Apple's
		// stack; OpenSSL, NSS and Go do not send it.
		switch {
		case ch.hasExtension(extApplicationSettings) || ch.hasExtension(extApplicationSettingsO):
			// ALPS carries HTTP/2 settings in the handshake; only Chromium
			// sends it.
			return FamilyChromium
		case slices.Contains(ch.CipherSuites, 0xc008) || slices.Contains(ch.CipherSuites, 0x000a):
			// Safari still offers 3DES suites (TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA,
			// TLS_RSA_WITH_3DES_EDE_CBC_SHA), which BoringSSL dropped.
			return FamilySafari
		}
		return FamilyOther
	}
	switch {
	case ch.hasExtension(extApplicationSettings) || ch.hasExtension(extApplicationSettingsO):
		// Chromium over QUIC sends no GREASE in the fields above (its
		// QUIC ClientHello, pqtls/quichello's chromium capture), but ALPS
		// (for h3), which only it sends.
		return FamilyChromium
	case ch.hasExtension(extRecordSizeLimit) && ch.hasExtension(extDelegatedCredential):
		// NSS sends record_size_limit (RFC 8449) and delegated_credential
		// (RFC 9345) by default; the other libraries here do not.
		return FamilyFirefox
	case ch.hasExtension(extEncryptThenMAC) &&
		(ch.offersOpenSSLOnlySignatures() || slices.Equal(ch.ECPointFormats, []uint8{0, 1, 2})):
		// OpenSSL sends encrypt_then_mac (RFC 7366), and either lists
		// ed448, the brainpool TLS 1.3 schemes or rsa_pss_pss_* (which Go,
		// NSS and BoringSSL do not offer) or, when -sigalgs narrowed the
		// list, still offers all three legacy EC point formats.
		return FamilyCurlOpenSSL
	case ch.hasExtension(extSignatureAlgorithmsCert) && ch.hasExtension(extSCT) && ch.hasExtension(extStatusRequest) &&
		!ch.hasExtension(extEncryptThenMAC) && !ch.hasExtension(extPadding) &&
		slices.Equal(ch.ECPointFormats, []uint8{0}):
		// Go crypto/tls always sends signature_algorithms_cert, asks for
		// SCTs and OCSP staples, offers only uncompressed points and never
		// pads or offers encrypt_then_mac.
		return FamilyGo
	}
	return FamilyOther
}

// isPQEdge recognises pqtls/leanclient's ClientHello: exactly its
// extensions in its fixed order, TLS 1.3 alone in supported_versions and
// only TLS 1.3 cipher suites. Every browser and TLS library seen sends
// extensions it does not (ec_point_formats, psk_key_exchange_modes on every
// hello, status_request...) or offers TLS 1.2 too.
func (ch *ClientHello) isPQEdge() bool {
	if len(ch.SupportedVersions) != 1 || ch.SupportedVersions[0] != tls.VersionTLS13 || len(ch.CipherSuites) == 0 {
		return false
	}
	for _, c := range ch.CipherSuites {
		if c < tls.TLS_AES_128_GCM_SHA256 || c > tls.TLS_CHACHA20_POLY1305_SHA256 {
			return false
		}
	}
	i := 0
	for _, want := range pqedgeExtensions {
		switch {
		case i < len(ch.Extensions) && ch.Extensions[i] == want.ext:
			i++
		case !want.optional:
			return false
		}
	}
	return i == len(ch.Extensions)
}

func (ch *ClientHello) hasExtension(t uint16) bool { return slices.Contains(ch.Extensions, t) }

// hasGREASE reports GREASE in the cipher suites, extensions or groups.
func (ch *ClientHello) hasGREASE() bool {
	for _, v := range ch.CipherSuites {
		if IsGREASE(v) {
			return true
		}
	}
	for _, v := range ch.Extensions {
		if IsGREASE(v) {
			return true
		}
	}
	for _, g := range ch.Groups {
		if IsGREASE(uint16(g)) {
			return true
		}
	}
	return false
}

func (ch *ClientHello) offersOpenSSLOnlySignatures() bool {
	for _, s := range ch.SignatureAlgorithms {
		switch s {
		case sigEd448, sigBrainpool256, sigBrainpool384, sigBrainpool512, sigRSAPSSPSSSHA256, sigRSAPSSPSSSHA384, sigRSAPSSPSSSHA512:
			return true
		}
	}
	return false
}
