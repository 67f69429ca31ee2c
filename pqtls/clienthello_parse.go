package pqtls

import (
	"crypto/tls"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Wire constants of RFC 8446 the parser needs.
const (
	recordTypeHandshake      = 22      // ContentType handshake (Section 5.1)
	recordHeaderLen          = 5       // type, legacy_record_version, length
	maxRecordPayload         = 1 << 14 // TLSPlaintext.length limit (Section 5.1)
	handshakeTypeClientHello = 1       // HandshakeType client_hello (Section 4)
	handshakeHeaderLen       = 4       // msg_type and uint24 length
)

// Extension codepoints the parser reads (IANA TLS ExtensionType Values).
const (
	extServerName              uint16 = 0
	extSupportedGroups         uint16 = 10
	extECPointFormats          uint16 = 11
	extSignatureAlgorithms     uint16 = 13
	extALPN                    uint16 = 16
	extPreSharedKey            uint16 = 41
	extEarlyData               uint16 = 42
	extSupportedVersions       uint16 = 43
	extPSKKeyExchangeModes     uint16 = 45
	extCertificateAuthorities  uint16 = 47
	extSignatureAlgorithmsCert uint16 = 50
	extKeyShare                uint16 = 51
	extEncryptedClientHello    uint16 = 0xfe0d
)

// ParseClientHello parses one ClientHello handshake message: the msg_type
// byte (1), the 3-byte length and the body of RFC 8446 Section 4.1.2. It is
// strict: every vector length must fit its bounds and its container exactly,
// an extension may appear only once (Section 4.2), and nothing may follow
// the message. Errors say what was wrong and at which byte or extension.
//
// GREASE values (RFC 8701) are kept as sent. The result keeps references into
// msg (Raw, CertificateAuthorities): the caller must not modify msg after.
func ParseClientHello(msg []byte) (*ClientHello, error) {
	ch, err := parseClientHello(msg)
	if err != nil {
		return nil, fmt.Errorf("failed to parse ClientHello: %w", err)
	}
	return ch, nil
}

func parseClientHello(msg []byte) (*ClientHello, error) {
	s := cryptobyte.String(msg)
	var msgType uint8
	var length uint32
	if !s.ReadUint8(&msgType) || !s.ReadUint24(&length) {
		return nil, fmt.Errorf("message of %d bytes is shorter than the 4-byte handshake header", len(msg))
	}
	if msgType != handshakeTypeClientHello {
		return nil, fmt.Errorf("handshake type %d is not client_hello (1)", msgType)
	}
	switch {
	case int(length) > len(s):
		return nil, fmt.Errorf("handshake length %d exceeds the %d bytes present", length, len(s))
	case int(length) < len(s):
		return nil, fmt.Errorf("%d trailing bytes after the %d-byte handshake message", len(s)-int(length), length)
	}

	ch := &ClientHello{Raw: msg}
	body := s
	at := func() int { return len(msg) - len(body) }

	var sessionID, suites, compression cryptobyte.String
	if !body.ReadUint16(&ch.LegacyVersion) || !body.Skip(32) {
		return nil, fmt.Errorf("body truncated in legacy_version or random at byte %d", at())
	}
	if !body.ReadUint8LengthPrefixed(&sessionID) {
		return nil, fmt.Errorf("legacy_session_id truncated at byte %d", at())
	}
	if len(sessionID) > 32 { // opaque legacy_session_id<0..32>
		return nil, fmt.Errorf("legacy_session_id of %d bytes is longer than 32", len(sessionID))
	}
	suitesAt := at()
	if !body.ReadUint16LengthPrefixed(&suites) {
		return nil, fmt.Errorf("cipher_suites truncated at byte %d", suitesAt)
	}
	// CipherSuite cipher_suites<2..2^16-2>
	if len(suites) == 0 || len(suites)%2 != 0 {
		return nil, fmt.Errorf("cipher_suites at byte %d has length %d, want a non-zero even length", suitesAt, len(suites))
	}
	ch.CipherSuites = make([]uint16, 0, len(suites)/2)
	for !suites.Empty() {
		var v uint16
		suites.ReadUint16(&v)
		ch.CipherSuites = append(ch.CipherSuites, v)
	}
	compAt := at()
	if !body.ReadUint8LengthPrefixed(&compression) || len(compression) == 0 {
		return nil, fmt.Errorf("legacy_compression_methods at byte %d is truncated or empty", compAt)
	}
	ch.CompressionMethods = append([]uint8(nil), compression...)

	// Before TLS 1.3 the extensions block could be absent (RFC 5246
	// Section 7.4.1.2); when present it must fill the rest of the body.
	if body.Empty() {
		return ch, nil
	}
	extsAt := at()
	var exts cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&exts) {
		return nil, fmt.Errorf("extensions block at byte %d is truncated", extsAt)
	}
	if !body.Empty() {
		return nil, fmt.Errorf("%d trailing bytes after the extensions block", len(body))
	}
	var seen extensionSet
	for !exts.Empty() {
		extAt := len(msg) - len(exts)
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil, fmt.Errorf("extension at byte %d is truncated", extAt)
		}
		if seen.has(typ) {
			return nil, fmt.Errorf("extension %s at byte %d appears twice", ExtensionName(typ), extAt)
		}
		seen.add(typ)
		ch.Extensions = append(ch.Extensions, typ)
		if err := ch.parseExtension(typ, data); err != nil {
			return nil, fmt.Errorf("extension %s at byte %d: %w", ExtensionName(typ), extAt, err)
		}
	}
	return ch, nil
}

// extensionSet is a bitmap of the 2^16 extension types: duplicate detection
// in linear time whatever the number of extensions a hostile client sends.
type extensionSet [1 << 16 / 64]uint64

func (s *extensionSet) has(t uint16) bool { return s[t/64]&(1<<(t%64)) != 0 }
func (s *extensionSet) add(t uint16)      { s[t/64] |= 1 << (t % 64) }

var (
	errTrailing = errors.New("trailing bytes inside the extension")
	errEmpty    = errors.New("empty list")
	errOdd      = errors.New("list length is not a multiple of 2")
	errTrunc    = errors.New("truncated")
)

// parseExtension reads the extensions pqedge reports. Extensions it does not
// read are only recorded in Extensions.
func (ch *ClientHello) parseExtension(typ uint16, data cryptobyte.String) error {
	var err error
	switch typ {
	case extServerName:
		err = ch.parseServerName(&data)
	case extALPN:
		err = ch.parseALPN(&data)
	case extSupportedGroups:
		ch.Groups, err = readUint16List[tls.CurveID](&data)
	case extKeyShare:
		err = ch.parseKeyShares(&data)
	case extSignatureAlgorithms:
		ch.SignatureAlgorithms, err = readUint16List[tls.SignatureScheme](&data)
	case extSignatureAlgorithmsCert:
		ch.SignatureAlgorithmsCert, err = readUint16List[tls.SignatureScheme](&data)
	case extCertificateAuthorities:
		err = ch.parseCertificateAuthorities(&data)
	case extPSKKeyExchangeModes:
		ch.PSKModes, err = readUint8List(&data)
	case extECPointFormats:
		ch.ECPointFormats, err = readUint8List(&data)
	case extSupportedVersions:
		err = ch.parseSupportedVersions(&data)
	case extPreSharedKey:
		ch.PSKIdentity, err = parsePreSharedKey(&data)
		ch.HasPreSharedKey = true
	case extEarlyData:
		// The ClientHello form of early_data is empty (RFC 8446 Section 4.2.10).
		ch.HasEarlyData = true
	case extEncryptedClientHello:
		// The outer or inner ECH payload is opaque to pqedge; only its
		// presence matters (draft-ietf-tls-esni).
		ch.HasECH = true
		return nil
	default:
		return nil
	}
	if err != nil {
		return err
	}
	if !data.Empty() {
		return fmt.Errorf("%w (%d bytes)", errTrailing, len(data))
	}
	return nil
}

// parseServerName reads server_name (RFC 6066 Section 3): a list of names,
// at most one of each name_type; pqedge keeps the host_name.
func (ch *ClientHello) parseServerName(data *cryptobyte.String) error {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) {
		return fmt.Errorf("server_name_list %w", errTrunc)
	}
	if list.Empty() {
		return fmt.Errorf("server_name_list: %w", errEmpty)
	}
	var types [256]bool
	for !list.Empty() {
		var nameType uint8
		var name cryptobyte.String
		if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) {
			return fmt.Errorf("server name entry %w", errTrunc)
		}
		if types[nameType] {
			return fmt.Errorf("name_type %d appears twice", nameType)
		}
		types[nameType] = true
		if nameType == 0 { // host_name
			if len(name) == 0 {
				return errors.New("empty host_name")
			}
			ch.ServerName = string(name)
		}
	}
	return nil
}

// parseALPN reads application_layer_protocol_negotiation (RFC 7301
// Section 3.1): ProtocolName protocol_name_list<2..2^16-1>, each name
// opaque<1..2^8-1>.
func (ch *ClientHello) parseALPN(data *cryptobyte.String) error {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) {
		return fmt.Errorf("protocol_name_list %w", errTrunc)
	}
	if list.Empty() {
		return fmt.Errorf("protocol_name_list: %w", errEmpty)
	}
	for !list.Empty() {
		var proto cryptobyte.String
		if !list.ReadUint8LengthPrefixed(&proto) {
			return fmt.Errorf("protocol name %d %w", len(ch.ALPN), errTrunc)
		}
		if len(proto) == 0 {
			return fmt.Errorf("protocol name %d is empty", len(ch.ALPN))
		}
		ch.ALPN = append(ch.ALPN, string(proto))
	}
	return nil
}

// parseKeyShares reads key_share (RFC 8446 Section 4.2.8):
// KeyShareEntry client_shares<0..2^16-1>, key_exchange<1..2^16-1>. The list
// may be empty: a client can ask the server to pick with HelloRetryRequest.
func (ch *ClientHello) parseKeyShares(data *cryptobyte.String) error {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) {
		return fmt.Errorf("client_shares %w", errTrunc)
	}
	ch.KeyShares = []KeyShare{} // present, possibly empty
	for !list.Empty() {
		var group uint16
		var key cryptobyte.String
		if !list.ReadUint16(&group) || !list.ReadUint16LengthPrefixed(&key) {
			return fmt.Errorf("key share %d %w", len(ch.KeyShares), errTrunc)
		}
		if len(key) == 0 {
			return fmt.Errorf("key share %d (%s) has an empty key_exchange", len(ch.KeyShares), GroupName(tls.CurveID(group)))
		}
		ch.KeyShares = append(ch.KeyShares, KeyShare{Group: tls.CurveID(group), Size: len(key)})
	}
	return nil
}

// parseCertificateAuthorities reads certificate_authorities (RFC 8446
// Section 4.2.4): DistinguishedName authorities<3..2^16-1>, each
// opaque<1..2^16-1> holding a DER X.501 Name.
func (ch *ClientHello) parseCertificateAuthorities(data *cryptobyte.String) error {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) {
		return fmt.Errorf("authorities %w", errTrunc)
	}
	if list.Empty() {
		return fmt.Errorf("authorities: %w", errEmpty)
	}
	ch.CertificateAuthorities = [][]byte{}
	for !list.Empty() {
		var dn cryptobyte.String
		if !list.ReadUint16LengthPrefixed(&dn) {
			return fmt.Errorf("distinguished name %d %w", len(ch.CertificateAuthorities), errTrunc)
		}
		if len(dn) == 0 {
			return fmt.Errorf("distinguished name %d is empty", len(ch.CertificateAuthorities))
		}
		ch.CertificateAuthorities = append(ch.CertificateAuthorities, dn)
	}
	return nil
}

// parseSupportedVersions reads the ClientHello form of supported_versions
// (RFC 8446 Section 4.2.1): ProtocolVersion versions<2..254>.
func (ch *ClientHello) parseSupportedVersions(data *cryptobyte.String) error {
	var list cryptobyte.String
	if !data.ReadUint8LengthPrefixed(&list) {
		return fmt.Errorf("versions %w", errTrunc)
	}
	if list.Empty() {
		return fmt.Errorf("versions: %w", errEmpty)
	}
	if len(list)%2 != 0 {
		return fmt.Errorf("versions: %w", errOdd)
	}
	ch.SupportedVersions = make([]uint16, 0, len(list)/2)
	for !list.Empty() {
		var v uint16
		list.ReadUint16(&v)
		ch.SupportedVersions = append(ch.SupportedVersions, v)
	}
	return nil
}

// parsePreSharedKey checks the shape of OfferedPsks (RFC 8446
// Section 4.2.11): PskIdentity identities<7..2^16-1>, each identity
// opaque<1..2^16-1> plus a uint32 age; PskBinderEntry binders<33..2^16-1>,
// each opaque<32..255>; one binder per identity. It returns the first
// identity (a sub-slice of data: a session ticket, for crypto/tls servers).
func parsePreSharedKey(data *cryptobyte.String) ([]byte, error) {
	var ids, binders cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&ids) || !data.ReadUint16LengthPrefixed(&binders) {
		return nil, fmt.Errorf("OfferedPsks %w", errTrunc)
	}
	var first []byte
	nIDs, nBinders := 0, 0
	for !ids.Empty() {
		var id cryptobyte.String
		var age uint32
		if !ids.ReadUint16LengthPrefixed(&id) || !ids.ReadUint32(&age) || len(id) == 0 {
			return nil, fmt.Errorf("psk identity %d is truncated or empty", nIDs)
		}
		if nIDs == 0 {
			first = id
		}
		nIDs++
	}
	for !binders.Empty() {
		var b cryptobyte.String
		if !binders.ReadUint8LengthPrefixed(&b) || len(b) < 32 {
			return nil, fmt.Errorf("psk binder %d is truncated or shorter than 32 bytes", nBinders)
		}
		nBinders++
	}
	if nIDs == 0 || nIDs != nBinders {
		return nil, fmt.Errorf("%d psk identities but %d binders", nIDs, nBinders)
	}
	return first, nil
}

// readUint16List reads a uint16-length-prefixed, non-empty list of 2-byte
// codepoints (NamedGroup named_group_list<2..2^16-1>, SignatureScheme
// supported_signature_algorithms<2..2^16-2>) straight into the field's type.
func readUint16List[T ~uint16](data *cryptobyte.String) ([]T, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) {
		return nil, fmt.Errorf("list %w", errTrunc)
	}
	if list.Empty() {
		return nil, errEmpty
	}
	if len(list)%2 != 0 {
		return nil, errOdd
	}
	out := make([]T, 0, len(list)/2)
	for !list.Empty() {
		var v uint16
		list.ReadUint16(&v)
		out = append(out, T(v))
	}
	return out, nil
}

// readUint8List reads a uint8-length-prefixed list of at least one byte.
func readUint8List(data *cryptobyte.String) ([]uint8, error) {
	var list cryptobyte.String
	if !data.ReadUint8LengthPrefixed(&list) {
		return nil, fmt.Errorf("list %w", errTrunc)
	}
	if list.Empty() {
		return nil, errEmpty
	}
	return append([]uint8(nil), list...), nil
}

// ParseClientHelloRecords parses a ClientHello from the raw bytes of the TLS
// records that carry it (content type handshake, RFC 8446 Section 5.1), as
// read from the connection. The message may span several records (a "split
// ClientHello"); b must hold exactly those records, nothing after. The
// returned Wire has Size and Records set (Reads stays 0: bytes alone do not
// tell how they were read).
func ParseClientHelloRecords(b []byte) (*ClientHello, error) {
	var f helloFramer
	done, err := f.scan(b)
	if err != nil {
		return nil, fmt.Errorf("failed to parse ClientHello records: %w", err)
	}
	if !done {
		return nil, fmt.Errorf("failed to parse ClientHello records: %s", f.missing(b))
	}
	if f.end != len(b) {
		return nil, fmt.Errorf("failed to parse ClientHello records: %d bytes after the record that completes the ClientHello", len(b)-f.end)
	}
	ch, err := ParseClientHello(f.message(b))
	if err != nil {
		return nil, err
	}
	ch.Wire = WireShape{Size: len(ch.Raw), Records: f.records}
	return ch, nil
}

// helloFramer walks the TLS records at the start of a connection until they
// carry one complete handshake message. It is incremental: scan may be
// called again with a longer prefix of the same stream, and it resumes at
// the first record it has not yet seen.
type helloFramer struct {
	next    int // offset of the next unread record header
	hsBytes int // handshake payload bytes seen so far
	hdr     [handshakeHeaderLen]byte
	hdrN    int // bytes of hdr filled
	need    int // length of the handshake message, header included; 0 until known
	records int
	end     int // offset just past the completing record; 0 until complete
}

// scan reads the complete records of buf from f.next on. It reports whether
// the ClientHello is complete, or an error if the bytes cannot be one.
func (f *helloFramer) scan(buf []byte) (bool, error) {
	for f.end == 0 {
		if len(buf)-f.next < recordHeaderLen {
			return false, nil
		}
		h := buf[f.next : f.next+recordHeaderLen]
		if h[0] != recordTypeHandshake {
			return false, fmt.Errorf("record %d at byte %d has content type %d, not handshake (22)", f.records, f.next, h[0])
		}
		n := int(h[3])<<8 | int(h[4])
		if n == 0 || n > maxRecordPayload {
			// Zero-length handshake fragments are forbidden (Section 5.1).
			return false, fmt.Errorf("record %d at byte %d has length %d, want 1..%d", f.records, f.next, n, maxRecordPayload)
		}
		if len(buf)-f.next-recordHeaderLen < n {
			return false, nil
		}
		payload := buf[f.next+recordHeaderLen : f.next+recordHeaderLen+n]
		f.hdrN += copy(f.hdr[f.hdrN:], payload)
		f.hsBytes += n
		f.records++
		f.next += recordHeaderLen + n
		if f.hdrN < handshakeHeaderLen {
			continue
		}
		if f.need == 0 {
			if f.hdr[0] != handshakeTypeClientHello {
				return false, fmt.Errorf("first handshake message has type %d, not client_hello (1)", f.hdr[0])
			}
			f.need = handshakeHeaderLen + (int(f.hdr[1])<<16 | int(f.hdr[2])<<8 | int(f.hdr[3]))
		}
		if f.hsBytes > f.need {
			// The client may not send another handshake message before the
			// server's flight (Section 4.1.1 and 5.1 on message boundaries).
			return false, fmt.Errorf("record %d carries %d handshake bytes after the ClientHello", f.records-1, f.hsBytes-f.need)
		}
		if f.hsBytes == f.need {
			f.end = f.next
		}
	}
	return true, nil
}

// missing describes what a scan that did not complete is waiting for.
func (f *helloFramer) missing(buf []byte) string {
	if f.need > 0 {
		return fmt.Sprintf("truncated: %d of %d ClientHello bytes in %d records", f.hsBytes, f.need, f.records)
	}
	if f.records == 0 && len(buf) < recordHeaderLen {
		return fmt.Sprintf("truncated: %d bytes, less than a record header", len(buf))
	}
	return fmt.Sprintf("truncated: record %d at byte %d is incomplete", f.records, f.next)
}

// message returns the handshake message of a completed scan of buf. A
// message in one record is a sub-slice of buf; a split one is copied.
func (f *helloFramer) message(buf []byte) []byte {
	if f.records == 1 {
		return buf[recordHeaderLen:f.end]
	}
	msg := make([]byte, 0, f.need)
	for off := 0; off < f.end; {
		n := int(buf[off+3])<<8 | int(buf[off+4])
		msg = append(msg, buf[off+recordHeaderLen:off+recordHeaderLen+n]...)
		off += recordHeaderLen + n
	}
	return msg
}
