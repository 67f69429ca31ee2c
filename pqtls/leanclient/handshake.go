package leanclient

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"slices"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// Dial connects to addr over TCP and runs Handshake. The connection is
// closed before Dial returns.
func Dial(ctx context.Context, addr string, cfg *Config) (*Result, error) {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	// The dial timeout protects against a host that drops SYNs.
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, ioErr("dial "+addr, err)
	}
	defer conn.Close()
	return Handshake(ctx, conn, cfg)
}

// Handshake runs a TLS 1.3 client handshake on conn. It does not close
// conn. Every read and write has the deadline of Config.Timeout (or the
// context's, when earlier); ending ctx aborts the I/O in progress.
func Handshake(ctx context.Context, conn net.Conn, cfg *Config) (*Result, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, ioErr("set deadline", err)
	}
	// A past deadline wakes any blocked read or write when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	hs := &handshakeState{cfg: cfg, rc: newRecordConn(conn), res: &Result{RoundTrips: 1}, deadline: deadline}
	hs.rc.splitDelay = cfg.SplitDelay
	if hs.rc.splitDelay <= 0 {
		hs.rc.splitDelay = 20 * time.Millisecond
	}
	err := hs.handshake()
	hs.rc.release()
	hs.res.BytesSent, hs.res.BytesReceived = hs.rc.bytesSent, hs.rc.bytesReceived
	if err != nil {
		if ctx.Err() != nil && KindOf(err) == KindTimeout {
			err = &Error{Kind: KindTimeout, Op: "handshake", Err: ctx.Err()}
		}
		return hs.res, err
	}
	conn.SetDeadline(time.Time{})
	return hs.res, nil
}

// handshakeState is one client handshake in progress.
type handshakeState struct {
	cfg *Config
	rc  *recordConn
	res *Result

	hello      clientHello
	sh         *serverHello
	suite      *cipherSuite
	transcript transcript

	handshakeSecret   []byte
	clientHSSecret    []byte
	serverHSSecret    []byte
	masterSecret      []byte
	leafKey           any
	serverFlightFrom  int // rc.bytesReceived before the ServerHello
	serverRecordsFrom int // rc.recordsReceived before the ServerHello
	deadline          time.Time

	session          *Session // offered for resumption; nil when none
	serverAppSecret  []byte
	appKeysIn        bool // reads use the server application keys
	resumptionSecret []byte
}

// handshake lists the steps of RFC 8446 Section 2 from the client's side.
func (hs *handshakeState) handshake() error {
	if err := hs.makeClientHello(); err != nil {
		return err
	}
	if err := hs.sendClientHello(); err != nil {
		return err
	}
	if err := hs.readServerHello(); err != nil {
		return err
	}
	if hs.sh.retry {
		if err := hs.processHelloRetryRequest(); err != nil {
			return err
		}
		if err := hs.sendClientHello(); err != nil {
			return err
		}
		if err := hs.readServerHello(); err != nil {
			return err
		}
	}
	if err := hs.checkServerHello(); err != nil {
		return err
	}
	if err := hs.establishHandshakeKeys(); err != nil {
		return err
	}
	if err := hs.readEncryptedExtensions(); err != nil {
		return err
	}
	if !hs.res.Resumed {
		// RFC 8446 Section 2.2: a PSK handshake authenticates the server
		// by the PSK, with no Certificate or CertificateVerify.
		if err := hs.readCertificate(); err != nil {
			return err
		}
		if err := hs.readCertificateVerify(); err != nil {
			return err
		}
	}
	if err := hs.readServerFinished(); err != nil {
		return err
	}
	if err := hs.sendClientFinished(); err != nil {
		return err
	}
	if hs.cfg.ReadTicket {
		if err := hs.readTicket(); err != nil {
			return err
		}
	}
	if hs.cfg.Request != nil {
		if err := hs.readResponse(); err != nil {
			return err
		}
	}
	if hs.cfg.CloseNotify {
		return hs.closeNotify()
	}
	return nil
}

func (hs *handshakeState) makeClientHello() error {
	cfg := hs.cfg
	hs.hello = clientHello{
		random:     make([]byte, 32),
		sessionID:  make([]byte, 32),
		suites:     cfg.CipherSuites,
		serverName: cfg.ServerName,
		alpn:       cfg.ALPN,
		groups:     cfg.Groups,
		sigalgs:    cfg.SignatureAlgorithms,
		certAlgs:   cfg.SignatureAlgorithmsCert,
	}
	// A non-empty legacy_session_id asks for middlebox compatibility mode
	// (RFC 8446 Appendix D.4), which is what browsers send.
	rand.Read(hs.hello.random)
	rand.Read(hs.hello.sessionID)
	if len(hs.hello.suites) == 0 {
		hs.hello.suites = DefaultCipherSuites
	}
	if len(hs.hello.groups) == 0 {
		hs.hello.groups = []tls.CurveID{tls.X25519MLKEM768}
	}
	if len(hs.hello.sigalgs) == 0 {
		hs.hello.sigalgs = DefaultSignatureAlgorithms
	}
	shareGroups := cfg.KeyShares
	if len(shareGroups) == 0 {
		shareGroups = hs.hello.groups[:1]
	}
	for _, g := range shareGroups {
		ks, err := hs.keyShare(g)
		if err != nil {
			return err
		}
		hs.hello.shares = append(hs.hello.shares, ks)
	}
	// RFC 8446 Section 4.2.9: servers send no tickets to a client that
	// lists no PSK mode (crypto/tls and OpenSSL both hold to it).
	hs.hello.pskModes = cfg.ReadTicket
	if now := time.Now(); cfg.Session.usable(cfg.ServerName, now) {
		hs.hello.pskModes = true
		hs.session = cfg.Session
		hs.hello.psk = &pskOffer{
			identity: cfg.Session.Ticket,
			age:      cfg.Session.obfuscatedAge(now),
			binder:   make([]byte, lookupCipherSuite(cfg.Session.CipherSuite).hash.Size()),
		}
	}
	return nil
}

func (hs *handshakeState) keyShare(g tls.CurveID) (*keyShare, error) {
	var ks *keyShare
	var err error
	if hs.cfg.Precomputed != nil && !pqtls.IsGREASE(uint16(g)) {
		ks, err = hs.cfg.Precomputed.get(g)
	} else {
		ks, err = newKeyShare(g)
	}
	if err != nil {
		return nil, &Error{Kind: KindUnsupported, Op: "make key share", Err: err}
	}
	return ks, nil
}

// sendClientHello writes the ClientHello, split as configured.
func (hs *handshakeState) sendClientHello() error {
	msg := hs.hello.marshal()
	if p := hs.hello.psk; p != nil {
		// After a HelloRetryRequest the binder also covers message_hash
		// and the HelloRetryRequest (RFC 8446 Section 4.2.11.2).
		signPSKBinder(lookupCipherSuite(hs.session.CipherSuite), hs.session.PSK, hs.transcript.h, msg, len(p.binder))
	}
	hs.transcript.add(msg)
	hs.res.ClientHelloBytes = len(msg)
	cut := 0
	if hs.cfg.SplitClientHello&SplitRecords != 0 {
		cut = len(msg) / 2
	}
	wire := hs.rc.records(recordHandshake, msg, cut)
	splitAt := 0
	if hs.cfg.SplitClientHello&SplitWrites != 0 {
		splitAt = len(wire) / 2
	}
	return hs.rc.write("send ClientHello", wire, splitAt)
}

func (hs *handshakeState) readServerHello() error {
	hs.serverFlightFrom = hs.rc.bytesReceived
	hs.serverRecordsFrom = hs.rc.recordsReceived
	msg, err := hs.rc.readHandshake("read ServerHello")
	if err != nil {
		return err
	}
	sh, err := parseServerHello(msg)
	if err != nil {
		return err
	}
	if hs.cfg.onMessage != nil {
		hs.cfg.onMessage(msg)
	}
	if sh.version != tls.VersionTLS13 {
		if sh.version == 0 {
			return unsupported("read ServerHello", "server negotiated TLS 1.2 or older")
		}
		return unsupported("read ServerHello", "server selected version %s", pqtls.VersionName(sh.version))
	}
	// RFC 8446 Section 4.1.3: legacy_session_id_echo must match.
	if !slices.Equal(sh.sessionID, hs.hello.sessionID) {
		return malformed("read ServerHello", "legacy_session_id_echo does not match")
	}
	if !slices.Contains(hs.hello.suites, sh.suite) || lookupCipherSuite(sh.suite) == nil {
		return malformed("read ServerHello", "server chose cipher suite 0x%04x, which was not offered", sh.suite)
	}
	if hs.suite != nil && hs.suite.id != sh.suite {
		// RFC 8446 Section 4.1.4: the ServerHello must keep the
		// HelloRetryRequest's cipher suite.
		return malformed("read ServerHello", "cipher suite changed after HelloRetryRequest")
	}
	if sh.retry && hs.res.HelloRetry {
		return malformed("read ServerHello", "second HelloRetryRequest (RFC 8446 Section 4.1.4)")
	}
	hs.sh = sh
	return nil
}

// processHelloRetryRequest prepares the second ClientHello (RFC 8446
// Section 4.1.4): a key share for the selected group only, the cookie
// echoed, and the transcript restarted with message_hash.
func (hs *handshakeState) processHelloRetryRequest() error {
	const op = "process HelloRetryRequest"
	sh := hs.sh
	hs.res.HelloRetry = true
	hs.res.RoundTrips = 2
	hs.suite = lookupCipherSuite(sh.suite)
	if !sh.hasKeyShare && sh.cookie == nil {
		return malformed(op, "HelloRetryRequest would change nothing")
	}
	if sh.hasKeyShare {
		if !slices.Contains(hs.hello.groups, sh.group) {
			return malformed(op, "server selected group %s, which was not offered", pqtls.GroupName(sh.group))
		}
		for _, ks := range hs.hello.shares {
			if ks.group == sh.group {
				return malformed(op, "server asked again for group %s, whose share was sent", pqtls.GroupName(sh.group))
			}
		}
		ks, err := hs.keyShare(sh.group)
		if err != nil {
			return err
		}
		hs.hello.shares = []*keyShare{ks}
	}
	hs.hello.cookie = sh.cookie
	if hs.hello.psk != nil {
		// RFC 8446 Section 4.1.4: recompute obfuscated_ticket_age and the
		// binder; drop a PSK whose hash the chosen suite cannot use
		// (Section 4.2.11).
		if lookupCipherSuite(hs.session.CipherSuite).hash != hs.suite.hash {
			hs.hello.psk, hs.session = nil, nil
		} else {
			hs.hello.psk.age = hs.session.obfuscatedAge(time.Now())
		}
	}
	// Transcript: message_hash(Hash(ClientHello1)) || HelloRetryRequest.
	ch1 := hs.transcript.pending[0]
	hs.transcript = transcript{}
	hs.transcript.start(hs.suite.hash)
	hs.transcript.add(handshakeMessage(typeMessageHash, digest(hs.suite.hash, ch1)))
	hs.transcript.add(sh.raw)
	return nil
}

// checkServerHello checks the key_share of the final ServerHello.
func (hs *handshakeState) checkServerHello() error {
	const op = "read ServerHello"
	sh := hs.sh
	if sh.retry {
		return malformed(op, "HelloRetryRequest where a ServerHello was due")
	}
	if !sh.hasKeyShare {
		return unsupported(op, "ServerHello has no key_share (PSK-only handshake)")
	}
	if hs.suite == nil {
		hs.suite = lookupCipherSuite(sh.suite)
		hs.transcript.start(hs.suite.hash)
	}
	if sh.hasPSK {
		// RFC 8446 Section 4.2.11: the selected identity must be one
		// offered, and the suite must share the PSK's hash.
		if hs.hello.psk == nil {
			return malformed(op, "server selected a pre-shared key that was not offered")
		}
		if sh.pskIdentity != 0 {
			return malformed(op, "server selected PSK identity %d, only 0 was offered", sh.pskIdentity)
		}
		if lookupCipherSuite(hs.session.CipherSuite).hash != hs.suite.hash {
			return malformed(op, "server resumed with cipher suite 0x%04x, whose hash differs from the session's", sh.suite)
		}
		hs.res.Resumed = true
	}
	hs.transcript.add(sh.raw)
	hs.res.Group = sh.group
	hs.res.CipherSuite = sh.suite
	return nil
}

// establishHandshakeKeys computes the shared secret and the handshake
// traffic secrets (RFC 8446 Section 7.1).
func (hs *handshakeState) establishHandshakeKeys() error {
	const op = "compute handshake keys"
	var ks *keyShare
	for _, k := range hs.hello.shares {
		if k.group == hs.sh.group {
			ks = k
		}
	}
	if ks == nil {
		// RFC 8446 Section 4.2.8: the server's share must be for a group
		// the client sent a share for.
		return malformed(op, "server key share for %s, which the client did not send", pqtls.GroupName(hs.sh.group))
	}
	shared, err := ks.sharedSecret(hs.sh.share)
	if err != nil {
		return &Error{Kind: KindMalformed, Op: op, Err: err}
	}
	s := hs.suite
	var psk []byte
	if hs.res.Resumed {
		psk = hs.session.PSK
	}
	hs.handshakeSecret = s.handshakeSecret(psk, shared)
	th := hs.transcript.sum()
	hs.clientHSSecret = s.deriveSecret(hs.handshakeSecret, "c hs traffic", th)
	hs.serverHSSecret = s.deriveSecret(hs.handshakeSecret, "s hs traffic", th)
	in, err := s.trafficProtection(hs.serverHSSecret)
	if err != nil {
		return &Error{Kind: KindMalformed, Op: op, Err: err}
	}
	out, err := s.trafficProtection(hs.clientHSSecret)
	if err != nil {
		return &Error{Kind: KindMalformed, Op: op, Err: err}
	}
	hs.rc.out = out
	return hs.rc.setReadKeys(op, in)
}

// readMessage reads one encrypted handshake message and adds it to the
// transcript.
func (hs *handshakeState) readMessage(op string) ([]byte, error) {
	msg, err := hs.rc.readHandshake(op)
	if err != nil {
		return nil, err
	}
	if hs.cfg.onMessage != nil {
		hs.cfg.onMessage(msg)
	}
	return msg, nil
}

func (hs *handshakeState) readEncryptedExtensions() error {
	msg, err := hs.readMessage("read EncryptedExtensions")
	if err != nil {
		return err
	}
	alpn, err := parseEncryptedExtensions(msg)
	if err != nil {
		return err
	}
	if alpn != "" && !slices.Contains(hs.cfg.ALPN, alpn) {
		return malformed("read EncryptedExtensions", "server selected ALPN %q, which was not offered", alpn)
	}
	hs.res.ALPN = alpn
	hs.transcript.add(msg)
	return nil
}

func (hs *handshakeState) readCertificate() error {
	const op = "read Certificate"
	msg, err := hs.readMessage(op)
	if err != nil {
		return err
	}
	raw, err := parseCertificate(msg)
	if err != nil {
		return err
	}
	hs.transcript.add(msg)
	hs.res.RawCertificates = raw
	for _, c := range raw {
		hs.res.ChainBytes += len(c)
	}
	cfg := hs.cfg
	if cfg.SkipCertificateParsing && !cfg.VerifyChain && !cfg.VerifySignature {
		return nil
	}
	for _, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return malformed(op, "failed to parse certificate: %v", err)
		}
		hs.res.Certificates = append(hs.res.Certificates, c)
	}
	hs.leafKey = hs.res.Certificates[0].PublicKey
	if cfg.VerifyChain {
		if err := verifyChain(hs.res.Certificates, cfg.Roots, cfg.ServerName, time.Now()); err != nil {
			return verifyErr("verify certificate chain", err)
		}
	}
	return nil
}

func (hs *handshakeState) readCertificateVerify() error {
	const op = "read CertificateVerify"
	msg, err := hs.readMessage(op)
	if err != nil {
		return err
	}
	scheme, sig, err := parseCertificateVerify(msg)
	if err != nil {
		return err
	}
	// RFC 8446 Section 4.4.3: the scheme must be one the client offered.
	if !slices.Contains(hs.hello.sigalgs, scheme) {
		return malformed(op, "server signed with %s, which was not offered", pqtls.SignatureName(scheme))
	}
	hs.res.SignatureScheme = scheme
	if hs.cfg.VerifySignature {
		content := signedContent(hs.transcript.sum())
		if err := verifySignature(hs.leafKey, scheme, content, sig); err != nil {
			return verifyErr("verify CertificateVerify", err)
		}
	}
	hs.transcript.add(msg)
	return nil
}

func (hs *handshakeState) readServerFinished() error {
	const op = "read server Finished"
	msg, err := hs.readMessage(op)
	if err != nil {
		return err
	}
	got, err := parseFinished(msg, hs.suite.hash.Size())
	if err != nil {
		return err
	}
	want := hs.suite.finishedMAC(hs.serverHSSecret, hs.transcript.sum())
	if !hmac.Equal(got, want) {
		return verifyErr(op, errors.New("server Finished does not verify (RFC 8446 Section 4.4.4)"))
	}
	hs.transcript.add(msg)
	hs.res.ServerFlightBytes = hs.rc.bytesReceived - hs.serverFlightFrom
	hs.res.ServerFlightRecords = hs.rc.recordsReceived - hs.serverRecordsFrom
	if len(hs.rc.hsBuf) != 0 {
		return malformed(op, "handshake data after server Finished in the same key epoch")
	}
	return nil
}

// sendClientFinished sends a compatibility change_cipher_spec (RFC 8446
// Appendix D.4, as the session ID was non-empty) and the client Finished,
// in one write.
func (hs *handshakeState) sendClientFinished() error {
	s := hs.suite
	// The application secrets hash the transcript through the server
	// Finished (RFC 8446 Section 7.1); needed only for close_notify.
	th := hs.transcript.sum()
	hs.masterSecret = s.masterSecret(hs.handshakeSecret)
	verify := s.finishedMAC(hs.clientHSSecret, th)
	finished := handshakeMessage(typeFinished, verify)
	if hs.cfg.ReadTicket || hs.cfg.Request != nil {
		// Tickets and responses come under the server application keys.
		hs.serverAppSecret = s.deriveSecret(hs.masterSecret, "s ap traffic", th)
	}
	if hs.cfg.ReadTicket {
		// A ticket's PSK hangs off resumption_master_secret, which also
		// covers the client Finished (RFC 8446 Section 7.1).
		hs.transcript.add(finished)
		hs.resumptionSecret = s.deriveSecret(hs.masterSecret, "res master", hs.transcript.sum())
	}
	var wire []byte
	wire = append(wire, recordChangeCipherSpec, 3, 3, 0, 1, 1)
	wire = hs.rc.appendRecord(wire, recordHandshake, finished)
	if hs.cfg.CloseNotify || hs.cfg.Request != nil {
		clientApp := s.deriveSecret(hs.masterSecret, "c ap traffic", th)
		out, err := s.trafficProtection(clientApp)
		if err != nil {
			return &Error{Kind: KindMalformed, Op: "compute application keys", Err: err}
		}
		hs.rc.out = out
	}
	if hs.cfg.Request != nil {
		wire = append(wire, hs.rc.records(recordApplicationData, hs.cfg.Request, 0)...)
	} else if hs.cfg.CloseNotify {
		wire = appendCloseNotify(hs.rc, wire)
	}
	return hs.rc.write("send client Finished", wire, 0)
}

// appendCloseNotify appends a close_notify alert: level warning (1),
// description 0 (RFC 8446 Section 6.1).
func appendCloseNotify(rc *recordConn, wire []byte) []byte {
	return rc.appendRecord(wire, recordAlert, []byte{1, 0})
}

// readTicket waits for the server's first NewSessionTicket (RFC 8446
// Section 4.6.1). crypto/tls sends it with its Finished, OpenSSL once it
// has read the client Finished.
func (hs *handshakeState) readTicket() error {
	const op = "read NewSessionTicket"
	if err := hs.setServerAppKeys(op); err != nil {
		return err
	}
	wait := hs.cfg.TicketTimeout
	if wait <= 0 {
		wait = time.Second
	}
	// The shorter deadline keeps a server that sends no tickets from
	// costing every handshake the whole Timeout.
	if d := time.Now().Add(wait); d.Before(hs.deadline) {
		hs.rc.conn.SetReadDeadline(d)
		defer hs.rc.conn.SetReadDeadline(hs.deadline)
	}
	msg, err := hs.rc.readHandshake(op)
	if err != nil {
		switch KindOf(err) {
		case KindTimeout, KindDial:
			return nil // no ticket in time, or the connection ended first
		case KindAlert:
			var e *Error
			if errors.As(err, &e) && e.Alert == 0 {
				return nil // close_notify
			}
		}
		return err
	}
	if hs.cfg.onMessage != nil {
		hs.cfg.onMessage(msg)
	}
	t, err := parseNewSessionTicket(msg)
	if err != nil {
		return err
	}
	if t.lifetime == 0 {
		return nil // RFC 8446 Section 4.6.1: discard immediately
	}
	hs.res.Session = hs.sessionFromTicket(t, time.Now())
	return nil
}

// setServerAppKeys switches incoming records to the server application
// traffic keys, once: readTicket and readResponse both read under them.
func (hs *handshakeState) setServerAppKeys(op string) error {
	if hs.appKeysIn {
		return nil
	}
	in, err := hs.suite.trafficProtection(hs.serverAppSecret)
	if err != nil {
		return &Error{Kind: KindMalformed, Op: op, Err: err}
	}
	if err := hs.rc.setReadKeys(op, in); err != nil {
		return err
	}
	hs.appKeysIn = true
	return nil
}

// closeNotify half-closes the connection and reads (and discards) what
// the server still sends until it closes, within the handshake deadline.
// After a Request it first sends the close_notify the Finished did not
// carry.
func (hs *handshakeState) closeNotify() error {
	if hs.cfg.Request != nil {
		// The server has usually closed already: a failed write or a
		// reset only says so.
		hs.rc.write("send close_notify", appendCloseNotify(hs.rc, nil), 0)
	}
	if cw, ok := hs.rc.conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	n, err := io.Copy(io.Discard, hs.rc.r)
	hs.rc.bytesReceived += int(n)
	if err != nil && KindOf(ioErr("", err)) == KindTimeout {
		return ioErr("wait for the server to close", err)
	}
	// A reset after close_notify still means the server read the Finished.
	return nil
}
