package pqtls

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// This file is the only home of group and signature-scheme names, of the
// policy presets and of their order.

// Group codepoints crypto/tls has no constant for. pqedge cannot negotiate
// them as a server, but it names them when a client offers them.
const (
	groupX448                  tls.CurveID = 30
	groupFFDHE2048             tls.CurveID = 256
	groupFFDHE3072             tls.CurveID = 257
	groupFFDHE4096             tls.CurveID = 258
	groupFFDHE6144             tls.CurveID = 259
	groupFFDHE8192             tls.CurveID = 260
	GroupMLKEM512              tls.CurveID = 0x0200
	GroupMLKEM768              tls.CurveID = 0x0201
	GroupX25519Kyber768Draft00 tls.CurveID = 0x6399 // obsolete draft; Chrome 124–130 sent it
)

// GroupInfo describes one NamedGroup of the IANA TLS Supported Groups registry.
type GroupInfo struct {
	ID   tls.CurveID
	Name string // the IANA registry name
	// PostQuantum is true for groups whose shared secret resists a quantum
	// attacker: pure ML-KEM and the hybrids (and the obsolete Kyber draft).
	PostQuantum bool
	// Servable is true when crypto/tls can negotiate the group as a server.
	Servable bool
	// ClientShare and ServerShare are the key_share sizes in bytes
	// (RFC 8446 Section 4.2.8; draft-ietf-tls-ecdhe-mlkem for the hybrids).
	ClientShare, ServerShare int
}

var groups = []GroupInfo{
	{ID: tls.X25519MLKEM768, Name: "X25519MLKEM768", PostQuantum: true, Servable: true, ClientShare: 1216, ServerShare: 1120},
	{ID: tls.SecP256r1MLKEM768, Name: "SecP256r1MLKEM768", PostQuantum: true, Servable: true, ClientShare: 1249, ServerShare: 1153},
	{ID: tls.SecP384r1MLKEM1024, Name: "SecP384r1MLKEM1024", PostQuantum: true, Servable: true, ClientShare: 1665, ServerShare: 1665},
	{ID: GroupMLKEM512, Name: "MLKEM512", PostQuantum: true, ClientShare: 800, ServerShare: 768},
	{ID: GroupMLKEM768, Name: "MLKEM768", PostQuantum: true, ClientShare: 1184, ServerShare: 1088},
	{ID: tls.MLKEM1024, Name: "MLKEM1024", PostQuantum: true, Servable: true, ClientShare: 1568, ServerShare: 1568},
	{ID: GroupX25519Kyber768Draft00, Name: "X25519Kyber768Draft00", PostQuantum: true, ClientShare: 1216, ServerShare: 1120},
	{ID: tls.X25519, Name: "x25519", Servable: true, ClientShare: 32, ServerShare: 32},
	{ID: tls.CurveP256, Name: "secp256r1", Servable: true, ClientShare: 65, ServerShare: 65},
	{ID: tls.CurveP384, Name: "secp384r1", Servable: true, ClientShare: 97, ServerShare: 97},
	{ID: tls.CurveP521, Name: "secp521r1", Servable: true, ClientShare: 133, ServerShare: 133},
	{ID: groupX448, Name: "x448", ClientShare: 56, ServerShare: 56},
	{ID: groupFFDHE2048, Name: "ffdhe2048", ClientShare: 256, ServerShare: 256},
	{ID: groupFFDHE3072, Name: "ffdhe3072", ClientShare: 384, ServerShare: 384},
	{ID: groupFFDHE4096, Name: "ffdhe4096", ClientShare: 512, ServerShare: 512},
	{ID: groupFFDHE6144, Name: "ffdhe6144", ClientShare: 768, ServerShare: 768},
	{ID: groupFFDHE8192, Name: "ffdhe8192", ClientShare: 1024, ServerShare: 1024},
}

// Groups returns every group pqedge knows by name, post-quantum first.
func Groups() []GroupInfo { return slices.Clone(groups) }

// LookupGroup returns what pqedge knows of a group codepoint.
func LookupGroup(id tls.CurveID) (GroupInfo, bool) {
	for _, g := range groups {
		if g.ID == id {
			return g, true
		}
	}
	return GroupInfo{ID: id, Name: GroupName(id)}, false
}

// GroupName returns the IANA name of a group, "GREASE" for a GREASE value
// (RFC 8701) and "0x%04x" for a codepoint pqedge does not know.
func GroupName(id tls.CurveID) string {
	for _, g := range groups {
		if g.ID == id {
			return g.Name
		}
	}
	if IsGREASE(uint16(id)) {
		return "GREASE"
	}
	return fmt.Sprintf("0x%04x", uint16(id))
}

// IsPostQuantumGroup reports whether a group protects the key exchange
// against a quantum attacker (harvest now, decrypt later).
func IsPostQuantumGroup(id tls.CurveID) bool {
	g, ok := LookupGroup(id)
	return ok && g.PostQuantum
}

// ParseGroup turns an IANA group name into its codepoint. Names match
// case-insensitively; the error lists the names a server can use.
func ParseGroup(name string) (tls.CurveID, error) {
	for _, g := range groups {
		if strings.EqualFold(g.Name, name) {
			return g.ID, nil
		}
	}
	return 0, fmt.Errorf("unknown group %q (known: %s)", name, strings.Join(ServableGroupNames(), ", "))
}

// ParseServableGroup is ParseGroup for a group pqedge must be able to serve.
func ParseServableGroup(name string) (tls.CurveID, error) {
	id, err := ParseGroup(name)
	if err != nil {
		return 0, err
	}
	if g, _ := LookupGroup(id); !g.Servable {
		return 0, fmt.Errorf("group %q cannot be served by crypto/tls (servable: %s)", name, strings.Join(ServableGroupNames(), ", "))
	}
	return id, nil
}

// ServableGroupNames lists the groups a pqedge server can negotiate.
func ServableGroupNames() []string {
	var names []string
	for _, g := range groups {
		if g.Servable {
			names = append(names, g.Name)
		}
	}
	return names
}

// IsGREASE reports whether v is one of the reserved GREASE values of
// RFC 8701 Section 2 (0x0A0A, 0x1A1A, ..., 0xFAFA).
func IsGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

// Signature scheme codepoints crypto/tls has no constant for.
const (
	sigRSAPSSPSSSHA256 tls.SignatureScheme = 0x0809
	sigRSAPSSPSSSHA384 tls.SignatureScheme = 0x080a
	sigRSAPSSPSSSHA512 tls.SignatureScheme = 0x080b
	sigEd448           tls.SignatureScheme = 0x0808
	sigBrainpool256    tls.SignatureScheme = 0x081a
	sigBrainpool384    tls.SignatureScheme = 0x081b
	sigBrainpool512    tls.SignatureScheme = 0x081c
	sigRSAPKCS1SHA224  tls.SignatureScheme = 0x0301
	sigECDSASHA224     tls.SignatureScheme = 0x0303
)

// SignatureInfo describes one entry of the IANA TLS SignatureScheme registry.
type SignatureInfo struct {
	ID          tls.SignatureScheme
	Name        string // the IANA registry name
	PostQuantum bool
}

var signatureSchemes = []SignatureInfo{
	{ID: tls.MLDSA44, Name: "mldsa44", PostQuantum: true},
	{ID: tls.MLDSA65, Name: "mldsa65", PostQuantum: true},
	{ID: tls.MLDSA87, Name: "mldsa87", PostQuantum: true},
	{ID: tls.ECDSAWithP256AndSHA256, Name: "ecdsa_secp256r1_sha256"},
	{ID: tls.ECDSAWithP384AndSHA384, Name: "ecdsa_secp384r1_sha384"},
	{ID: tls.ECDSAWithP521AndSHA512, Name: "ecdsa_secp521r1_sha512"},
	{ID: tls.Ed25519, Name: "ed25519"},
	{ID: sigEd448, Name: "ed448"},
	{ID: tls.PSSWithSHA256, Name: "rsa_pss_rsae_sha256"},
	{ID: tls.PSSWithSHA384, Name: "rsa_pss_rsae_sha384"},
	{ID: tls.PSSWithSHA512, Name: "rsa_pss_rsae_sha512"},
	{ID: sigRSAPSSPSSSHA256, Name: "rsa_pss_pss_sha256"},
	{ID: sigRSAPSSPSSSHA384, Name: "rsa_pss_pss_sha384"},
	{ID: sigRSAPSSPSSSHA512, Name: "rsa_pss_pss_sha512"},
	{ID: tls.PKCS1WithSHA256, Name: "rsa_pkcs1_sha256"},
	{ID: tls.PKCS1WithSHA384, Name: "rsa_pkcs1_sha384"},
	{ID: tls.PKCS1WithSHA512, Name: "rsa_pkcs1_sha512"},
	{ID: sigBrainpool256, Name: "ecdsa_brainpoolP256r1tls13_sha256"},
	{ID: sigBrainpool384, Name: "ecdsa_brainpoolP384r1tls13_sha384"},
	{ID: sigBrainpool512, Name: "ecdsa_brainpoolP512r1tls13_sha512"},
	{ID: sigRSAPKCS1SHA224, Name: "rsa_pkcs1_sha224"},
	{ID: sigECDSASHA224, Name: "ecdsa_sha224"},
	{ID: tls.PKCS1WithSHA1, Name: "rsa_pkcs1_sha1"},
	{ID: tls.ECDSAWithSHA1, Name: "ecdsa_sha1"},
}

// SignatureSchemes returns every signature scheme pqedge knows by name.
func SignatureSchemes() []SignatureInfo { return slices.Clone(signatureSchemes) }

// SignatureName returns the IANA name of a signature scheme, "GREASE" for a
// GREASE value and "0x%04x" for a codepoint pqedge does not know.
func SignatureName(s tls.SignatureScheme) string {
	for _, info := range signatureSchemes {
		if info.ID == s {
			return info.Name
		}
	}
	if IsGREASE(uint16(s)) {
		return "GREASE"
	}
	return fmt.Sprintf("0x%04x", uint16(s))
}

// ParseSignatureScheme turns an IANA signature-scheme name into its codepoint.
func ParseSignatureScheme(name string) (tls.SignatureScheme, error) {
	for _, info := range signatureSchemes {
		if strings.EqualFold(info.Name, name) {
			return info.ID, nil
		}
	}
	names := make([]string, 0, len(signatureSchemes))
	for _, info := range signatureSchemes {
		names = append(names, info.Name)
	}
	return 0, fmt.Errorf("unknown signature scheme %q (known: %s)", name, strings.Join(names, ", "))
}

// IsPostQuantumSignature reports whether s is an ML-DSA scheme.
func IsPostQuantumSignature(s tls.SignatureScheme) bool {
	return s == tls.MLDSA44 || s == tls.MLDSA65 || s == tls.MLDSA87
}

// Preset names, as written in the config's tls.policy key.
const (
	PresetPQPreferred = "pq-preferred"
	PresetPQOnly      = "pq-only"
	PresetPQWarn      = "pq-warn"
)

// DefaultPreset is the policy a site gets when its config names none.
const DefaultPreset = PresetPQPreferred

// Preset is a named TLS policy.
type Preset struct {
	Name        string
	Description string
	// Groups in order of preference. crypto/tls ignores the order of
	// CurvePreferences and prefers post-quantum groups itself (leanclient's
	// TestProbeGoServer shows it), so
	// the order is informative: it is what pqedge documents and prints.
	Groups     []tls.CurveID
	MinVersion uint16
	// RequirePQ refuses handshakes that would negotiate a classical group.
	RequirePQ bool
	// WarnClassical serves classical clients but tells them, in a response
	// header and on the inspect page, that their connection is not
	// post-quantum.
	WarnClassical bool
}

var hybridGroups = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024}

var presets = []Preset{
	{
		Name:        PresetPQPreferred,
		Description: "hybrid post-quantum groups first, x25519 and secp256r1 for classical clients",
		Groups:      append(slices.Clone(hybridGroups), tls.X25519, tls.CurveP256),
		MinVersion:  tls.VersionTLS12,
	},
	{
		Name:        PresetPQOnly,
		Description: "hybrid post-quantum groups only, TLS 1.3 only: classical clients fail the handshake",
		Groups:      slices.Clone(hybridGroups),
		MinVersion:  tls.VersionTLS13,
		RequirePQ:   true,
	},
	{
		Name:          PresetPQWarn,
		Description:   "like pq-preferred, but classical clients are told (header, inspect page) and counted",
		Groups:        append(slices.Clone(hybridGroups), tls.X25519, tls.CurveP256),
		MinVersion:    tls.VersionTLS12,
		WarnClassical: true,
	},
}

// LookupPreset returns the preset of that name.
func LookupPreset(name string) (Preset, error) {
	for _, p := range presets {
		if p.Name == name {
			p.Groups = slices.Clone(p.Groups)
			return p, nil
		}
	}
	return Preset{}, fmt.Errorf("unknown policy %q (known: %s)", name, strings.Join(PresetNames(), ", "))
}

// PresetNames lists the preset names, the default first.
func PresetNames() []string {
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.Name
	}
	return names
}

// CipherSuiteName returns the IANA name of a cipher suite, as
// tls.CipherSuiteName does ("0x%04X" for an unknown one). crypto/tls
// builds its whole list of suites on every call of that function (some
// thirty allocations); the names are looked up here in a table made once,
// since the server names the suite of every handshake.
func CipherSuiteName(id uint16) string {
	if name, ok := cipherSuiteNames[id]; ok {
		return name
	}
	return tls.CipherSuiteName(id)
}

// cipherSuiteNames are the names of every suite crypto/tls knows, secure
// or not: a client may offer any of them.
var cipherSuiteNames = func() map[uint16]string {
	m := map[uint16]string{}
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, cs := range list {
			m[cs.ID] = cs.Name
		}
	}
	return m
}()

// VersionName returns "TLS 1.3" style names for TLS versions.
func VersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLS 1.3"
	case tls.VersionTLS12:
		return "TLS 1.2"
	case tls.VersionTLS11:
		return "TLS 1.1"
	case tls.VersionTLS10:
		return "TLS 1.0"
	}
	if IsGREASE(v) {
		return "GREASE"
	}
	return fmt.Sprintf("0x%04x", v)
}

// extensionNames are the IANA TLS ExtensionType names pqedge prints in
// ClientHello insight and parse errors.
var extensionNames = map[uint16]string{
	0: "server_name", 1: "max_fragment_length", 5: "status_request",
	10: "supported_groups", 11: "ec_point_formats", 13: "signature_algorithms",
	14: "use_srtp", 15: "heartbeat", 16: "application_layer_protocol_negotiation",
	18: "signed_certificate_timestamp", 21: "padding", 22: "encrypt_then_mac",
	23: "extended_master_secret", 27: "compress_certificate", 28: "record_size_limit",
	34: "delegated_credential", 35: "session_ticket", 41: "pre_shared_key",
	42: "early_data", 43: "supported_versions", 44: "cookie",
	45: "psk_key_exchange_modes", 47: "certificate_authorities", 48: "oid_filters",
	49: "post_handshake_auth", 50: "signature_algorithms_cert", 51: "key_share",
	57: "quic_transport_parameters", 17513: "application_settings_old",
	17613: "application_settings", 0xfe0d: "encrypted_client_hello",
	0xff01: "renegotiation_info",
}

// ExtensionName returns the IANA name of a TLS extension type followed by
// its codepoint ("key_share (51)"), "GREASE (0x0a0a)" for a GREASE value and
// "0x%04x" for a type pqedge does not know.
func ExtensionName(t uint16) string {
	if name, ok := extensionNames[t]; ok {
		return fmt.Sprintf("%s (%d)", name, t)
	}
	if IsGREASE(t) {
		return fmt.Sprintf("GREASE (0x%04x)", t)
	}
	return fmt.Sprintf("0x%04x", t)
}
