package fleet

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the length of a fleet encryption key in bytes
// (XChaCha20-Poly1305).
const KeySize = chacha20poly1305.KeySize

// MaxValueSize caps a sealed value, so a corrupted or hostile store entry
// cannot make a node allocate without bound. certmagic's largest values
// (certificate chains with their metadata) are a few KiB.
const MaxValueSize = 1 << 20

// Sealed value layout, version 1:
//
//	version (1 byte, 1) | key fingerprint (8) | nonce (24) | ciphertext | tag (16)
//
// The associated data is the 9-byte header followed by the value's key in
// the store (without key_prefix), so a value copied to another key, or
// sealed under another fleet key, does not open.
const (
	sealVersion    = 1
	fingerprintLen = 8
	headerLen      = 1 + fingerprintLen
	// Overhead is how many bytes sealing adds to a value.
	Overhead = headerLen + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
)

// Errors Open returns; callers tell a wrong key (an operator mistake: the
// nodes were given different key files) from damage.
var (
	// ErrWrongKey: the value was sealed under another encryption key.
	ErrWrongKey = errors.New("sealed under another encryption key")
	// ErrCorrupt: the value is not a sealed value, or it was changed or
	// moved to another storage key after sealing.
	ErrCorrupt = errors.New("not a valid sealed value")
)

// Key is a fleet encryption key. Every node of a fleet holds the same one
// (encryption_key_file); it seals every value pqedge writes to the store.
type Key struct {
	secret      [KeySize]byte
	fingerprint [fingerprintLen]byte
}

// NewKey makes a Key from raw key bytes, which must be KeySize long.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("fleet encryption key is %d bytes, want %d", len(raw), KeySize)
	}
	k := &Key{}
	copy(k.secret[:], raw)
	// The fingerprint names the key in every sealed value, so a node with
	// the wrong key file says so instead of reporting corruption. It is a
	// hash of a 256-bit secret and reveals nothing usable about it.
	h := sha256.Sum256(append([]byte("pqedge fleet key fingerprint v1\x00"), raw...))
	copy(k.fingerprint[:], h[:fingerprintLen])
	return k, nil
}

// GenerateKey makes a new random Key.
func GenerateKey() (*Key, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("failed to generate a fleet key: %w", err)
	}
	return NewKey(raw)
}

// Fingerprint is a short hex name of the key, safe to log: nodes whose
// fingerprints differ cannot read each other's values.
func (k *Key) Fingerprint() string { return hex.EncodeToString(k.fingerprint[:]) }

// Seal encrypts value for storage under storeKey (the key without
// key_prefix).
func (k *Key) Seal(storeKey string, value []byte) ([]byte, error) {
	if len(value) > MaxValueSize-Overhead {
		return nil, fmt.Errorf("failed to seal %q: value of %d bytes exceeds the %d-byte limit", storeKey, len(value), MaxValueSize-Overhead)
	}
	aead, err := chacha20poly1305.NewX(k.secret[:])
	if err != nil {
		return nil, err
	}
	out := make([]byte, headerLen+chacha20poly1305.NonceSizeX, Overhead+len(value))
	out[0] = sealVersion
	copy(out[1:headerLen], k.fingerprint[:])
	// XChaCha20's 192-bit nonces are safe to draw at random for any number
	// of values under one key.
	if _, err := rand.Read(out[headerLen:]); err != nil {
		return nil, fmt.Errorf("failed to seal %q: %w", storeKey, err)
	}
	nonce := out[headerLen:]
	return aead.Seal(out, nonce, value, associatedData(out[:headerLen], storeKey)), nil
}

// Open decrypts a value Seal made for storeKey. It fails with ErrWrongKey
// or ErrCorrupt (wrapped, naming storeKey).
func (k *Key) Open(storeKey string, sealed []byte) ([]byte, error) {
	v, err := parseSealed(sealed)
	if err != nil {
		return nil, fmt.Errorf("failed to open %q: %w", storeKey, err)
	}
	if subtle.ConstantTimeCompare(v.fingerprint, k.fingerprint[:]) != 1 {
		return nil, fmt.Errorf("failed to open %q: %w (key %x, this node's key %s): give every node the same encryption_key_file",
			storeKey, ErrWrongKey, v.fingerprint, k.Fingerprint())
	}
	aead, err := chacha20poly1305.NewX(k.secret[:])
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, v.nonce, v.ciphertext, associatedData(v.header, storeKey))
	if err != nil {
		return nil, fmt.Errorf("failed to open %q: %w: authentication failed (changed, truncated, or copied from another key)", storeKey, ErrCorrupt)
	}
	return plain, nil
}

// sealedValue is a parsed sealed value; its slices alias the input.
type sealedValue struct {
	header      []byte
	fingerprint []byte
	nonce       []byte
	ciphertext  []byte // with the tag
}

// parseSealed splits a sealed value into its parts without decrypting it.
func parseSealed(b []byte) (sealedValue, error) {
	switch {
	case len(b) > MaxValueSize:
		return sealedValue{}, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrCorrupt, len(b), MaxValueSize)
	case len(b) < Overhead:
		return sealedValue{}, fmt.Errorf("%w: %d bytes is shorter than the %d-byte envelope", ErrCorrupt, len(b), Overhead)
	case b[0] != sealVersion:
		return sealedValue{}, fmt.Errorf("%w: unknown version %d (written by a newer pqedge?)", ErrCorrupt, b[0])
	}
	nonceEnd := headerLen + chacha20poly1305.NonceSizeX
	return sealedValue{
		header:      b[:headerLen],
		fingerprint: b[1:headerLen],
		nonce:       b[headerLen:nonceEnd],
		ciphertext:  b[nonceEnd:],
	}, nil
}

func associatedData(header []byte, storeKey string) []byte {
	ad := make([]byte, 0, len(header)+len(storeKey))
	ad = append(ad, header...)
	return append(ad, storeKey...)
}
