package leanclient

import (
	"bytes"
	"crypto/tls"
	"net"

	"golang.org/x/crypto/cryptobyte"
)

// Handshake message types (RFC 8446 Section 4).
const (
	typeClientHello         = 1
	typeServerHello         = 2
	typeNewSessionTicket    = 4
	typeEncryptedExtensions = 8
	typeCertificate         = 11
	typeCertificateRequest  = 13
	typeCertificateVerify   = 15
	typeFinished            = 20
	typeMessageHash         = 254
)

// Extension types (RFC 8446 Section 4.2).
const (
	extServerName          = 0
	extSupportedGroups     = 10
	extSignatureAlgorithms = 13
	// extSignatureAlgorithmsCert is signature_algorithms_cert (RFC 8446
	// Section 4.2.3).
	extSignatureAlgorithmsCert = 50
	extALPN                    = 16
	extSupportedVersions       = 43
	extCookie                  = 44
	extKeyShare                = 51
)

// helloRetryRandom is the ServerHello.random that marks a
// HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 Section 4.1.3).
var helloRetryRandom = []byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

// clientHello holds what goes into a ClientHello (RFC 8446 Section 4.1.2).
type clientHello struct {
	random     []byte
	sessionID  []byte
	suites     []uint16
	serverName string
	alpn       []string
	groups     []tls.CurveID
	sigalgs    []tls.SignatureScheme
	certAlgs   []tls.SignatureScheme // signature_algorithms_cert; nil: not sent
	shares     []*keyShare
	cookie     []byte
	psk        *pskOffer // nil: no resumption offered
	pskModes   bool      // send psk_key_exchange_modes; true whenever psk is set
}

func addU16Prefixed(b *cryptobyte.Builder, f func(b *cryptobyte.Builder)) {
	b.AddUint16LengthPrefixed(f)
}

// marshal returns the handshake message, header included.
func (ch *clientHello) marshal() []byte {
	var b cryptobyte.Builder
	b.AddUint8(typeClientHello)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(tls.VersionTLS12) // legacy_version
		b.AddBytes(ch.random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(ch.sessionID) })
		addU16Prefixed(b, func(b *cryptobyte.Builder) {
			for _, s := range ch.suites {
				b.AddUint16(s)
			}
		})
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) }) // null compression
		addU16Prefixed(b, func(b *cryptobyte.Builder) { ch.marshalExtensions(b) })
	})
	return b.BytesOrPanic()
}

func (ch *clientHello) marshalExtensions(b *cryptobyte.Builder) {
	// RFC 6066 Section 3: literal IP addresses are not sent as server_name.
	if ch.serverName != "" && net.ParseIP(ch.serverName) == nil {
		b.AddUint16(extServerName)
		addU16Prefixed(b, func(b *cryptobyte.Builder) {
			addU16Prefixed(b, func(b *cryptobyte.Builder) {
				b.AddUint8(0) // host_name
				addU16Prefixed(b, func(b *cryptobyte.Builder) { b.AddBytes([]byte(ch.serverName)) })
			})
		})
	}
	b.AddUint16(extSupportedGroups)
	addU16Prefixed(b, func(b *cryptobyte.Builder) {
		addU16Prefixed(b, func(b *cryptobyte.Builder) {
			for _, g := range ch.groups {
				b.AddUint16(uint16(g))
			}
		})
	})
	b.AddUint16(extSignatureAlgorithms)
	addU16Prefixed(b, func(b *cryptobyte.Builder) {
		addU16Prefixed(b, func(b *cryptobyte.Builder) {
			for _, s := range ch.sigalgs {
				b.AddUint16(uint16(s))
			}
		})
	})
	if len(ch.certAlgs) > 0 {
		b.AddUint16(extSignatureAlgorithmsCert)
		addU16Prefixed(b, func(b *cryptobyte.Builder) {
			addU16Prefixed(b, func(b *cryptobyte.Builder) {
				for _, s := range ch.certAlgs {
					b.AddUint16(uint16(s))
				}
			})
		})
	}
	if len(ch.alpn) > 0 {
		b.AddUint16(extALPN)
		addU16Prefixed(b, func(b *cryptobyte.Builder) {
			addU16Prefixed(b, func(b *cryptobyte.Builder) {
				for _, p := range ch.alpn {
					b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
				}
			})
		})
	}
	b.AddUint16(extSupportedVersions)
	addU16Prefixed(b, func(b *cryptobyte.Builder) {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(tls.VersionTLS13) })
	})
	if len(ch.cookie) > 0 {
		b.AddUint16(extCookie)
		addU16Prefixed(b, func(b *cryptobyte.Builder) {
			addU16Prefixed(b, func(b *cryptobyte.Builder) { b.AddBytes(ch.cookie) })
		})
	}
	b.AddUint16(extKeyShare)
	addU16Prefixed(b, func(b *cryptobyte.Builder) {
		addU16Prefixed(b, func(b *cryptobyte.Builder) {
			for _, ks := range ch.shares {
				b.AddUint16(uint16(ks.group))
				addU16Prefixed(b, func(b *cryptobyte.Builder) { b.AddBytes(ks.share) })
			}
		})
	})
	if ch.pskModes {
		// psk_dhe_ke only: a resumed handshake still runs the key exchange,
		// so it keeps forward secrecy and the group is still measured.
		b.AddUint16(extPSKKeyExchangeModes)
		addU16Prefixed(b, func(b *cryptobyte.Builder) {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(pskModeDHE) })
		})
	}
	if ch.psk != nil {
		ch.psk.marshal(b) // RFC 8446 Section 4.2.11: MUST be the last extension
	}
}

// serverHello is a parsed ServerHello or HelloRetryRequest
// (RFC 8446 Sections 4.1.3 and 4.1.4).
type serverHello struct {
	raw         []byte
	retry       bool // HelloRetryRequest
	sessionID   []byte
	suite       uint16
	version     uint16 // from supported_versions; 0 when absent
	group       tls.CurveID
	share       []byte // ServerHello key_share; nil in a HelloRetryRequest
	cookie      []byte
	hasKeyShare bool
	// hasPSK says the server accepted the offered PSK number pskIdentity
	// (RFC 8446 Section 4.2.11).
	hasPSK      bool
	pskIdentity uint16
}

// parseServerHello parses a whole ServerHello message, header included.
func parseServerHello(msg []byte) (*serverHello, error) {
	const op = "parse ServerHello"
	s := cryptobyte.String(msg)
	var typ uint8
	var body cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeServerHello || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return nil, malformed(op, "not a ServerHello message")
	}
	sh := &serverHello{raw: msg}
	var legacyVersion uint16
	var random []byte
	var compression uint8
	var exts cryptobyte.String
	if !body.ReadUint16(&legacyVersion) || !body.ReadBytes(&random, 32) ||
		!readUint8Bytes(&body, &sh.sessionID) || !body.ReadUint16(&sh.suite) ||
		!body.ReadUint8(&compression) {
		return nil, malformed(op, "truncated ServerHello")
	}
	if legacyVersion != tls.VersionTLS12 {
		return nil, unsupported(op, "server legacy_version 0x%04x (TLS 1.3 servers send 0x0303)", legacyVersion)
	}
	if compression != 0 {
		return nil, malformed(op, "compression method %d", compression)
	}
	sh.retry = bytes.Equal(random, helloRetryRandom)
	if body.Empty() {
		// No extensions at all: a TLS 1.2 or older server.
		return sh, nil
	}
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return nil, malformed(op, "bad extensions block")
	}
	seen := map[uint16]bool{}
	for !exts.Empty() {
		var ext uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil, malformed(op, "truncated extension")
		}
		if seen[ext] {
			return nil, malformed(op, "duplicate extension %d", ext)
		}
		seen[ext] = true
		switch ext {
		case extSupportedVersions:
			if !data.ReadUint16(&sh.version) || !data.Empty() {
				return nil, malformed(op, "bad supported_versions")
			}
		case extKeyShare:
			var g uint16
			if !data.ReadUint16(&g) {
				return nil, malformed(op, "bad key_share")
			}
			sh.group = tls.CurveID(g)
			sh.hasKeyShare = true
			if sh.retry {
				// HelloRetryRequest carries only selected_group (RFC 8446 Section 4.2.8).
				if !data.Empty() {
					return nil, malformed(op, "bad key_share in HelloRetryRequest")
				}
				continue
			}
			var share []byte
			if !readUint16Bytes(&data, &share) || len(share) == 0 || !data.Empty() {
				return nil, malformed(op, "bad key_share")
			}
			sh.share = share
		case extCookie:
			if !readUint16Bytes(&data, &sh.cookie) || len(sh.cookie) == 0 || !data.Empty() {
				return nil, malformed(op, "bad cookie")
			}
		case extPreSharedKey:
			if sh.retry || !data.ReadUint16(&sh.pskIdentity) || !data.Empty() {
				return nil, malformed(op, "bad pre_shared_key")
			}
			sh.hasPSK = true
		}
	}
	return sh, nil
}

func readUint8Bytes(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&v) {
		return false
	}
	*out = []byte(v)
	return true
}

func readUint16Bytes(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) {
		return false
	}
	*out = []byte(v)
	return true
}

// messageBody checks the header of a handshake message and returns its body.
func messageBody(op string, msg []byte, want uint8) (cryptobyte.String, error) {
	s := cryptobyte.String(msg)
	var typ uint8
	var body cryptobyte.String
	if !s.ReadUint8(&typ) || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return nil, malformed(op, "bad handshake message framing")
	}
	if typ != want {
		if typ == typeCertificateRequest {
			return nil, unsupported(op, "server asks for a client certificate")
		}
		return nil, malformed(op, "got handshake message type %d, want %d", typ, want)
	}
	return body, nil
}

// parseEncryptedExtensions returns the ALPN protocol the server selected
// (RFC 8446 Section 4.3.1, RFC 7301 Section 3.1).
func parseEncryptedExtensions(msg []byte) (alpn string, err error) {
	const op = "parse EncryptedExtensions"
	body, err := messageBody(op, msg, typeEncryptedExtensions)
	if err != nil {
		return "", err
	}
	var exts cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return "", malformed(op, "bad extensions block")
	}
	for !exts.Empty() {
		var ext uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&data) {
			return "", malformed(op, "truncated extension")
		}
		if ext == extALPN {
			var list, proto cryptobyte.String
			if !data.ReadUint16LengthPrefixed(&list) || !list.ReadUint8LengthPrefixed(&proto) ||
				len(proto) == 0 || !list.Empty() || !data.Empty() {
				return "", malformed(op, "bad ALPN extension")
			}
			alpn = string(proto)
		}
	}
	return alpn, nil
}

// parseCertificate returns the DER certificates of a Certificate message,
// leaf first (RFC 8446 Section 4.4.2). Per-entry extensions are skipped.
func parseCertificate(msg []byte) ([][]byte, error) {
	const op = "parse Certificate"
	body, err := messageBody(op, msg, typeCertificate)
	if err != nil {
		return nil, err
	}
	var reqCtx, list cryptobyte.String
	if !body.ReadUint8LengthPrefixed(&reqCtx) || !body.ReadUint24LengthPrefixed(&list) || !body.Empty() {
		return nil, malformed(op, "bad Certificate message")
	}
	if len(reqCtx) != 0 {
		return nil, malformed(op, "non-empty certificate_request_context from a server")
	}
	var certs [][]byte
	for !list.Empty() {
		var cert, exts cryptobyte.String
		if !list.ReadUint24LengthPrefixed(&cert) || len(cert) == 0 || !list.ReadUint16LengthPrefixed(&exts) {
			return nil, malformed(op, "bad CertificateEntry")
		}
		certs = append(certs, []byte(cert))
	}
	if len(certs) == 0 {
		return nil, malformed(op, "server sent no certificate")
	}
	return certs, nil
}

// parseCertificateVerify returns the scheme and signature of a
// CertificateVerify message (RFC 8446 Section 4.4.3).
func parseCertificateVerify(msg []byte) (tls.SignatureScheme, []byte, error) {
	const op = "parse CertificateVerify"
	body, err := messageBody(op, msg, typeCertificateVerify)
	if err != nil {
		return 0, nil, err
	}
	var scheme uint16
	var sig []byte
	if !body.ReadUint16(&scheme) || !readUint16Bytes(&body, &sig) || len(sig) == 0 || !body.Empty() {
		return 0, nil, malformed(op, "bad CertificateVerify message")
	}
	return tls.SignatureScheme(scheme), sig, nil
}

// parseFinished returns verify_data, which must be one hash long
// (RFC 8446 Section 4.4.4).
func parseFinished(msg []byte, hashLen int) ([]byte, error) {
	const op = "parse Finished"
	body, err := messageBody(op, msg, typeFinished)
	if err != nil {
		return nil, err
	}
	if len(body) != hashLen {
		return nil, malformed(op, "verify_data is %d bytes, want %d", len(body), hashLen)
	}
	return []byte(body), nil
}

// handshakeMessage frames a body as a handshake message.
func handshakeMessage(typ uint8, body []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint8(typ)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(body) })
	return b.BytesOrPanic()
}
