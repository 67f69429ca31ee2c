package quichello

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// QUIC versions whose Initial packets the package reads.
const (
	Version1 uint32 = 0x00000001 // RFC 9000
	Version2 uint32 = 0x6b3343cf // RFC 9369 Section 3.1
)

// versionParams are what differs between the versions for a client
// Initial: the salt and labels of the key derivation and the long-header
// type bits that mean Initial.
type versionParams struct {
	salt        []byte
	keyLabel    string
	ivLabel     string
	hpLabel     string
	initialType byte // the two Long Packet Type bits
}

var (
	// RFC 9001 Section 5.2.
	paramsV1 = versionParams{
		salt:     []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a},
		keyLabel: "quic key", ivLabel: "quic iv", hpLabel: "quic hp",
		initialType: 0b00,
	}
	// RFC 9369 Sections 3.2 (type bits), 3.3.1 (salt) and 3.3.2 (labels).
	paramsV2 = versionParams{
		salt:     []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9},
		keyLabel: "quicv2 key", ivLabel: "quicv2 iv", hpLabel: "quicv2 hp",
		initialType: 0b01,
	}
)

func paramsFor(version uint32) (*versionParams, bool) {
	switch version {
	case Version1:
		return &paramsV1, true
	case Version2:
		return &paramsV2, true
	}
	return nil, false
}

// The HkdfLabel structures of the derivations, built once: they depend on
// nothing but the label and the length (RFC 8446 Section 7.1).
var (
	clientInInfo = mustLabelInfo("client in", secretLen)
	infosV1      = [3]string{mustLabelInfo(paramsV1.keyLabel, keyLen), mustLabelInfo(paramsV1.ivLabel, ivLen), mustLabelInfo(paramsV1.hpLabel, hpKeyLen)}
	infosV2      = [3]string{mustLabelInfo(paramsV2.keyLabel, keyLen), mustLabelInfo(paramsV2.ivLabel, ivLen), mustLabelInfo(paramsV2.hpLabel, hpKeyLen)}
)

func (p *versionParams) infos() *[3]string {
	if p == &paramsV2 {
		return &infosV2
	}
	return &infosV1
}

// initialKeys are the client's Initial packet protection keys of one
// connection attempt: AEAD_AES_128_GCM for the payload and AES-128 for
// header protection (RFC 9001 Sections 5.3 and 5.4.3).
type initialKeys struct {
	aead cipher.AEAD
	iv   [12]byte
	hp   cipher.Block
}

// Key material lengths of AEAD_AES_128_GCM (RFC 9001 Section 5.2).
const (
	keyLen    = 16
	ivLen     = 12
	hpKeyLen  = 16
	secretLen = sha256.Size
)

// clientInitialSecret is client_initial_secret of RFC 9001 Section 5.2,
// derived from the Destination Connection ID of the client's first
// Initial packet.
func clientInitialSecret(p *versionParams, dcid []byte) ([]byte, error) {
	initial, err := hkdf.Extract(sha256.New, dcid, p.salt)
	if err != nil {
		return nil, err
	}
	return hkdf.Expand(sha256.New, initial, clientInInfo, secretLen)
}

// newInitialKeys derives the client's Initial keys for dcid.
func newInitialKeys(p *versionParams, dcid []byte) (*initialKeys, error) {
	secret, err := clientInitialSecret(p, dcid)
	if err != nil {
		return nil, fmt.Errorf("failed to derive the client initial secret: %w", err)
	}
	infos := p.infos()
	key, err := hkdf.Expand(sha256.New, secret, infos[0], keyLen)
	if err != nil {
		return nil, err
	}
	iv, err := hkdf.Expand(sha256.New, secret, infos[1], ivLen)
	if err != nil {
		return nil, err
	}
	hpKey, err := hkdf.Expand(sha256.New, secret, infos[2], hpKeyLen)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	hp, err := aes.NewCipher(hpKey)
	if err != nil {
		return nil, err
	}
	k := &initialKeys{aead: aead, hp: hp}
	copy(k.iv[:], iv)
	return k, nil
}

// expandLabel is HKDF-Expand-Label of RFC 8446 Section 7.1 with an empty
// context, as RFC 9001 Section 5.1 uses it.
func expandLabel(secret []byte, label string, length int) ([]byte, error) {
	info, err := labelInfo(label, length)
	if err != nil {
		return nil, err
	}
	out, err := hkdf.Expand(sha256.New, secret, info, length)
	if err != nil {
		return nil, fmt.Errorf("failed to expand %q: %w", label, err)
	}
	return out, nil
}

func mustLabelInfo(label string, length int) string {
	info, err := labelInfo(label, length)
	if err != nil {
		panic(err) // constant labels: cannot happen
	}
	return info
}

// labelInfo is the HkdfLabel structure: the length, "tls13 " + label and
// an empty context, each length-prefixed.
func labelInfo(label string, length int) (string, error) {
	var b cryptobyte.Builder
	b.AddUint16(uint16(length))
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddBytes([]byte("tls13 "))
		b.AddBytes([]byte(label))
	})
	b.AddUint8LengthPrefixed(func(*cryptobyte.Builder) {})
	info, err := b.Bytes()
	return string(info), err
}

// Header protection sample and mask sizes (RFC 9001 Section 5.4.2).
const (
	sampleLen    = 16
	pnSampleSkip = 4 // the sample starts 4 bytes after the packet number's start
	tagLen       = 16
)

var errAuth = errors.New("packet failed authentication (not sealed with this connection's Initial keys)")

// open removes header protection from pkt, one whole long-header packet,
// and decrypts its payload, both in place: pkt must be the caller's own
// copy, and holds garbage after a failure (AES-GCM clears what it could
// not authenticate). pnOffset is where the protected packet number
// starts; largest is the largest packet number already opened in this
// attempt (-1 for none), for decoding a truncated packet number (RFC 9000
// Appendix A.3). It returns the plaintext and the full packet number.
func (k *initialKeys) open(pkt []byte, pnOffset int, largest int64) ([]byte, int64, error) {
	if len(pkt) < pnOffset+pnSampleSkip+sampleLen {
		return nil, 0, fmt.Errorf("packet of %d bytes is too short for the header protection sample at byte %d", len(pkt), pnOffset+pnSampleSkip)
	}
	var mask [aes.BlockSize]byte
	k.hp.Encrypt(mask[:], pkt[pnOffset+pnSampleSkip:pnOffset+pnSampleSkip+sampleLen])
	pkt[0] ^= mask[0] & 0x0f // long header: the low 4 bits are protected
	pnLen := int(pkt[0]&0x03) + 1
	if len(pkt) < pnOffset+pnLen+tagLen {
		return nil, 0, fmt.Errorf("packet of %d bytes has no room for a %d-byte packet number and the AEAD tag", len(pkt), pnLen)
	}
	var truncated uint64
	for i := range pnLen {
		pkt[pnOffset+i] ^= mask[1+i]
		truncated = truncated<<8 | uint64(pkt[pnOffset+i])
	}
	pn := decodePacketNumber(largest, truncated, pnLen*8)
	// The nonce is the IV XORed with the packet number, left-padded
	// (RFC 9001 Section 5.3).
	nonce := k.iv
	var pnBytes [8]byte
	binary.BigEndian.PutUint64(pnBytes[:], uint64(pn))
	for i := range 8 {
		nonce[ivLen-8+i] ^= pnBytes[i]
	}
	body := pkt[pnOffset+pnLen:]
	plain, err := k.aead.Open(body[:0], nonce[:], body, pkt[:pnOffset+pnLen])
	if err != nil {
		return nil, 0, errAuth
	}
	return plain, pn, nil
}

// decodePacketNumber is RFC 9000 Appendix A.3: the packet number closest
// to the next expected one whose low bits are truncated.
func decodePacketNumber(largest int64, truncated uint64, bits int) int64 {
	expected := largest + 1
	win := int64(1) << bits
	hwin := win / 2
	mask := win - 1
	candidate := (expected &^ mask) | int64(truncated)
	switch {
	case candidate <= expected-hwin && candidate < (1<<62)-win:
		return candidate + win
	case candidate > expected+hwin && candidate >= win:
		return candidate - win
	}
	return candidate
}
