package leanclient

import (
	"crypto/tls"
	"crypto/x509"
	"time"
)

// Config chooses what the client offers and what it checks. The zero value
// offers X25519MLKEM768 with a key share for it, the signature algorithms
// of DefaultSignatureAlgorithms, the three TLS 1.3 cipher suites, and
// verifies nothing.
type Config struct {
	// ServerName goes into server_name (unless it is an IP address) and is
	// the name the chain is verified for.
	ServerName string
	// Groups is the supported_groups list, in order. Unknown and GREASE
	// codepoints may be listed.
	Groups []tls.CurveID
	// KeyShares are the groups to send a key share for, in order; each
	// should be in Groups. Empty means the first of Groups.
	KeyShares []tls.CurveID
	// SignatureAlgorithms is the signature_algorithms list, in order.
	SignatureAlgorithms []tls.SignatureScheme
	// SignatureAlgorithmsCert, if set, is sent as signature_algorithms_cert
	// (RFC 8446 Section 4.2.3): the schemes the client accepts in
	// certificate signatures, when they differ from SignatureAlgorithms.
	SignatureAlgorithmsCert []tls.SignatureScheme
	// CipherSuites to offer; empty means DefaultCipherSuites.
	CipherSuites []uint16
	ALPN         []string

	// Roots verifies the chain when VerifyChain is set; nil means the
	// system roots.
	Roots       *x509.CertPool
	VerifyChain bool
	// VerifySignature checks the CertificateVerify signature with the
	// leaf's key. Without it a server could send any signature; load mode
	// may skip it to keep the client cheap.
	VerifySignature bool
	// SkipCertificateParsing leaves Result.Certificates empty when nothing
	// is verified, saving the client the x509 parsing (load mode).
	SkipCertificateParsing bool

	// Precomputed, when set, supplies the key shares (load mode). It
	// reuses private keys across handshakes: FOR BENCHMARKING ONLY, it
	// destroys forward secrecy.
	Precomputed *ShareCache

	// SplitClientHello sends the ClientHello in two records and/or two
	// writes; SplitDelay is the pause between the two writes (default 20ms).
	SplitClientHello SplitMode
	SplitDelay       time.Duration

	// CloseNotify, after the client Finished, sends close_notify, closes
	// the write side and reads until the server closes. This proves the
	// server processed the Finished (it read the alert behind it), and
	// avoids a TCP reset that unread NewSessionTicket bytes would cause.
	// With Request it comes after the response instead (see Request).
	CloseNotify bool

	// Request, when set, is sent right behind the client Finished, in the
	// same write, as application data under the client traffic keys (RFC
	// 8446 Section 7.1): one whole HTTP/1.1 request, which should ask the
	// server to close (Connection: close), since the client then reads
	// and decrypts the response until the server's close_notify or close.
	// Result.Status and Result.ResponseBytes say what came back; a
	// response without a complete status line is a KindMalformed error.
	// NewSessionTicket messages before or inside the response are
	// skipped. With CloseNotify the client's close_notify follows the
	// response, as browsers and curl do: sent before it, net/http servers
	// read it as the client going away and cancel the request.
	Request []byte

	// Session, when set and still usable (within its lifetime, issued for
	// ServerName), is offered for resumption: psk_key_exchange_modes
	// psk_dhe_ke and a pre_shared_key with its binder (RFC 8446 Section
	// 4.2.11), key shares as usual. A server that declines it gets a full
	// handshake; Result.Resumed says which happened.
	Session *Session
	// ReadTicket, after the client Finished, waits for the server's first
	// NewSessionTicket and returns it as Result.Session. A server that
	// sends none within TicketTimeout (default 1s) or closes first leaves
	// Result.Session nil; that is not an error.
	ReadTicket    bool
	TicketTimeout time.Duration

	// Timeout bounds the whole handshake, every read and write included
	// (default 10s); a context deadline that is earlier wins. It protects
	// a benchmark from servers that stop answering.
	Timeout time.Duration

	// onMessage, when set (tests only), sees every handshake message the
	// server sends, in plaintext.
	onMessage func(msg []byte)
}

// DefaultSignatureAlgorithms is offered when Config.SignatureAlgorithms is
// empty: ML-DSA first, then what servers commonly hold.
var DefaultSignatureAlgorithms = []tls.SignatureScheme{
	tls.MLDSA44, tls.MLDSA65, tls.MLDSA87,
	tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.ECDSAWithP521AndSHA512,
	tls.Ed25519,
	tls.PSSWithSHA256, tls.PSSWithSHA384, tls.PSSWithSHA512,
	tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512,
}

const defaultTimeout = 10 * time.Second

// Result is what one handshake negotiated and cost.
type Result struct {
	Group           tls.CurveID
	HelloRetry      bool // the server sent a HelloRetryRequest
	CipherSuite     uint16
	SignatureScheme tls.SignatureScheme
	ALPN            string
	// RawCertificates is the chain as sent, leaf first; Certificates its
	// parsed form (empty with SkipCertificateParsing).
	RawCertificates [][]byte
	Certificates    []*x509.Certificate
	ChainBytes      int // sum of the DER certificates

	ClientHelloBytes int // the last ClientHello message, header included
	// BytesSent and BytesReceived count whole TLS records.
	BytesSent, BytesReceived int
	// ServerFlightBytes is ServerHello through Finished as on the wire
	// (records, headers, change_cipher_spec included).
	ServerFlightBytes int
	// ServerFlightRecords is how many TLS records those bytes are: what
	// ReadFlight counts to know a replayed ClientHello's answer is whole.
	ServerFlightRecords int
	// RoundTrips is 1, or 2 after a HelloRetryRequest.
	RoundTrips int

	// Resumed says the server accepted Config.Session: it sent no
	// Certificate or CertificateVerify (SignatureScheme and the chain
	// fields are then zero).
	Resumed bool
	// Session is the server's first NewSessionTicket, with ReadTicket.
	Session *Session

	// Status is the HTTP status code of the response to Config.Request
	// (0 without a Request); ResponseBytes counts the response's
	// decrypted bytes, status line, headers and body, up to the server's
	// close.
	Status        int
	ResponseBytes int
}
