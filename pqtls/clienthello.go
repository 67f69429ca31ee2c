package pqtls

import (
	"crypto/tls"
	"fmt"
)

// ClientHello is the parsed form of a raw TLS ClientHello message
// (RFC 8446 Section 4.1.2): what the client offered, in the order it offered
// it, GREASE values included (RFC 8701), plus how it arrived on the wire.
//
// crypto/tls exposes only part of this (no key shares, no
// certificate_authorities, no extension order), so pqedge records the raw
// bytes itself (see CaptureConn) and parses them here.
type ClientHello struct {
	// Raw is the handshake message: type, 3-byte length and body.
	Raw []byte

	LegacyVersion      uint16
	SupportedVersions  []uint16 // supported_versions (RFC 8446 Section 4.2.1)
	CipherSuites       []uint16
	CompressionMethods []uint8
	// Extensions lists every extension type in the order sent.
	Extensions []uint16

	ServerName              string
	ALPN                    []string
	Groups                  []tls.CurveID // supported_groups
	KeyShares               []KeyShare
	SignatureAlgorithms     []tls.SignatureScheme
	SignatureAlgorithmsCert []tls.SignatureScheme
	// CertificateAuthorities holds the DER-encoded distinguished names of the
	// certificate_authorities extension (RFC 8446 Section 4.2.4).
	CertificateAuthorities [][]byte
	PSKModes               []uint8
	ECPointFormats         []uint8
	HasPreSharedKey        bool // pre_shared_key: the client tries resumption
	// PSKIdentity is the first identity of pre_shared_key: for a server
	// that issues stateless tickets, the ticket the client resumes with
	// (RFC 8446 Section 4.2.11). It aliases Raw.
	PSKIdentity  []byte
	HasEarlyData bool
	HasECH       bool // encrypted_client_hello (0xfe0d) present

	// How the ClientHello arrived; zero when it was parsed from bytes alone.
	Wire WireShape
}

// KeyShare is one key_share entry the client sent.
type KeyShare struct {
	Group tls.CurveID
	Size  int // bytes of key_exchange
}

// WireShape tells how a ClientHello arrived on the connection.
type WireShape struct {
	Size    int // bytes of the handshake message
	Records int // TLS records it spanned (TCP only)
	Reads   int // conn reads it took (TCP only)

	// Transport is TransportTCP (the zero value) or TransportQUIC. Over
	// QUIC the ClientHello travels in CRYPTO frames of Initial packets
	// (RFC 9001 Section 4), not in records: Packets counts the Initial
	// packets that carried it and Datagrams the UDP datagrams those came
	// in (package pqtls/quichello fills them).
	Transport Transport `json:",omitempty"`
	Packets   int       `json:",omitempty"`
	Datagrams int       `json:",omitempty"`
}

// Transport is what carried a TLS handshake.
type Transport uint8

const (
	TransportTCP  Transport = iota // TLS records over TCP (RFC 8446)
	TransportQUIC                  // CRYPTO frames over QUIC (RFC 9001)
)

// String returns "tcp" or "quic", as metrics labels and JSON spell them.
func (t Transport) String() string {
	switch t {
	case TransportTCP:
		return "tcp"
	case TransportQUIC:
		return "quic"
	}
	return fmt.Sprintf("transport(%d)", uint8(t))
}

// MarshalText spells the transport as String does.
func (t Transport) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads "tcp" or "quic".
func (t *Transport) UnmarshalText(b []byte) error {
	switch string(b) {
	case "tcp":
		*t = TransportTCP
	case "quic":
		*t = TransportQUIC
	default:
		return fmt.Errorf("unknown transport %q, want tcp or quic", b)
	}
	return nil
}
