package quichello

import (
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
)

// This file builds client Initial packets for tests: the inverse of
// keys.open, with the same primitives.

// testPacket describes one Initial packet to build.
type testPacket struct {
	version uint32
	dcid    []byte
	keyDCID []byte // the DCID the keys come from; nil means dcid
	token   []byte
	pn      uint64
	pnLen   int    // 1..4; 0 means 4
	payload []byte // frames; padded with PADDING to the datagram size by the caller
}

// seal returns the protected packet.
func (p testPacket) seal(t testing.TB) []byte {
	t.Helper()
	if p.version == 0 {
		p.version = Version1
	}
	if p.pnLen == 0 {
		p.pnLen = 4
	}
	params, _ := paramsFor(p.version)
	keyDCID := p.keyDCID
	if keyDCID == nil {
		keyDCID = p.dcid
	}
	keys, err := newInitialKeys(params, keyDCID)
	if err != nil {
		t.Fatal(err)
	}
	// Header protection samples 16 bytes starting 4 after the packet
	// number: pad short payloads so that the sample exists.
	payload := p.payload
	if need := pnSampleSkip + sampleLen - p.pnLen - tagLen; len(payload) < need {
		payload = append(append([]byte(nil), payload...), make([]byte, need-len(payload))...)
	}
	hdr := []byte{0xc0 | params.initialType<<4 | byte(p.pnLen-1)}
	hdr = binary.BigEndian.AppendUint32(hdr, p.version)
	hdr = append(hdr, byte(len(p.dcid)))
	hdr = append(hdr, p.dcid...)
	hdr = append(hdr, 0) // empty Source Connection ID
	hdr = quicvarint.Append(hdr, uint64(len(p.token)))
	hdr = append(hdr, p.token...)
	hdr = quicvarint.AppendWithLen(hdr, uint64(p.pnLen+len(payload)+tagLen), 2)
	pnOffset := len(hdr)
	for i := p.pnLen - 1; i >= 0; i-- {
		hdr = append(hdr, byte(p.pn>>(8*i)))
	}
	nonce := keys.iv
	var pnBytes [8]byte
	binary.BigEndian.PutUint64(pnBytes[:], p.pn)
	for i := range 8 {
		nonce[ivLen-8+i] ^= pnBytes[i]
	}
	pkt := keys.aead.Seal(hdr, nonce[:], payload, hdr)
	var mask [aes.BlockSize]byte
	keys.hp.Encrypt(mask[:], pkt[pnOffset+pnSampleSkip:pnOffset+pnSampleSkip+sampleLen])
	pkt[0] ^= mask[0] & 0x0f
	for i := range p.pnLen {
		pkt[pnOffset+i] ^= mask[1+i]
	}
	return pkt
}

// cryptoFrame encodes a CRYPTO frame.
func cryptoFrame(off int, data []byte) []byte {
	b := []byte{frameCrypto}
	b = quicvarint.Append(b, uint64(off))
	b = quicvarint.Append(b, uint64(len(data)))
	return append(b, data...)
}

// datagram joins packets and pads the datagram to size with PADDING
// frames inside the last packet... which would change its length, so it
// pads with zero bytes after the packets instead, as coalescing allows
// (RFC 9000 Section 12.2: a receiver ignores what it cannot parse; quic-go
// and this package read a 0x00 byte as a short-header packet and stop).
func datagram(size int, packets ...[]byte) []byte {
	var d []byte
	for _, p := range packets {
		d = append(d, p...)
	}
	if len(d) < size {
		d = append(d, make([]byte, size-len(d))...)
	}
	return d
}

func readHex(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	out, err := hex.DecodeString(strings.Join(strings.Fields(string(b)), ""))
	if err != nil {
		t.Fatalf("testdata/%s: %v", name, err)
	}
	return out
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
