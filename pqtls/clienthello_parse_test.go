package pqtls

import (
	"bytes"
	"crypto/tls"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// parseCaptures parses every capture of testdata/clienthello.
func parseCaptures(t testing.TB) map[string]*ClientHello {
	t.Helper()
	out := map[string]*ClientHello{}
	for _, e := range readCaptureIndex(t) {
		ch, err := ParseClientHelloRecords(readCapture(t, e.Name))
		if err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		out[e.Name] = ch
	}
	return out
}

func keyShareSize(ch *ClientHello, g tls.CurveID) int {
	for _, ks := range ch.KeyShares {
		if ks.Group == g {
			return ks.Size
		}
	}
	return 0
}

func offersMLDSA(ch *ClientHello) bool {
	return slices.ContainsFunc(ch.SignatureAlgorithms, IsPostQuantumSignature)
}

// TestParseCaptures asserts, for each real client, what an operator reading
// pqedge's handshake insight would check.
func TestParseCaptures(t *testing.T) {
	hellos := parseCaptures(t)
	tests := []struct {
		name  string
		check func(t *testing.T, ch *ClientHello)
	}{
		{"chromium", func(t *testing.T, ch *ClientHello) {
			if got := keyShareSize(ch, tls.X25519MLKEM768); got != 1216 {
				t.Errorf("X25519MLKEM768 key share = %d bytes, want 1216", got)
			}
			if !slices.ContainsFunc(ch.CipherSuites, IsGREASE) || !slices.ContainsFunc(ch.Extensions, IsGREASE) {
				t.Errorf("no GREASE in cipher suites %x or extensions %v", ch.CipherSuites, ch.Extensions)
			}
			if !IsGREASE(uint16(ch.Groups[0])) || ch.Groups[1] != tls.X25519MLKEM768 {
				t.Errorf("groups start %v, want GREASE then X25519MLKEM768", ch.Groups[:2])
			}
			if !offersMLDSA(ch) {
				t.Errorf("Chromium offers no ML-DSA: %v", ch.SignatureAlgorithms)
			}
			if !ch.HasECH {
				t.Error("no encrypted_client_hello (Chromium sends GREASE ECH)")
			}
			if ch.ServerName != "localhost" || ch.ALPN[0] != "h2" {
				t.Errorf("SNI %q ALPN %v, want localhost and h2 first", ch.ServerName, ch.ALPN)
			}
		}},
		{"firefox", func(t *testing.T, ch *ClientHello) {
			if offersMLDSA(ch) {
				t.Errorf("Firefox offers ML-DSA: %v", ch.SignatureAlgorithms)
			}
			if got := keyShareSize(ch, tls.X25519MLKEM768); got != 1216 {
				t.Errorf("X25519MLKEM768 key share = %d bytes, want 1216", got)
			}
			if !slices.Contains(ch.Groups, groupFFDHE2048) {
				t.Errorf("groups %v lack ffdhe2048", ch.Groups)
			}
			if ch.hasGREASE() {
				t.Error("Firefox sent GREASE")
			}
		}},
		{"openssl-mlkem1024", func(t *testing.T, ch *ClientHello) {
			if len(ch.KeyShares) != 1 || ch.KeyShares[0] != (KeyShare{Group: tls.MLKEM1024, Size: 1568}) {
				t.Errorf("key shares %v, want one MLKEM1024 share of 1568 bytes", ch.KeyShares)
			}
		}},
		{"openssl-secp384r1mlkem1024", func(t *testing.T, ch *ClientHello) {
			if got := keyShareSize(ch, tls.SecP384r1MLKEM1024); got != 1665 {
				t.Errorf("SecP384r1MLKEM1024 key share = %d, want 1665", got)
			}
		}},
		{"openssl-secp256r1mlkem768", func(t *testing.T, ch *ClientHello) {
			if got := keyShareSize(ch, tls.SecP256r1MLKEM768); got != 1249 {
				t.Errorf("SecP256r1MLKEM768 key share = %d, want 1249", got)
			}
		}},
		{"openssl-x25519mlkem768", func(t *testing.T, ch *ClientHello) {
			if !slices.Equal(ch.Groups, []tls.CurveID{tls.X25519MLKEM768}) {
				t.Errorf("groups %v, want only X25519MLKEM768", ch.Groups)
			}
		}},
		{"openssl-mldsa44", func(t *testing.T, ch *ClientHello) {
			if !slices.Equal(ch.SignatureAlgorithms, []tls.SignatureScheme{tls.MLDSA44}) {
				t.Errorf("signature_algorithms %v, want [mldsa44]", ch.SignatureAlgorithms)
			}
		}},
		{"openssl", func(t *testing.T, ch *ClientHello) {
			if ch.Groups[0] != tls.X25519MLKEM768 || keyShareSize(ch, tls.X25519MLKEM768) != 1216 {
				t.Errorf("OpenSSL 3.5 default groups %v shares %v, want X25519MLKEM768 first with a 1216-byte share", ch.Groups, ch.KeyShares)
			}
			if len(ch.ALPN) != 0 {
				t.Errorf("s_client sent ALPN %v without -alpn", ch.ALPN)
			}
		}},
		{"curl-trixie", func(t *testing.T, ch *ClientHello) {
			if !slices.ContainsFunc(ch.Groups, IsPostQuantumGroup) {
				t.Errorf("curl 8.14 with OpenSSL 3.5 offers no post-quantum group: %v", ch.Groups)
			}
		}},
		{"curl-host", func(t *testing.T, ch *ClientHello) {
			if slices.ContainsFunc(ch.Groups, IsPostQuantumGroup) || offersMLDSA(ch) {
				t.Errorf("OpenSSL 3.0 curl offers post-quantum: groups %v", ch.Groups)
			}
			if !slices.Contains(ch.SupportedVersions, tls.VersionTLS10) {
				t.Errorf("supported_versions %x, OpenSSL 3.0 offers TLS 1.0 too", ch.SupportedVersions)
			}
			if !ch.hasExtension(extPadding) || len(ch.Raw) != 512 {
				t.Errorf("OpenSSL pads its ClientHello to 512 bytes; got %d bytes, extensions %v", len(ch.Raw), ch.Extensions)
			}
		}},
		{"go", func(t *testing.T, ch *ClientHello) {
			want := []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}
			if !slices.Equal(ch.Groups, want) {
				t.Errorf("groups %v, want %v", ch.Groups, want)
			}
			if ch.SignatureAlgorithms[0] != tls.MLDSA44 {
				t.Errorf("Go 1.27 lists %v first, want mldsa44", ch.SignatureAlgorithms[0])
			}
			if len(ch.SignatureAlgorithmsCert) == 0 {
				t.Error("no signature_algorithms_cert")
			}
		}},
		{"go-split", func(t *testing.T, ch *ClientHello) {
			if ch.Wire.Records < 2 {
				t.Errorf("split capture spans %d records, want several", ch.Wire.Records)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, ok := hellos[tt.name]
			if !ok {
				t.Fatalf("no capture %s.bin: run the -update test", tt.name)
			}
			tt.check(t, ch)
		})
	}

	// Every capture: the message reparses alone to the same fields, every
	// key share has the size its group defines, and index.json agrees.
	for _, e := range readCaptureIndex(t) {
		t.Run("all/"+e.Name, func(t *testing.T) {
			ch := hellos[e.Name]
			again, err := ParseClientHello(ch.Raw)
			if err != nil {
				t.Fatal(err)
			}
			again.Wire = ch.Wire
			if !equalHello(ch, again) {
				t.Errorf("parsing Raw alone gives %+v, records gave %+v", again, ch)
			}
			for _, ks := range ch.KeyShares {
				if g, ok := LookupGroup(ks.Group); ok && g.ClientShare != ks.Size {
					t.Errorf("%s key share is %d bytes, defaults.go says %d", g.Name, ks.Size, g.ClientShare)
				}
			}
			if ch.Wire.Size != e.Wire.Size || ch.Wire.Records != e.Wire.Records {
				t.Errorf("wire %+v, index.json says %+v", ch.Wire, e.Wire)
			}
			if ch.ServerName != "localhost" {
				t.Errorf("SNI %q, every client was pointed at localhost", ch.ServerName)
			}
		})
	}
	if e := indexEntry(t, "go-split"); e.Wire.Reads < 2 || e.Wire.Records < 2 {
		t.Errorf("split capture recorded %+v, want several records and reads", e.Wire)
	}
}

func indexEntry(t *testing.T, name string) captureEntry {
	for _, e := range readCaptureIndex(t) {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no %s in index.json", name)
	return captureEntry{}
}

func equalHello(a, b *ClientHello) bool {
	return bytes.Equal(a.Raw, b.Raw) && a.LegacyVersion == b.LegacyVersion &&
		slices.Equal(a.SupportedVersions, b.SupportedVersions) && slices.Equal(a.CipherSuites, b.CipherSuites) &&
		slices.Equal(a.CompressionMethods, b.CompressionMethods) && slices.Equal(a.Extensions, b.Extensions) &&
		a.ServerName == b.ServerName && slices.Equal(a.ALPN, b.ALPN) && slices.Equal(a.Groups, b.Groups) &&
		slices.Equal(a.KeyShares, b.KeyShares) && slices.Equal(a.SignatureAlgorithms, b.SignatureAlgorithms) &&
		slices.Equal(a.SignatureAlgorithmsCert, b.SignatureAlgorithmsCert) &&
		slices.EqualFunc(a.CertificateAuthorities, b.CertificateAuthorities, bytes.Equal) &&
		slices.Equal(a.PSKModes, b.PSKModes) && slices.Equal(a.ECPointFormats, b.ECPointFormats) &&
		a.HasPreSharedKey == b.HasPreSharedKey && a.HasEarlyData == b.HasEarlyData && a.HasECH == b.HasECH &&
		a.Wire == b.Wire
}

// helloExt is one extension for buildHello.
type helloExt struct {
	typ  uint16
	data []byte
}

// buildHello builds a ClientHello handshake message with the given
// extensions (nil: no extensions block at all).
func buildHello(exts []helloExt) []byte {
	var b cryptobyte.Builder
	b.AddUint8(handshakeTypeClientHello)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(tls.VersionTLS12)
		b.AddBytes(make([]byte, 32))
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 32)) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x1301); b.AddUint16(0x0a0a) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
		if exts != nil {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, e := range exts {
					b.AddUint16(e.typ)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.data) })
				}
			})
		}
	})
	return b.BytesOrPanic()
}

// withExtensionsBlock returns a hello without extensions followed by raw
// bytes where the extensions block goes.
func withExtensionsBlock(raw []byte) []byte {
	return fixLength(append(buildHello(nil), raw...))
}

// withSessionID returns a hello whose legacy_session_id has n bytes.
func withSessionID(n int) []byte {
	msg := buildHello(nil)
	sid := append([]byte{byte(n)}, make([]byte, n)...)
	return fixLength(slices.Concat(msg[:38], sid, msg[38+33:]))
}

// withCompression returns a hello whose compression methods are methods.
func withCompression(methods []byte) []byte {
	msg := buildHello(nil)
	return fixLength(slices.Concat(msg[:77], []byte{byte(len(methods))}, methods))
}

func fixLength(msg []byte) []byte {
	l := len(msg) - 4
	msg[1], msg[2], msg[3] = byte(l>>16), byte(l>>8), byte(l)
	return msg
}

// u16list is a uint16-length-prefixed vector of uint16 values.
func u16list(vs ...uint16) []byte {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, v := range vs {
			b.AddUint16(v)
		}
	})
	return b.BytesOrPanic()
}

// frameRecords frames msg into TLS records of at most size payload bytes.
func frameRecords(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestParseClientHelloFields(t *testing.T) {
	ca := []byte{0x30, 0x03, 0x31, 0x01, 0x00}
	var caList cryptobyte.Builder
	caList.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(ca) })
	})
	msg := buildHello([]helloExt{
		{0x0a0a, nil},
		{extServerName, []byte{0, 8, 0, 0, 5, 'a', '.', 'e', 'x', 'm'}},
		{extALPN, []byte{0, 3, 2, 'h', '2'}},
		{extSupportedGroups, u16list(0x2a2a, uint16(tls.X25519MLKEM768))},
		{extKeyShare, []byte{0, 10, 0x2a, 0x2a, 0, 1, 0, 0x11, 0xec, 0, 1, 7}},
		{extSignatureAlgorithms, u16list(uint16(tls.MLDSA65))},
		{extSignatureAlgorithmsCert, u16list(uint16(tls.ECDSAWithP256AndSHA256))},
		{extCertificateAuthorities, caList.BytesOrPanic()},
		{extPSKKeyExchangeModes, []byte{1, 1}},
		{extECPointFormats, []byte{1, 0}},
		{extSupportedVersions, []byte{4, 0x3a, 0x3a, 3, 4}},
		{extEarlyData, nil},
		{extEncryptedClientHello, []byte{1}},
		{extPreSharedKey, append([]byte{0, 7, 0, 1, 'x', 0, 0, 0, 0, 0, 33, 32}, make([]byte, 32)...)},
	})
	ch, err := ParseClientHello(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := &ClientHello{
		Raw: msg, LegacyVersion: tls.VersionTLS12, SupportedVersions: []uint16{0x3a3a, tls.VersionTLS13},
		CipherSuites: []uint16{0x1301, 0x0a0a}, CompressionMethods: []uint8{0},
		Extensions: []uint16{0x0a0a, 0, 16, 10, 51, 13, 50, 47, 45, 11, 43, 42, 0xfe0d, 41},
		ServerName: "a.exm", ALPN: []string{"h2"}, Groups: []tls.CurveID{0x2a2a, tls.X25519MLKEM768},
		KeyShares:           []KeyShare{{0x2a2a, 1}, {tls.X25519MLKEM768, 1}},
		SignatureAlgorithms: []tls.SignatureScheme{tls.MLDSA65}, SignatureAlgorithmsCert: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		CertificateAuthorities: [][]byte{ca}, PSKModes: []uint8{1}, ECPointFormats: []uint8{0},
		HasPreSharedKey: true, HasEarlyData: true, HasECH: true,
	}
	if !equalHello(ch, want) {
		t.Errorf("got  %+v\nwant %+v", ch, want)
	}

	noExts, err := ParseClientHello(buildHello(nil))
	if err != nil || len(noExts.Extensions) != 0 {
		t.Errorf("hello without extensions block: %v, %v", noExts, err)
	}
}

func TestParseClientHelloErrors(t *testing.T) {
	good := buildHello([]helloExt{{extServerName, []byte{0, 4, 0, 0, 1, 'a'}}})
	tests := []struct {
		name string
		msg  []byte
		want string // substring of the error
	}{
		{"empty", nil, "shorter than the 4-byte handshake header"},
		{"server hello", append([]byte{2}, good[1:]...), "handshake type 2 is not client_hello"},
		{"length too long", good[:len(good)-1], "exceeds the"},
		{"trailing byte", append(slices.Clone(good), 0), "1 trailing bytes after the"},
		{"duplicate extension", buildHello([]helloExt{{extEarlyData, nil}, {extEarlyData, nil}}), "early_data (42) at byte"},
		{"duplicate GREASE extension", buildHello([]helloExt{{0x1a1a, nil}, {0x1a1a, nil}}), "GREASE (0x1a1a) at byte"},
		{"trailing bytes in extension", buildHello([]helloExt{{extEarlyData, []byte{0}}}), "trailing bytes inside the extension"},
		{"empty groups", buildHello([]helloExt{{extSupportedGroups, u16list()}}), "supported_groups (10) at byte 81: empty list"},
		{"odd groups", buildHello([]helloExt{{extSupportedGroups, []byte{0, 3, 0, 29, 0}}}), "not a multiple of 2"},
		{"truncated groups", buildHello([]helloExt{{extSupportedGroups, []byte{0, 4, 0, 29}}}), "list truncated"},
		{"empty signature_algorithms", buildHello([]helloExt{{extSignatureAlgorithms, u16list()}}), "signature_algorithms (13) at byte 81: empty list"},
		{"odd signature_algorithms", buildHello([]helloExt{{extSignatureAlgorithms, []byte{0, 3, 4, 3, 8}}}), "signature_algorithms (13) at byte 81: list length is not a multiple of 2"},
		{"truncated signature_algorithms_cert", buildHello([]helloExt{{extSignatureAlgorithmsCert, []byte{0, 4, 4, 3}}}), "signature_algorithms_cert (50) at byte 81: list truncated"},
		{"trailing bytes after groups", buildHello([]helloExt{{extSupportedGroups, append(u16list(29), 0)}}), "supported_groups (10) at byte 81: trailing bytes inside the extension (1 bytes)"},
		{"empty versions", buildHello([]helloExt{{extSupportedVersions, []byte{0}}}), "supported_versions (43) at byte 81: versions: empty list"},
		{"truncated key share", buildHello([]helloExt{{extKeyShare, []byte{0, 5, 0, 29, 0, 2, 1}}}), "key share 0 truncated"},
		{"empty ALPN list", buildHello([]helloExt{{extALPN, []byte{0, 0}}}), "protocol_name_list: empty list"},
		{"empty server_name list", buildHello([]helloExt{{extServerName, []byte{0, 0}}}), "server_name_list: empty list"},
		{"empty host_name", buildHello([]helloExt{{extServerName, []byte{0, 3, 0, 0, 0}}}), "empty host_name"},
		{"empty psk modes", buildHello([]helloExt{{extPSKKeyExchangeModes, []byte{0}}}), "psk_key_exchange_modes (45) at byte 81: empty list"},
		{"short psk binder", buildHello([]helloExt{{extPreSharedKey, []byte{0, 7, 0, 1, 'x', 0, 0, 0, 0, 0, 2, 1, 0}}}), "psk binder 0 is truncated or shorter than 32 bytes"},
		{"empty key_exchange", buildHello([]helloExt{{extKeyShare, []byte{0, 4, 0, 29, 0, 0}}}), "key share 0 (x25519) has an empty key_exchange"},
		{"empty ALPN name", buildHello([]helloExt{{extALPN, []byte{0, 1, 0}}}), "protocol name 0 is empty"},
		{"two host names", buildHello([]helloExt{{extServerName, []byte{0, 8, 0, 0, 1, 'a', 0, 0, 1, 'b'}}}), "name_type 0 appears twice"},
		{"odd versions", buildHello([]helloExt{{extSupportedVersions, []byte{3, 3, 4, 3}}}), "versions: list length"},
		{"empty CA", buildHello([]helloExt{{extCertificateAuthorities, []byte{0, 2, 0, 0}}}), "distinguished name 0 is empty"},
		{"psk binder missing", buildHello([]helloExt{{extPreSharedKey, []byte{0, 7, 0, 1, 'x', 0, 0, 0, 0, 0, 0}}}), "1 psk identities but 0 binders"},
		{"extension header truncated", withExtensionsBlock([]byte{0, 3, 0, 1, 0}), "extension at byte 81 is truncated"},
		{"extensions block truncated", withExtensionsBlock([]byte{0, 9, 0, 1, 0}), "extensions block at byte 79 is truncated"},
		{"bytes after extensions", withExtensionsBlock([]byte{0, 0, 7}), "1 trailing bytes after the extensions block"},
		{"long session id", withSessionID(33), "legacy_session_id of 33 bytes"},
		{"no compression", withCompression(nil), "legacy_compression_methods at byte 77 is truncated or empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.msg
			_, err := ParseClientHello(msg)
			if err == nil {
				t.Fatalf("no error for %x", msg)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "failed to parse ClientHello: ") {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}

	// Any truncation of a real hello, with its length fixed up so that only
	// the inner vectors are short, must fail cleanly.
	chromium := parseCaptures(t)["chromium"].Raw
	for n := 4; n < len(chromium); n++ {
		ch, err := ParseClientHello(fixLength(slices.Clone(chromium[:n])))
		// Cut right before the extensions block, it is a valid TLS 1.2
		// style hello without extensions.
		if err == nil && len(ch.Extensions) != 0 {
			t.Fatalf("truncation to %d of %d bytes parsed", n, len(chromium))
		}
	}
}

func TestParseClientHelloRecords(t *testing.T) {
	msg := parseCaptures(t)["chromium"].Raw
	tests := []struct {
		name    string
		in      []byte
		records int
		want    string // error substring; "" for success
	}{
		{"one record", frameRecords(msg, 1<<14), 1, ""},
		{"many records", frameRecords(msg, 100), (len(msg) + 99) / 100, ""},
		{"one-byte records", frameRecords(msg, 1), len(msg), ""},
		{"alert", append([]byte{21, 3, 3, 0, 2, 2, 40}, frameRecords(msg, 1<<14)...), 0, "content type 21, not handshake"},
		{"zero-length record", append([]byte{22, 3, 1, 0, 0}, frameRecords(msg, 1<<14)...), 0, "has length 0"},
		{"record too long", []byte{22, 3, 1, 0x40, 1}, 0, "has length 16385"},
		{"truncated", frameRecords(msg, 1<<14)[:100], 0, "truncated: record 0"},
		{"truncated message", frameRecords(msg[:100], 1<<14), 0, "truncated: 100 of"},
		{"short header", []byte{22, 3}, 0, "less than a record header"},
		{"record after", append(frameRecords(msg, 1<<14), 20, 3, 3, 0, 1, 1), 0, "6 bytes after the record"},
		{"handshake bytes after", frameRecords(append(slices.Clone(msg), 20), 1<<14), 0, "1 handshake bytes after the ClientHello"},
		{"not client hello", frameRecords(append([]byte{2}, msg[1:]...), 1<<14), 0, "type 2, not client_hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := ParseClientHelloRecords(tt.in)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ch.Raw, msg) || ch.Wire != (WireShape{Size: len(msg), Records: tt.records}) {
				t.Errorf("wire %+v, want %d records of %d bytes", ch.Wire, tt.records, len(msg))
			}
		})
	}
}

// FuzzParseClientHello checks that the parser never panics and that what
// it accepts it accepts again, with the same fields.
func FuzzParseClientHello(f *testing.F) {
	for _, ch := range parseCaptures(f) {
		f.Add(ch.Raw)
	}
	f.Add(buildHello(nil))
	f.Fuzz(func(t *testing.T, msg []byte) {
		ch, err := ParseClientHello(msg)
		if err != nil {
			return
		}
		again, err := ParseClientHello(slices.Clone(ch.Raw))
		if err != nil || !equalHello(ch, again) {
			t.Fatalf("reparse differs: %v", err)
		}
		_ = ch.JA4() + ch.JA4R() + ch.Family()
	})
}

// FuzzParseClientHelloRecords checks the record layer the same way, and
// that the message it reassembles parses alone.
func FuzzParseClientHelloRecords(f *testing.F) {
	for _, e := range readCaptureIndex(f) {
		f.Add(readCapture(f, e.Name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := ParseClientHelloRecords(b)
		if err != nil {
			return
		}
		if ch.Wire.Records < 1 || ch.Wire.Size != len(ch.Raw) {
			t.Fatalf("wire %+v for %d bytes", ch.Wire, len(ch.Raw))
		}
		if _, err := ParseClientHello(ch.Raw); err != nil {
			t.Fatalf("records parsed but message alone does not: %v", err)
		}
	})
}
