package pqtls

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// JA4 returns the JA4 fingerprint of the ClientHello as FoxIO's JA4
// specification defines it (technical_details/JA4.md in FoxIO-LLC/ja4),
// e.g. "t13d1516h2_8daaf6152771_e5627efa2ab1":
//
//	a: the transport ("t" for TCP, "q" for QUIC, from Wire.Transport), the version, "d" with SNI or "i" without, the cipher and
//	   extension counts, the first and last characters of the first ALPN
//	b: the first 12 hex digits of sha256 of the sorted cipher suites
//	c: the same of the sorted extensions (minus SNI and ALPN), "_", and the
//	   signature algorithms in the order sent
//
// GREASE values are ignored everywhere (RFC 8701).
func (ch *ClientHello) JA4() string {
	ciphers, exts, sigs := ch.ja4Lists()
	return ch.ja4a() + "_" + ja4Hash(ciphers) + "_" + ja4ExtensionHash(exts, sigs)
}

// JA4R returns JA4_r, the raw form of JA4: the same "a" part, then the
// sorted lists themselves instead of their hashes.
func (ch *ClientHello) JA4R() string {
	ciphers, exts, sigs := ch.ja4Lists()
	r := ch.ja4a() + "_" + ciphers + "_" + exts
	if sigs != "" {
		r += "_" + sigs
	}
	return r
}

// ja4a is the unhashed first part of JA4.
func (ch *ClientHello) ja4a() string {
	var b strings.Builder
	// The spec's first character is the transport: "t" TCP, "q" QUIC,
	// "d" DTLS (which pqedge does not serve).
	if ch.Wire.Transport == TransportQUIC {
		b.WriteByte('q')
	} else {
		b.WriteByte('t')
	}
	b.WriteString(ja4Version(ch.ja4VersionNumber()))
	if slices.Contains(ch.Extensions, extServerName) {
		b.WriteByte('d')
	} else {
		b.WriteByte('i')
	}
	fmt.Fprintf(&b, "%02d%02d", min(countNonGREASE(ch.CipherSuites), 99), min(countNonGREASE(ch.Extensions), 99))
	b.WriteString(ja4ALPN(ch.ALPN))
	return b.String()
}

// ja4VersionNumber is the highest non-GREASE supported_versions entry, or
// legacy_version when the extension is absent.
func (ch *ClientHello) ja4VersionNumber() uint16 {
	if !slices.Contains(ch.Extensions, extSupportedVersions) {
		return ch.LegacyVersion
	}
	var highest uint16
	for _, v := range ch.SupportedVersions {
		if !IsGREASE(v) && v > highest {
			highest = v
		}
	}
	return highest
}

func ja4Version(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	}
	return "00"
}

// ja4ALPN is the first and last character of the first ALPN value, or of
// its hex form when either end is not an ASCII letter or digit; "00" without
// ALPN.
func ja4ALPN(alpn []string) string {
	if len(alpn) == 0 || alpn[0] == "" {
		return "00"
	}
	p := alpn[0]
	if !isAlnum(p[0]) || !isAlnum(p[len(p)-1]) {
		p = hex.EncodeToString([]byte(p))
	}
	return string([]byte{p[0], p[len(p)-1]})
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// ja4Lists returns the three comma-separated hex lists JA4 hashes: sorted
// ciphers, sorted extensions without SNI and ALPN, signature algorithms in
// the order sent.
func (ch *ClientHello) ja4Lists() (ciphers, exts, sigs string) {
	var c, e, s []uint16
	for _, v := range ch.CipherSuites {
		if !IsGREASE(v) {
			c = append(c, v)
		}
	}
	for _, v := range ch.Extensions {
		if !IsGREASE(v) && v != extServerName && v != extALPN {
			e = append(e, v)
		}
	}
	for _, v := range ch.SignatureAlgorithms {
		if !IsGREASE(uint16(v)) {
			s = append(s, uint16(v))
		}
	}
	slices.Sort(c)
	slices.Sort(e)
	return hexList(c), hexList(e), hexList(s)
}

// hexList joins vs as 4-digit lower-case hex with commas ("1301,1302").
func hexList(vs []uint16) string {
	b := make([]byte, 0, 5*len(vs))
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = hex.AppendEncode(b, []byte{byte(v >> 8), byte(v)})
	}
	return string(b)
}

// ja4Hash is the first 12 hex digits of sha256(s), or twelve zeros for an
// empty list (the spec's marker for "no values").
func ja4Hash(s string) string {
	if s == "" {
		return "000000000000"
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

func ja4ExtensionHash(exts, sigs string) string {
	if exts == "" {
		return "000000000000"
	}
	if sigs != "" {
		exts += "_" + sigs
	}
	return ja4Hash(exts)
}

func countNonGREASE(vs []uint16) int {
	n := 0
	for _, v := range vs {
		if !IsGREASE(v) {
			n++
		}
	}
	return n
}
