package leanclient

import (
	"hash"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Session is a resumable session: one NewSessionTicket from the server
// and the PSK derived for it (RFC 8446 Section 4.6.1). It is immutable, so
// one Session may be offered by many handshakes at once; whether the
// server accepts a ticket more than once is the server's choice
// (crypto/tls tickets are stateless and reusable until they expire or the
// server's ticket keys change).
type Session struct {
	Ticket      []byte
	PSK         []byte // secret: HKDF-Expand-Label(resumption_master_secret, "resumption", nonce)
	CipherSuite uint16 // the PSK may only be used with a suite of the same hash
	AgeAdd      uint32
	Lifetime    time.Duration
	Received    time.Time
	ServerName  string
	ALPN        string
}

// usable reports whether the session may be offered to serverName at now:
// RFC 8446 Section 4.6.1 forbids using a ticket beyond its lifetime, and a
// client should resume only with the server name it was issued for.
func (s *Session) usable(serverName string, now time.Time) bool {
	return s != nil && len(s.Ticket) > 0 && lookupCipherSuite(s.CipherSuite) != nil &&
		s.ServerName == serverName && now.Before(s.Received.Add(s.Lifetime))
}

// obfuscatedAge is the ticket age in milliseconds plus ticket_age_add,
// modulo 2^32 (RFC 8446 Section 4.2.11.1).
func (s *Session) obfuscatedAge(now time.Time) uint32 {
	return uint32(now.Sub(s.Received).Milliseconds()) + s.AgeAdd
}

// Extension types of resumption (RFC 8446 Section 4.2).
const (
	extPreSharedKey         = 41
	extEarlyData            = 42
	extPSKKeyExchangeModes  = 45
	pskModeDHE              = 1 // psk_dhe_ke (RFC 8446 Section 4.2.9)
	maxTicketLifetimeSecond = 604800
)

// newSessionTicket is a parsed NewSessionTicket (RFC 8446 Section 4.6.1).
type newSessionTicket struct {
	lifetime uint32 // seconds
	ageAdd   uint32
	nonce    []byte
	ticket   []byte
}

// parseNewSessionTicket parses a whole NewSessionTicket message, header
// included. Extensions (early_data) are checked for framing and ignored:
// the client sends no early data.
func parseNewSessionTicket(msg []byte) (*newSessionTicket, error) {
	const op = "parse NewSessionTicket"
	body, err := messageBody(op, msg, typeNewSessionTicket)
	if err != nil {
		return nil, err
	}
	t := &newSessionTicket{}
	var exts cryptobyte.String
	if !body.ReadUint32(&t.lifetime) || !body.ReadUint32(&t.ageAdd) ||
		!readUint8Bytes(&body, &t.nonce) || !readUint16Bytes(&body, &t.ticket) ||
		!body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return nil, malformed(op, "bad NewSessionTicket message")
	}
	if len(t.ticket) == 0 {
		return nil, malformed(op, "empty ticket")
	}
	// RFC 8446 Section 4.6.1: servers MUST NOT use a lifetime over 7 days.
	if t.lifetime > maxTicketLifetimeSecond {
		return nil, malformed(op, "ticket_lifetime %d s exceeds 7 days", t.lifetime)
	}
	for !exts.Empty() {
		var ext uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil, malformed(op, "truncated extension")
		}
		if ext == extEarlyData {
			var maxEarly uint32
			if !data.ReadUint32(&maxEarly) || !data.Empty() {
				return nil, malformed(op, "bad early_data extension")
			}
		}
	}
	return t, nil
}

// pskOffer is what the ClientHello's pre_shared_key carries (RFC 8446
// Section 4.2.11): one identity and, once computed, its binder.
type pskOffer struct {
	identity []byte
	age      uint32
	binder   []byte // one hash of zeros: signPSKBinder writes the binder into the marshaled ClientHello
}

// marshal appends pre_shared_key, which must be the last extension
// (RFC 8446 Section 4.2.11).
func (p *pskOffer) marshal(b *cryptobyte.Builder) {
	b.AddUint16(extPreSharedKey)
	addU16Prefixed(b, func(b *cryptobyte.Builder) {
		addU16Prefixed(b, func(b *cryptobyte.Builder) {
			addU16Prefixed(b, func(b *cryptobyte.Builder) { b.AddBytes(p.identity) })
			b.AddUint32(p.age)
		})
		addU16Prefixed(b, func(b *cryptobyte.Builder) {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.binder) })
		})
	})
}

// binderKey is the "res binder" secret of the early secret of psk (RFC 8446
// Section 7.1).
func (s *cipherSuite) binderKey(psk []byte) []byte {
	early := s.extract(psk, nil)
	return s.deriveSecret(early, "res binder", s.emptyHash())
}

// signPSKBinder fills in the binder of a marshaled ClientHello whose last
// extension is pre_shared_key. prefix holds the transcript before this
// ClientHello (nil for the first one, message_hash and HelloRetryRequest
// after a retry); the binder is the Finished MAC over prefix and the
// truncated ClientHello (RFC 8446 Section 4.2.11.2).
func signPSKBinder(s *cipherSuite, psk []byte, prefix hash.Hash, msg []byte, binderLen int) {
	h := s.hash.New()
	if prefix != nil {
		c, err := prefix.(hash.Cloner).Clone()
		if err != nil {
			// Every standard-library hash clones.
			panic("leanclient: clone transcript: " + err.Error())
		}
		h = c
	}
	// Truncate(ClientHello) drops the binders list: its 2-byte length, the
	// binder's 1-byte length and the binder.
	h.Write(msg[:len(msg)-(2+1+binderLen)])
	binder := s.finishedMAC(s.binderKey(psk), h.Sum(nil))
	copy(msg[len(msg)-binderLen:], binder)
}

// sessionFromTicket derives the ticket's PSK (RFC 8446 Section 4.6.1).
func (hs *handshakeState) sessionFromTicket(t *newSessionTicket, now time.Time) *Session {
	s := hs.suite
	return &Session{
		Ticket:      t.ticket,
		PSK:         s.expandLabel(hs.resumptionSecret, "resumption", t.nonce, s.hash.Size()),
		CipherSuite: s.id,
		AgeAdd:      t.ageAdd,
		Lifetime:    time.Duration(t.lifetime) * time.Second,
		Received:    now,
		ServerName:  hs.cfg.ServerName,
		ALPN:        hs.res.ALPN,
	}
}
