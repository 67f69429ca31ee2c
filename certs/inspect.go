package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// InitialWindowBytes is TCP's usual initial congestion window, 10 segments
// of 1,460 bytes (RFC 6928). A server's first flight beyond it waits a round
// trip for the client's ACKs.
const InitialWindowBytes = 14600

// CertInfo is what `pqedge certs inspect` prints about one certificate.
type CertInfo struct {
	Subject, Issuer    string
	Key                KeyInfo
	SignatureAlgorithm string // the algorithm the issuer signed with
	SignatureBytes     int    // size of the issuer's signature
	DERBytes           int    // size of the whole certificate
	Names              []string
	NotBefore          time.Time
	NotAfter           time.Time
	IsCA               bool
	SelfSigned         bool
	// SignedByNext reports whether the next certificate of the chain
	// verifies this one's signature; false for the last.
	SignedByNext bool
	// SPKIHash is SPKIHash(certificate): what Chromium's
	// --ignore-certificate-errors-spki-list takes.
	SPKIHash string
}

// DescribeChain describes every certificate of a chain, leaf first.
func DescribeChain(chain []*x509.Certificate) ([]CertInfo, error) {
	out := make([]CertInfo, 0, len(chain))
	for i, c := range chain {
		k, err := DescribeKey(c.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("certificate %d (%s): %w", i+1, c.Subject, err)
		}
		info := CertInfo{
			Subject: c.Subject.String(), Issuer: c.Issuer.String(),
			Key: k, SignatureAlgorithm: c.SignatureAlgorithm.String(),
			SignatureBytes: len(c.Signature), DERBytes: len(c.Raw),
			NotBefore: c.NotBefore, NotAfter: c.NotAfter,
			IsCA: c.IsCA, SelfSigned: isSelfSigned(c),
			SPKIHash: SPKIHash(c),
		}
		if len(c.DNSNames)+len(c.IPAddresses) > 0 {
			info.Names = certNames(c)
		}
		if i+1 < len(chain) {
			info.SignedByNext = c.CheckSignatureFrom(chain[i+1]) == nil
		}
		out = append(out, info)
	}
	return out, nil
}

// Flight estimates the bytes of a TLS 1.3 server's first flight, message by
// message, as crypto/tls writes it (one record per handshake message).
// Assumptions: X25519MLKEM768 key exchange, TLS_AES_128_GCM_SHA256, the
// client sent a 32-byte legacy_session_id (browsers do, so the server echoes
// it and sends a ChangeCipherSpec, RFC 8446 Appendix D.4), SNI, ALPN "h2",
// no OCSP staple or SCTs.
type Flight struct {
	ServerHello         int // handshake message
	ChangeCipherSpec    int // the whole compatibility record
	EncryptedExtensions int
	Certificate         int
	CertificateVerify   int
	Finished            int
	RecordOverhead      int // record headers, content types and AEAD tags
	Total               int // bytes on the wire above TCP
	FitsInitialWindow   bool
}

// EstimateFlight computes the first flight for a chain (DER, leaf first)
// whose leaf key is leafKey.
func EstimateFlight(chain [][]byte, leafKey KeyInfo) Flight {
	const (
		hsHeader    = 4      // msg_type + uint24 length (RFC 8446 Section 4)
		recHeader   = 5      // TLSPlaintext header (Section 5.1)
		aeadExtra   = 1 + 16 // TLSInnerPlaintext content type + GCM tag (Section 5.2)
		maxFragment = 16384  // 2^14 (Section 5.1)
	)
	g, _ := pqtls.LookupGroup(tls.X25519MLKEM768)
	var f Flight
	// legacy_version, random, legacy_session_id echo (1+32), cipher_suite,
	// legacy_compression_method, extensions length, supported_versions
	// (type, length, version) and key_share (type, length, group, length,
	// key_exchange) — Section 4.1.3.
	f.ServerHello = hsHeader + 2 + 32 + 1 + 32 + 2 + 1 + 2 + (4 + 2) + (4 + 2 + 2 + g.ServerShare)
	f.ChangeCipherSpec = recHeader + 1
	// Extensions length, ALPN (type, length, list length, "h2") and the
	// empty server_name acknowledgement (RFC 6066 Section 3) for SNI.
	f.EncryptedExtensions = hsHeader + 2 + (4 + 2 + 1 + 2) + 4
	// certificate_request_context, certificate_list length, then per entry
	// a uint24 length, the DER and an empty extensions block (Section 4.4.2).
	f.Certificate = hsHeader + 1 + 3
	for _, der := range chain {
		f.Certificate += 3 + len(der) + 2
	}
	// algorithm, signature length, signature (Section 4.4.3).
	f.CertificateVerify = hsHeader + 2 + 2 + leafKey.SignatureBytes
	f.Finished = hsHeader + 32 // SHA-256 verify_data (Section 4.4.4)

	records := func(n int) int { return (n + maxFragment - 1) / maxFragment }
	f.RecordOverhead = recHeader * records(f.ServerHello)
	for _, m := range []int{f.EncryptedExtensions, f.Certificate, f.CertificateVerify, f.Finished} {
		f.RecordOverhead += (recHeader + aeadExtra) * records(m+1)
	}
	f.Total = f.ServerHello + f.ChangeCipherSpec + f.EncryptedExtensions + f.Certificate +
		f.CertificateVerify + f.Finished + f.RecordOverhead
	f.FitsInitialWindow = f.Total <= InitialWindowBytes
	return f
}

// ChainBytes is what the certificates add to a handshake: the Certificate
// message plus the CertificateVerify signature.
func (f Flight) ChainBytes() int { return f.Certificate + f.CertificateVerify }
