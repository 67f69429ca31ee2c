package tickets

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Keeper seals and opens the server's TLS session tickets with the keys of
// a Source. It is a component owned by the server and outlives config
// generations: every generation's TLS configs get their ticket hooks from
// the same Keeper (Configure), so a ticket issued before a reload resumes
// after it.
//
// # Tickets
//
// A ticket is header || nonce || XChaCha20-Poly1305(session state), where
// the header is a version byte, the sealing key's ID and a 4-byte tag of
// the issuing node (the first bytes of SHA-256 of its name). The header and
// the ticket's scope are the associated data, so a ticket only opens under
// the scope it was sealed for: sites of different scopes never resume each
// other's sessions (RFC 8446 section 4.6.1 lets the server decide what a
// ticket is good for). The header is not secret; it tells which node issued
// a ticket and which key sealed it (see Describe).
//
// # Concurrency
//
// Seal and open run on handshake goroutines and only take a read lock; the
// refresh goroutine started by Run swaps the key set under the write lock.
// A Source error never reaches a handshake: the Keeper keeps the keys it
// has until their DecryptUntil.
type Keeper struct {
	src       Source
	log       *slog.Logger
	now       func() time.Time
	node      [4]byte
	refresh   time.Duration
	onRefresh func(RefreshResult)

	mu   sync.RWMutex // guards keys and fallback
	keys []sealKey    // newest EncryptFrom first
	// fallback is a key made in-process when the Source has never given
	// any: tickets then resume on this node only, instead of failing the
	// handshakes that would issue them.
	fallback *sealKey
}

// sealKey is a Key with its AEAD ready.
type sealKey struct {
	Key
	aead interface {
		Seal(dst, nonce, plaintext, additionalData []byte) []byte
		Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
	}
}

// KeeperOptions configure a Keeper.
type KeeperOptions struct {
	// Source supplies the keys. Required.
	Source Source
	// Node names this server in the tickets it issues (a fleet's node_id;
	// default the host name).
	Node string
	// Refresh is how often Run asks the Source for keys. Default
	// DefaultRefresh.
	Refresh time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnRefresh, if set, is called after every call to the Source, from the
	// refresh goroutine (metrics, admin page). It must not block.
	OnRefresh func(RefreshResult)
	// Logger default slog.Default().
	Logger *slog.Logger
}

// RefreshResult reports one call to the Source.
type RefreshResult struct {
	Err error // nil when the Source answered
	// Keys is the number of keys in use after the call; Sealing the ID of
	// the key sealing new tickets (0 with none).
	Keys    int
	Sealing uint32
}

// DefaultRefresh is how often a Keeper asks its Source for keys: often
// enough that a fleet's newly published key is known to every node well
// before any node seals with it (a fleet publishes one rotation interval
// ahead, 12 h by default).
const DefaultRefresh = time.Minute

// ticket layout.
const (
	ticketVersion = 1
	headerLen     = 1 + 4 + 4 // version, key ID, node tag
	nonceLen      = chacha20poly1305.NonceSizeX
	// MaxTicketLen bounds what UnwrapSession looks at: a TLS 1.3 identity
	// is at most 2^16-1 bytes (RFC 8446 section 4.2.11).
	MaxTicketLen = 1<<16 - 1
)

// NewKeeper asks the Source for keys once, bounded by ctx, and returns a
// Keeper ready to seal. A failing Source is not an error here: the Keeper
// then seals with an in-process key until the Source answers (logged).
func NewKeeper(ctx context.Context, opts KeeperOptions) (*Keeper, error) {
	if opts.Source == nil {
		return nil, errors.New("failed to start the session-ticket keeper: no key source")
	}
	k := &Keeper{src: opts.Source, log: opts.Logger, now: opts.Now, refresh: opts.Refresh, onRefresh: opts.OnRefresh}
	if k.log == nil {
		k.log = slog.Default()
	}
	if k.now == nil {
		k.now = time.Now
	}
	if k.refresh <= 0 {
		k.refresh = DefaultRefresh
	}
	k.node = NodeTag(opts.Node)
	k.Refresh(ctx)
	return k, nil
}

// NodeTag is the 4-byte tag a node named name puts in its tickets.
func NodeTag(name string) [4]byte {
	sum := sha256.Sum256([]byte("pqedge ticket node\x00" + name))
	return [4]byte(sum[:4])
}

// Run refreshes the keys every Refresh interval until ctx ends. Call it in
// its own goroutine.
func (k *Keeper) Run(ctx context.Context) {
	t := time.NewTicker(k.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.Refresh(ctx)
		}
	}
}

// refreshTimeout bounds one call to the Source: a store that hangs must not
// hold the refresh goroutine past the next tick.
const refreshTimeout = 10 * time.Second

// Refresh asks the Source for keys now and installs them. On error the
// current keys stay.
func (k *Keeper) Refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	now := k.now()
	keys, err := k.src.Keys(ctx, now)
	var sealKeys []sealKey
	if err == nil {
		sealKeys, err = prepare(keys, now)
	}
	k.mu.Lock()
	if err == nil {
		k.keys = sealKeys
	} else {
		// Keys expire only by their lifetime, never by an outage.
		k.keys = slices.DeleteFunc(k.keys, func(s sealKey) bool { return !now.Before(s.DecryptUntil) })
		if k.sealingLocked(now) == nil && k.fallback == nil {
			fb, ferr := newFallback(now)
			if ferr == nil {
				k.fallback = fb
				k.log.Warn("no session-ticket key from the key source; sealing tickets with a key of this process (they resume on this node only)", "err", err)
			}
		}
	}
	res := RefreshResult{Err: err, Keys: len(k.keys)}
	if s := k.sealingLocked(now); s != nil {
		res.Sealing = s.ID
	}
	k.mu.Unlock()
	if err != nil {
		k.log.Warn("failed to refresh session-ticket keys; keeping the current ones", "err", err)
	}
	if k.onRefresh != nil {
		k.onRefresh(res)
	}
}

// prepare checks a Source's keys and makes their AEADs, newest first.
func prepare(keys []Key, now time.Time) ([]sealKey, error) {
	out := make([]sealKey, 0, len(keys))
	seen := map[uint32]bool{}
	for _, key := range keys {
		if seen[key.ID] {
			return nil, fmt.Errorf("key source returned key ID %d twice", key.ID)
		}
		seen[key.ID] = true
		if !now.Before(key.DecryptUntil) {
			continue
		}
		aead, err := chacha20poly1305.NewX(key.Secret[:])
		if err != nil {
			return nil, fmt.Errorf("failed to use ticket key %d: %w", key.ID, err)
		}
		out = append(out, sealKey{Key: key, aead: aead})
	}
	slices.SortFunc(out, func(a, b sealKey) int { return b.EncryptFrom.Compare(a.EncryptFrom) })
	return out, nil
}

func newFallback(now time.Time) (*sealKey, error) {
	var key Key
	if _, err := rand.Read(key.Secret[:]); err != nil {
		return nil, err
	}
	// IDs of the fallback key sit at the top of the ID space, which the
	// sources count up from zero and never reach.
	key.ID = 0xffffffff
	key.EncryptFrom, key.DecryptUntil = now, now.Add(LocalKeyLifetime)
	aead, err := chacha20poly1305.NewX(key.Secret[:])
	if err != nil {
		return nil, err
	}
	return &sealKey{Key: key, aead: aead}, nil
}

// sealingLocked returns the key that seals now: the newest whose
// EncryptFrom has come, else the fallback. k.mu must be held.
func (k *Keeper) sealingLocked(now time.Time) *sealKey {
	for i := range k.keys {
		if !now.Before(k.keys[i].EncryptFrom) && now.Before(k.keys[i].DecryptUntil) {
			return &k.keys[i]
		}
	}
	return k.fallback
}

// openingLocked returns the key with id that still opens tickets at now.
func (k *Keeper) openingLocked(id uint32, now time.Time) *sealKey {
	for i := range k.keys {
		if k.keys[i].ID == id && now.Before(k.keys[i].DecryptUntil) {
			return &k.keys[i]
		}
	}
	if k.fallback != nil && k.fallback.ID == id && now.Before(k.fallback.DecryptUntil) {
		return k.fallback
	}
	return nil
}

// Configure makes cfg's session tickets go through the Keeper under scope
// (WrapSession and UnwrapSession, which crypto/tls uses for TLS 1.2 and 1.3
// tickets alike). Call it while building cfg, before cfg is in use.
func (k *Keeper) Configure(cfg *tls.Config, scope string) {
	cfg.WrapSession = func(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		state, err := ss.Bytes()
		if err != nil {
			return nil, err
		}
		return k.Seal(scope, state)
	}
	cfg.UnwrapSession = func(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
		state, ok := k.Open(scope, identity)
		if !ok {
			// Not ours, expired or another scope's: a full handshake,
			// not an error (crypto/tls then ignores the identity).
			return nil, nil
		}
		ss, err := tls.ParseSessionState(state)
		if err != nil {
			return nil, nil
		}
		return ss, nil
	}
}

// Seal seals a session state for scope with the current key.
func (k *Keeper) Seal(scope string, state []byte) ([]byte, error) {
	now := k.now()
	k.mu.RLock()
	key := k.sealingLocked(now)
	k.mu.RUnlock()
	if key == nil {
		return nil, errors.New("failed to seal a session ticket: no ticket key")
	}
	out := make([]byte, headerLen+nonceLen, headerLen+nonceLen+len(state)+chacha20poly1305.Overhead)
	out[0] = ticketVersion
	binary.BigEndian.PutUint32(out[1:5], key.ID)
	copy(out[5:9], k.node[:])
	if _, err := rand.Read(out[headerLen:]); err != nil {
		return nil, fmt.Errorf("failed to seal a session ticket: %w", err)
	}
	return key.aead.Seal(out, out[headerLen:], state, additionalData(out[:headerLen], scope)), nil
}

// Open opens a ticket sealed for scope; ok is false for anything else.
func (k *Keeper) Open(scope string, ticket []byte) ([]byte, bool) {
	if len(ticket) < headerLen+nonceLen+chacha20poly1305.Overhead || len(ticket) > MaxTicketLen || ticket[0] != ticketVersion {
		return nil, false
	}
	now := k.now()
	k.mu.RLock()
	key := k.openingLocked(binary.BigEndian.Uint32(ticket[1:5]), now)
	k.mu.RUnlock()
	if key == nil {
		return nil, false
	}
	state, err := key.aead.Open(nil, ticket[headerLen:headerLen+nonceLen], ticket[headerLen+nonceLen:], additionalData(ticket[:headerLen], scope))
	return state, err == nil
}

func additionalData(header []byte, scope string) []byte {
	ad := make([]byte, 0, len(header)+len(scope))
	return append(append(ad, header...), scope...)
}

// Origin says where a ticket came from, from its header alone.
type Origin string

const (
	// OriginNone: not a ticket of this format (or none was offered).
	OriginNone Origin = ""
	// OriginSelf: issued by this node.
	OriginSelf Origin = "self"
	// OriginPeer: issued by another node sharing the keys (a fleet).
	OriginPeer Origin = "peer"
)

// Describe reads a ticket's header: the sealing key's ID and whether this
// node issued it. It does not open the ticket.
func (k *Keeper) Describe(ticket []byte) (keyID uint32, origin Origin) {
	if len(ticket) < headerLen || ticket[0] != ticketVersion {
		return 0, OriginNone
	}
	keyID = binary.BigEndian.Uint32(ticket[1:5])
	if [4]byte(ticket[5:9]) == k.node {
		return keyID, OriginSelf
	}
	return keyID, OriginPeer
}
