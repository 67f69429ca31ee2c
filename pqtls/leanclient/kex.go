package leanclient

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/kem"
	"github.com/cloudflare/circl/kem/kyber/kyber768"
	"github.com/cloudflare/circl/kem/mlkem/mlkem1024"
	"github.com/cloudflare/circl/kem/mlkem/mlkem512"
	"github.com/cloudflare/circl/kem/mlkem/mlkem768"

	"github.com/pqedge/pqedge/pqtls"
)

// groupImpl says how a NamedGroup's key_share is built: an elliptic-curve
// part, a KEM part, or both, and in which order they are concatenated.
type groupImpl struct {
	curve ecCurve
	kem   kem.Scheme
	// ecdhFirst puts the ECDH share (and secret) before the KEM's. The order
	// differs per group: draft-ietf-tls-ecdhe-mlkem Section 4 puts ML-KEM
	// first for X25519MLKEM768 (so the FIPS-approved secret leads) and the
	// NIST curve first for SecP256r1MLKEM768 and SecP384r1MLKEM1024; the
	// Kyber draft (X25519Kyber768Draft00) put X25519 first.
	ecdhFirst bool
}

// lookupGroupImpl is the one switch over the groups this client can offer a
// key share for.
func lookupGroupImpl(g tls.CurveID) (groupImpl, error) {
	switch g {
	case tls.X25519:
		return groupImpl{curve: x25519Curve{}}, nil
	case tls.CurveP256:
		return groupImpl{curve: nistCurve{ecdh.P256()}}, nil
	case tls.CurveP384:
		return groupImpl{curve: nistCurve{ecdh.P384()}}, nil
	case tls.CurveP521:
		return groupImpl{curve: nistCurve{ecdh.P521()}}, nil
	case pqtls.GroupMLKEM512:
		return groupImpl{kem: mlkem512.Scheme()}, nil
	case pqtls.GroupMLKEM768:
		return groupImpl{kem: mlkem768.Scheme()}, nil
	case tls.MLKEM1024:
		return groupImpl{kem: mlkem1024.Scheme()}, nil
	case tls.X25519MLKEM768:
		return groupImpl{curve: x25519Curve{}, kem: mlkem768.Scheme()}, nil
	case tls.SecP256r1MLKEM768:
		return groupImpl{curve: nistCurve{ecdh.P256()}, kem: mlkem768.Scheme(), ecdhFirst: true}, nil
	case tls.SecP384r1MLKEM1024:
		return groupImpl{curve: nistCurve{ecdh.P384()}, kem: mlkem1024.Scheme(), ecdhFirst: true}, nil
	case pqtls.GroupX25519Kyber768Draft00:
		return groupImpl{curve: x25519Curve{}, kem: kyber768.Scheme(), ecdhFirst: true}, nil
	}
	return groupImpl{}, fmt.Errorf("unsupported group %s", pqtls.GroupName(g))
}

// SupportedGroups lists the groups this client can send a key share for,
// post-quantum first.
func SupportedGroups() []tls.CurveID {
	var out []tls.CurveID
	for _, g := range pqtls.Groups() {
		if _, err := lookupGroupImpl(g.ID); err == nil {
			out = append(out, g.ID)
		}
	}
	return out
}

// greaseGroup is the group of a key share for a GREASE group (RFC 8701 Section 2): one
// byte a server must ignore. The probe sends it to force a
// HelloRetryRequest for the group it is testing.
const greaseGroup tls.CurveID = 0x0a0a

// keyShare is the client's private state for one key_share entry.
type keyShare struct {
	group  tls.CurveID
	impl   groupImpl
	share  []byte // the key_exchange field sent
	ecdhSK ecKey
	kemSK  kem.PrivateKey
	// serverShare is the exact size of the server's key_exchange, from
	// pqtls' group table.
	serverShare int
}

// newKeyShare generates a fresh ephemeral key for g.
func newKeyShare(g tls.CurveID) (*keyShare, error) {
	if pqtls.IsGREASE(uint16(g)) {
		return &keyShare{group: g, share: []byte{0}}, nil
	}
	impl, err := lookupGroupImpl(g)
	if err != nil {
		return nil, err
	}
	info, _ := pqtls.LookupGroup(g) // every group lookupGroupImpl knows is in the table
	ks := &keyShare{group: g, impl: impl, serverShare: info.ServerShare}
	var ecPub, kemPub []byte
	if impl.curve != nil {
		if ks.ecdhSK, err = impl.curve.generate(); err != nil {
			return nil, fmt.Errorf("failed to generate %s key: %w", pqtls.GroupName(g), err)
		}
		ecPub = ks.ecdhSK.public()
	}
	if impl.kem != nil {
		pk, sk, err := impl.kem.GenerateKeyPair()
		if err != nil {
			return nil, fmt.Errorf("failed to generate %s key: %w", pqtls.GroupName(g), err)
		}
		ks.kemSK = sk
		if kemPub, err = pk.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("failed to encode %s key: %w", pqtls.GroupName(g), err)
		}
	}
	if impl.ecdhFirst {
		ks.share = append(ecPub, kemPub...)
	} else {
		ks.share = append(kemPub, ecPub...)
	}
	return ks, nil
}

// sharedSecret combines the server's key_exchange with the private key into
// the (EC)DHE input of the key schedule (RFC 8446 Section 7.4; for the
// hybrids the concatenation of draft-ietf-tls-ecdhe-mlkem Section 3.2).
func (ks *keyShare) sharedSecret(server []byte) ([]byte, error) {
	if ks.ecdhSK == nil && ks.kemSK == nil {
		return nil, fmt.Errorf("no key for group %s", pqtls.GroupName(ks.group))
	}
	if len(server) != ks.serverShare {
		return nil, fmt.Errorf("server key share for %s is %d bytes, want %d", pqtls.GroupName(ks.group), len(server), ks.serverShare)
	}
	var ecPart, kemPart []byte
	if ks.ecdhSK != nil {
		n := len(ks.ecdhSK.public())
		if ks.impl.ecdhFirst || ks.kemSK == nil {
			ecPart, kemPart = server[:n], server[n:]
		} else {
			kemPart, ecPart = server[:len(server)-n], server[len(server)-n:]
		}
	} else {
		kemPart = server
	}
	var ecSS, kemSS []byte
	if ks.ecdhSK != nil {
		var err error
		if ecSS, err = ks.ecdhSK.shared(ecPart); err != nil {
			return nil, fmt.Errorf("failed to compute %s secret: %w", pqtls.GroupName(ks.group), err)
		}
	}
	if ks.kemSK != nil {
		var err error
		if kemSS, err = ks.impl.kem.Decapsulate(ks.kemSK, kemPart); err != nil {
			return nil, fmt.Errorf("failed to decapsulate %s: %w", pqtls.GroupName(ks.group), err)
		}
	}
	if ks.impl.ecdhFirst {
		return append(ecSS, kemSS...), nil
	}
	return append(kemSS, ecSS...), nil
}

// ShareCache holds one precomputed key share per group and hands the same
// one to every handshake (load mode).
//
// FOR BENCHMARKING ONLY: reusing an ephemeral private key destroys forward
// secrecy; anyone who learns the key can decrypt every handshake that used
// it. It exists so that a load generator spends its CPU on the server
// under test, not on its own key generation. A ShareCache is safe for
// concurrent use.
type ShareCache struct {
	mu     sync.Mutex // guards shares
	shares map[tls.CurveID]*keyShare
}

// NewShareCache returns an empty cache; shares are made on first use or by
// Precompute.
func NewShareCache() *ShareCache {
	return &ShareCache{shares: make(map[tls.CurveID]*keyShare)}
}

// Precompute makes the shares for groups now, so that the first handshakes
// of a benchmark do not pay for them.
func (c *ShareCache) Precompute(groups ...tls.CurveID) error {
	for _, g := range groups {
		if _, err := c.get(g); err != nil {
			return err
		}
	}
	return nil
}

func (c *ShareCache) get(g tls.CurveID) (*keyShare, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ks, ok := c.shares[g]; ok {
		return ks, nil
	}
	ks, err := newKeyShare(g)
	if err != nil {
		return nil, err
	}
	c.shares[g] = ks
	return ks, nil
}

// ecCurve makes ephemeral elliptic-curve keys.
type ecCurve interface {
	generate() (ecKey, error)
}

// ecKey is an ephemeral private key; shared is its ECDH with a peer's
// encoded public key.
type ecKey interface {
	public() []byte
	shared(peer []byte) ([]byte, error)
}

// nistCurve is P-256, P-384 or P-521 through crypto/ecdh, which checks the
// peer's point (RFC 8446 Section 4.2.8.2).
type nistCurve struct{ c ecdh.Curve }

type nistKey struct {
	sk  *ecdh.PrivateKey
	pub []byte
}

func (n nistCurve) generate() (ecKey, error) {
	sk, err := n.c.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &nistKey{sk: sk, pub: sk.PublicKey().Bytes()}, nil
}

func (k *nistKey) public() []byte { return k.pub }

func (k *nistKey) shared(peer []byte) ([]byte, error) {
	pub, err := k.sk.Curve().NewPublicKey(peer)
	if err != nil {
		return nil, err
	}
	return k.sk.ECDH(pub)
}

// x25519Curve uses circl's X25519, about three times faster than
// crypto/ecdh's on amd64: the client's ECDH is the largest cost left in
// load mode, where key generation is cached.
type x25519Curve struct{}

type x25519Key struct{ sk, pk x25519.Key }

func (x25519Curve) generate() (ecKey, error) {
	k := &x25519Key{}
	if _, err := rand.Read(k.sk[:]); err != nil {
		return nil, err
	}
	x25519.KeyGen(&k.pk, &k.sk)
	return k, nil
}

func (k *x25519Key) public() []byte { return k.pk[:] }

func (k *x25519Key) shared(peer []byte) ([]byte, error) {
	if len(peer) != x25519.Size {
		return nil, fmt.Errorf("X25519 share of %d bytes", len(peer))
	}
	var pk, ss x25519.Key
	copy(pk[:], peer)
	// RFC 8446 Section 7.4.2: an all-zero result (a low-order point) must
	// abort the handshake; Shared reports it as false.
	if !x25519.Shared(&ss, &k.sk, &pk) {
		return nil, errors.New("X25519 share is a low-order point")
	}
	return ss[:], nil
}
