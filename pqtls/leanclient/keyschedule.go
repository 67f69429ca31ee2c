package leanclient

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	_ "crypto/sha256" // registers SHA-256 for crypto.Hash.New
	_ "crypto/sha512" // registers SHA-384 for crypto.Hash.New
	"crypto/tls"
	"encoding/binary"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/hkdf"
)

// cipherSuite is a TLS 1.3 cipher suite (RFC 8446 Appendix B.4).
type cipherSuite struct {
	id     uint16
	hash   crypto.Hash
	keyLen int
	aead   func(key []byte) (cipher.AEAD, error)
}

func aesGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

var cipherSuites = []*cipherSuite{
	{id: tls.TLS_AES_128_GCM_SHA256, hash: crypto.SHA256, keyLen: 16, aead: aesGCM},
	{id: tls.TLS_AES_256_GCM_SHA384, hash: crypto.SHA384, keyLen: 32, aead: aesGCM},
	{id: tls.TLS_CHACHA20_POLY1305_SHA256, hash: crypto.SHA256, keyLen: 32, aead: chacha20poly1305.New},
}

// DefaultCipherSuites is what the client offers when Config.CipherSuites is
// empty.
var DefaultCipherSuites = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}

func lookupCipherSuite(id uint16) *cipherSuite {
	for _, s := range cipherSuites {
		if s.id == id {
			return s
		}
	}
	return nil
}

// expandLabel is HKDF-Expand-Label (RFC 8446 Section 7.1).
func (s *cipherSuite) expandLabel(secret []byte, label string, context []byte, length int) []byte {
	var b cryptobyte.Builder
	b.AddUint16(uint16(length))
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddBytes([]byte("tls13 "))
		b.AddBytes([]byte(label))
	})
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(context) })
	out := make([]byte, length)
	r := hkdf.Expand(s.hash.New, secret, b.BytesOrPanic())
	if _, err := r.Read(out); err != nil {
		// Only possible when length exceeds 255*HashLen, which no label here asks.
		panic("leanclient: HKDF-Expand-Label: " + err.Error())
	}
	return out
}

// deriveSecret is Derive-Secret (RFC 8446 Section 7.1) over a transcript
// hash already computed.
func (s *cipherSuite) deriveSecret(secret []byte, label string, transcriptHash []byte) []byte {
	return s.expandLabel(secret, label, transcriptHash, s.hash.Size())
}

func (s *cipherSuite) extract(ikm, salt []byte) []byte {
	if ikm == nil {
		ikm = make([]byte, s.hash.Size())
	}
	return hkdf.Extract(s.hash.New, ikm, salt)
}

func (s *cipherSuite) emptyHash() []byte {
	h := s.hash.New()
	return h.Sum(nil)
}

// handshakeSecret runs the key schedule (RFC 8446 Section 7.1) from the
// start to the Handshake Secret. Without a PSK (nil) the Early Secret is
// HKDF-Extract(0, 0); a resumed handshake starts from HKDF-Extract(0, PSK)
// and still mixes in the (EC)DHE/KEM secret (psk_dhe_ke).
func (s *cipherSuite) handshakeSecret(psk, shared []byte) []byte {
	early := s.extract(psk, nil)
	derived := s.deriveSecret(early, "derived", s.emptyHash())
	return s.extract(shared, derived)
}

// masterSecret is the next step of the key schedule.
func (s *cipherSuite) masterSecret(handshakeSecret []byte) []byte {
	derived := s.deriveSecret(handshakeSecret, "derived", s.emptyHash())
	return s.extract(nil, derived)
}

// trafficProtection derives the record keys of one direction from a
// traffic secret (RFC 8446 Section 7.3).
func (s *cipherSuite) trafficProtection(secret []byte) (*protection, error) {
	key := s.expandLabel(secret, "key", nil, s.keyLen)
	iv := s.expandLabel(secret, "iv", nil, 12)
	aead, err := s.aead(key)
	if err != nil {
		return nil, err
	}
	return &protection{aead: aead, iv: iv}, nil
}

// finishedMAC is the verify_data of a Finished message (RFC 8446
// Section 4.4.4).
func (s *cipherSuite) finishedMAC(baseKey, transcriptHash []byte) []byte {
	key := s.expandLabel(baseKey, "finished", nil, s.hash.Size())
	m := hmac.New(s.hash.New, key)
	m.Write(transcriptHash)
	return m.Sum(nil)
}

// protection is the AEAD state of one direction (RFC 8446 Section 5.3).
type protection struct {
	aead cipher.AEAD
	iv   []byte
	seq  uint64
}

// nonce XORs the 64-bit record sequence number, left-padded to the IV
// length, into the IV (RFC 8446 Section 5.3).
func (p *protection) nonce() []byte {
	n := make([]byte, len(p.iv))
	copy(n, p.iv)
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], p.seq)
	for i := range seq {
		n[len(n)-8+i] ^= seq[i]
	}
	return n
}

// transcript accumulates handshake messages; the hash is chosen once the
// server picks a cipher suite, so messages sent before that are held.
type transcript struct {
	pending [][]byte
	h       hash.Hash
}

func (t *transcript) add(msg []byte) {
	if t.h == nil {
		t.pending = append(t.pending, msg)
		return
	}
	t.h.Write(msg)
}

// start fixes the hash function and feeds it the held messages.
func (t *transcript) start(h crypto.Hash) {
	t.h = h.New()
	for _, m := range t.pending {
		t.h.Write(m)
	}
	t.pending = nil
}

func (t *transcript) sum() []byte { return t.h.Sum(nil) }
