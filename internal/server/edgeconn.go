package server

import (
	"crypto"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/pqedge/pqedge/internal/connlimit"
	"github.com/pqedge/pqedge/pqtls"
)

// edgeConn is what crypto/tls sees as the connection: the capture of the
// ClientHello plus what the TLS callbacks decide during the handshake, so
// the accept loop can record it afterwards. crypto/tls passes it back in
// ClientHelloInfo.Conn. Its fields are written by those callbacks and read
// after the handshake, all on the connection's goroutine.
type edgeConn struct {
	*pqtls.CaptureConn
	listener *listenerRuntime

	site    *siteRuntime        // chosen by GetConfigForClient
	cert    *tls.Certificate    // chosen by GetCertificate (unwrapped)
	sig     tls.SignatureScheme // what the certificate's signer was asked to sign with
	certErr error               // why no certificate fitted the client (Selector.Pick's error)
	nameErr error               // the server name a strict_sni listener refused (unrecognizedName)
	info    *connInfo           // set once the handshake succeeded
	proxyIn *proxyInConn        // the PROXY header reader, on listeners with proxy_protocol_in
	// prefix holds the first bytes the handshake read when they are not
	// a TLS handshake record (notePrefix, plainhttp.go); prefixDone ends
	// the keeping.
	prefix     []byte
	prefixDone bool
	// recordStart holds, when the first bytes begin a TLS handshake
	// record, its header and its first message's type (recordSeen of
	// them so far): a ClientHello's, or that of a message no client
	// begins with (notePrefix).
	recordStart [recordHeaderLen + 1]byte
	recordSeen  int

	// The crypto gate (connlimit.CryptoGate): used by the connection's
	// goroutine only, until the hand-off.
	limiter     *connlimit.Limiter
	deadline    time.Time       // the handshake's: the longest a slot is waited for
	socket      syscall.RawConn // the client's TCP socket, for peerGone; nil if none
	peerSeen    bool            // peerGone said no since the client's last data (checkPeer)
	cryptoHeld  bool            // a crypto slot is held
	handshaking bool            // the handshake runs: its reads take crypto slots
	// watch tells the limiter when the handshake blocks reading the
	// client and when it first writes (socketWatch); nil if unwatched.
	watch *socketWatch
}

// beginCrypto takes a slot of the crypto gate unless one is held: from
// Read when data arrived during the handshake, from GetConfigForClient,
// and from GetCertificate after a HelloRetryRequest, so that no path to a
// key exchange or a signature skips the gate.
func (c *edgeConn) beginCrypto() error {
	if c.cryptoHeld || c.limiter == nil {
		return nil
	}
	if err := c.limiter.AcquireCrypto(c.deadline); err != nil {
		return err
	}
	c.cryptoHeld = true
	return nil
}

// errClientLeft ends a handshake whose client reset or closed the
// connection before the server's key exchange: after sending its
// ClientHello (GetConfigForClient asks the socket, peerGone), or while
// the connection waited in the handshake queue (handleConn asks when its
// turn comes, before reading anything).
var errClientLeft = errors.New("the client left while its handshake waited, before the key exchange")

// socketOf is the RawConn of the socket under c's wrappers (connlimit's,
// the PROXY reader's), nil when there is none, as over a net.Pipe in
// tests.
func socketOf(c net.Conn) syscall.RawConn {
	sc, ok := under[syscall.Conn](c)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// endCrypto frees the crypto slot, if one is held.
func (c *edgeConn) endCrypto() {
	if c.cryptoHeld {
		c.cryptoHeld = false
		c.limiter.ReleaseCrypto()
	}
}

// Read frees the crypto slot before reading and, during the handshake,
// takes one again once data arrived: each burst of a handshake's CPU,
// from a read's return to the next read (the ClientHello's parse, the key
// exchange and signature, the server's flight; then the client's
// Finished), holds a slot of the crypto gate, and none is held while
// waiting on the client. Under a flood the handshakes that wait for a
// slot are parked rather than queued in Go's run queue, where they would
// run ahead of established connections (connlimit.CryptoGate).
//
// While the handshake blocks in a read, the limiter may find its client
// stalled (socketWatch); the wait for a crypto slot is not part of it.
func (c *edgeConn) Read(b []byte) (int, error) {
	c.endCrypto()
	watched := c.handshaking && c.watch != nil
	if watched {
		c.watch.reading()
	}
	n, err := c.CaptureConn.Read(b)
	if watched {
		c.watch.readDone()
	}
	if n == 0 && err != nil && c.handshaking && c.limiter != nil {
		// A failing handshake (under a flood, mostly a client that gave
		// up after the server's flight) is cleaned up after the poller's
		// next run, one per run while the gate paces: the poller readies
		// a flood's connections by the hundred at once, and their
		// failures (record, alert, close: ~40 µs each) otherwise ran back
		// to back ahead of the established connections readied with
		// them (docs/BENCHMARKS.md, set L).
		c.limiter.YieldToPoller()
	}
	if n > 0 && c.handshaking {
		c.notePrefix(b[:n])
		if gerr := c.beginCrypto(); gerr != nil {
			return 0, gerr
		}
		c.peerSeen = false // the wait for the slot may have outlasted the client
	}
	return n, err
}

// Write tells the limiter, the first time the handshake writes, that the
// client has been answered (socketWatch): from then on its silence is
// the handshake deadline's business.
func (c *edgeConn) Write(b []byte) (int, error) {
	if c.handshaking && c.watch != nil {
		c.watch.answered.Store(true)
	}
	return c.CaptureConn.Write(b)
}

// hello returns the captured ClientHello, nil when it was not captured.
func (c *edgeConn) hello() *pqtls.ClientHello {
	if c == nil {
		return nil
	}
	h, _ := c.ClientHello()
	return h
}

func (c *edgeConn) clientHello() *pqtls.ClientHello { return c.hello() }

func (c *edgeConn) noteCertFailure(err error) {
	if c != nil {
		c.certErr = err
	}
}

// recordingCertificate returns cert with its signer wrapped, so the scheme
// crypto/tls signs with is recorded on c; errClientLeft when the client
// left after a HelloRetryRequest, before the signature (checkPeer).
func (c *edgeConn) recordingCertificate(cert *tls.Certificate) (*tls.Certificate, error) {
	// After a HelloRetryRequest the slot was freed; the signature is
	// still to come. A wait that outlasts the deadline fails the
	// handshake at its next I/O, whose deadline has passed too.
	c.beginCrypto()
	if err := c.checkPeer(); err != nil {
		return nil, err
	}
	c.cert = cert
	return recording(cert, &c.sig), nil
}

// checkPeer returns errClientLeft when the client reset or closed the
// connection (peerGone), asking the socket only if data arrived since it
// last answered: GetConfigForClient asks before the key exchange, and
// GetCertificate asks again only after a HelloRetryRequest, whose second
// ClientHello waited for a crypto slot of its own.
//
// Under a flood a handshake waits for its handshake slot and then for a
// crypto slot longer than a flooding client waits for an answer, and the
// front would compute for a client that had already reset (in a 5x
// flood, 26,912 of 46,359 failed handshakes in 10 s: docs/BENCHMARKS.md
// "Overload", set G). On a plain TCP connection (and a Multipath TCP one
// that fell back to it, as every non-MPTCP client's does) a reset leaves
// the socket CLOSE and a FIN CLOSE_WAIT; an MPTCP client's FIN is not
// seen, and its handshake goes on as before.
func (c *edgeConn) checkPeer() error {
	if c.socket == nil || c.peerSeen {
		return nil
	}
	if peerGone(c.socket) {
		return errClientLeft
	}
	c.peerSeen = true
	return nil
}

// recording returns cert with its signer wrapped so that the scheme of
// each signature it makes is written to *sig.
func recording(cert *tls.Certificate, sig *tls.SignatureScheme) *tls.Certificate {
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return cert
	}
	rc := &recordedCert{cert: *cert, signer: recordingSigner{Signer: signer, sig: sig}}
	rc.cert.PrivateKey = &rc.signer
	return &rc.cert
}

// recordedCert holds a handshake's copy of a certificate and its
// recording signer together: one allocation per handshake, not two.
type recordedCert struct {
	cert   tls.Certificate
	signer recordingSigner
}

// recordingSigner notes the scheme of each signature it makes. Its Public
// is the wrapped key's, so crypto/tls chooses exactly as without it.
type recordingSigner struct {
	crypto.Signer
	sig *tls.SignatureScheme // the handshake's record (edgeConn.sig, quicConn.sig)
}

func (r *recordingSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	*r.sig, _ = pqtls.SchemeUsed(r.Signer.Public(), opts)
	return r.Signer.Sign(rand, digest, opts)
}

// SignMessage is the path crypto/tls takes for ML-DSA (crypto.SignMessage):
// the whole message, no pre-hash.
func (r *recordingSigner) SignMessage(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	*r.sig, _ = pqtls.SchemeUsed(r.Signer.Public(), opts)
	return crypto.SignMessage(r.Signer, rand, msg, opts)
}
