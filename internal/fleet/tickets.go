package fleet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pqedge/pqedge/internal/tickets"
)

// rotateLock is the fleet lock a node takes to write the ticket-key state,
// so one node rotates at a time.
const rotateLock = "tickets-rotate"

// TicketSource is a tickets.Source shared by a fleet: every node gets the
// same keys from the store, so a ticket sealed by one node resumes on any
// other.
//
// Each call to Keys syncs with the store: it reads the sealed state and,
// when a rotation is due (see rotation.plan), takes the fleet lock
// "tickets-rotate" and writes the next state (with WATCH, so a node whose
// lock lease ran out cannot overwrite a newer state). A node that finds
// the lock taken uses what it read; the rotation shows at its next sync.
//
// # Outages
//
// Keys never blocks longer than its ctx and never touches a handshake. If
// the store fails, Keys returns the error and the Keeper keeps the keys of
// its last successful call; a rotation due meanwhile waits, and the newest
// key keeps sealing. Only if this process has no keys yet (it started
// during the outage) does Keys fall back to the last state it cached,
// sealed, in Options.CacheDir, and logs that it did. If the store comes
// back empty (restarted without persistence) or with an older state (a
// backup), the first node to sync that knows a newer one republishes it,
// so tickets already issued still resume and IDs never repeat; nodes then
// converge on the store's state.
type TicketSource struct {
	f         *Fleet
	rot       rotation
	cachePath string

	syncMu sync.Mutex // serialises Keys calls

	mu           sync.Mutex   // guards the fields below
	state        *ticketState // the last state synced or loaded from the cache
	fromCache    bool         // state came from the cache, not the store
	cached       []byte       // the sealed bytes the cache file holds
	lastSync     time.Time    // last successful sync with the store
	lastErr      error        // the last failed sync's error
	sealingID    uint32       // the key the last Keys call said seals
	rotations    uint64       // states this node wrote
	cacheWritten time.Time    // when the cache file was last written (or, loaded, its mtime)
}

var _ tickets.Source = (*TicketSource)(nil)

func newTicketSource(f *Fleet) *TicketSource {
	t := &TicketSource{
		f: f,
		rot: rotation{
			every:    f.opts.TicketRotation,
			lifetime: f.opts.TicketLifetime,
			node:     f.opts.NodeID,
			random:   randomKey,
		},
	}
	if f.opts.CacheDir != "" {
		t.cachePath = cacheFile(f.opts.CacheDir)
	}
	return t
}

func randomKey() (secret [tickets.KeySize]byte, id uint32, err error) {
	var b [tickets.KeySize + 4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return secret, 0, fmt.Errorf("failed to generate a ticket key: %w", err)
	}
	copy(secret[:], b[:])
	return secret, binary.BigEndian.Uint32(b[tickets.KeySize:]), nil
}

// Keys implements tickets.Source: it syncs with the store (rotating if
// due) and returns every key that opens tickets at now, including the one
// that seals.
func (t *TicketSource) Keys(ctx context.Context, now time.Time) ([]tickets.Key, error) {
	t.syncMu.Lock()
	defer t.syncMu.Unlock()
	st, err := t.sync(ctx, now)
	if err != nil {
		t.mu.Lock()
		t.lastErr = err
		t.mu.Unlock()
		if st, err = t.fallback(err); err != nil {
			return nil, err
		}
	}
	keys, sealing, err := st.usable(now)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.sealingID = sealing
	t.mu.Unlock()
	return keys, nil
}

// sync reads the store's state, rotates it if due, and returns the state
// to serve.
func (t *TicketSource) sync(ctx context.Context, now time.Time) (*ticketState, error) {
	st, raw, err := t.load(ctx, t.f.client)
	if err != nil {
		return nil, err
	}
	if st != nil && !t.behind(st) {
		if next, err := t.rot.plan(st, now); err != nil {
			return nil, err
		} else if next == nil {
			t.adopt(st, raw)
			return st, nil
		}
	}
	return t.rotate(ctx, now, st)
}

// behind reports whether the store holds an older state than this node
// has seen: it was restored from a backup or replaced while the node was
// cut off. The node then republishes what it knows, so tickets sealed
// with keys the old state lacks still resume.
func (t *TicketSource) behind(st *ticketState) bool {
	k := t.known()
	return k != nil && st.Generation < k.Generation
}

// rotate writes the next state under the fleet lock. read is what sync
// read (nil: nothing in the store).
func (t *TicketSource) rotate(ctx context.Context, now time.Time, read *ticketState) (*ticketState, error) {
	s := t.f.storage
	ok, err := s.TryLock(ctx, rotateLock)
	if err != nil {
		return nil, err
	}
	if !ok {
		if read != nil {
			t.adopt(read, nil) // rotated by the lock holder; seen at the next sync
			return read, nil
		}
		return t.awaitFirst(ctx)
	}
	defer func() {
		if err := s.Unlock(context.WithoutCancel(ctx), rotateLock); err != nil {
			t.f.log.Warn("failed to release the ticket rotation lock", "err", err)
		}
	}()
	var written *ticketState
	var sealed []byte
	wrote := false
	key := t.f.keys.tickets()
	err = t.f.client.Watch(ctx, func(tx *redis.Tx) error {
		// Read again under the lock: another node may have rotated
		// between sync's read and our lock.
		cur, raw, err := t.load(ctx, tx)
		if err != nil {
			return err
		}
		base := cur
		republish := cur == nil || t.behind(cur)
		if republish {
			base = t.known() // the store lost or rolled back its state: republish ours
		}
		if republish && base != nil && cur != nil {
			base = base.clone()
			base.Generation = max(base.Generation, cur.Generation)
		}
		next, err := t.rot.plan(base, now)
		if err != nil {
			return err
		}
		if next == nil && republish && base != nil {
			next = base.clone()
			next.Generation++
			next.UpdatedBy, next.UpdatedAt = t.rot.node, now
		}
		if next == nil {
			written, sealed = cur, raw
			return nil
		}
		plain, err := next.encode()
		if err != nil {
			return err
		}
		if sealed, err = t.f.opts.Key.Seal(ticketsAD, plain); err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, sealed, 0)
			return nil
		})
		if err == nil {
			written, wrote = next, true
			if republish && base != nil {
				t.f.log.Warn("fleet store had no ticket keys, or older ones than this node; republished the keys this node knows", "generation", next.Generation)
			}
		}
		return err
	}, key)
	if err = t.f.observe(err); err != nil {
		if errors.Is(err, redis.TxFailedErr) {
			return nil, errors.New("the ticket-key state changed while rotating; retrying at the next refresh")
		}
		return nil, fmt.Errorf("failed to rotate fleet ticket keys: %w", err)
	}
	if wrote {
		t.mu.Lock()
		t.rotations++
		t.mu.Unlock()
		t.f.log.Info("rotated fleet ticket keys", "generation", written.Generation, "keys", len(written.Keys),
			"next_key_seals_from", written.Keys[len(written.Keys)-1].EncryptFrom)
	}
	t.adopt(written, sealed)
	return written, nil
}

// Polling for the fleet's first ticket-key state (awaitFirst): the node
// writing it needs one round trip, so the first poll comes soon; a
// writer that died holding the lock is waited for no longer than the
// caller's ctx.
const (
	firstPollMin = 10 * time.Millisecond
	firstPollMax = 200 * time.Millisecond
)

// awaitFirst waits for the node holding the rotation lock to write the
// fleet's first state, and adopts it. Nodes that start together meet here:
// without the wait, every node but the writer would seal its first
// tickets with a key of its own (the Keeper's fallback) until its next
// refresh, a minute later, and those tickets would resume on no other
// node.
func (t *TicketSource) awaitFirst(ctx context.Context) (*ticketState, error) {
	poll := firstPollMin
	for {
		timer := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("another node is writing the fleet's first ticket keys and has not finished; retrying at the next refresh: %w", ctx.Err())
		case <-timer.C:
		}
		st, raw, err := t.load(ctx, t.f.client)
		if err != nil {
			return nil, err
		}
		if st != nil {
			t.adopt(st, raw)
			return st, nil
		}
		poll = min(2*poll, firstPollMax)
	}
}

// load reads and opens the store's state; a missing state is (nil, nil,
// nil).
func (t *TicketSource) load(ctx context.Context, c redis.Cmdable) (*ticketState, []byte, error) {
	raw, err := c.Get(ctx, t.f.keys.tickets()).Bytes()
	switch err = t.f.observe(err); {
	case errors.Is(err, redis.Nil):
		return nil, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("failed to read fleet ticket keys: %w", err)
	}
	st, err := t.open(raw)
	if err != nil {
		return nil, nil, err
	}
	return st, raw, nil
}

func (t *TicketSource) open(sealed []byte) (*ticketState, error) {
	plain, err := t.f.opts.Key.Open(ticketsAD, sealed)
	if err != nil {
		return nil, err
	}
	return decodeTicketState(plain)
}

// known returns the state this node last had, or nil.
func (t *TicketSource) known() *ticketState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

// adopt makes st the node's state after a successful sync. sealed is its
// stored form when known; it goes to the cache if it differs from what
// the cache holds.
func (t *TicketSource) adopt(st *ticketState, sealed []byte) {
	t.mu.Lock()
	t.state, t.fromCache, t.lastSync, t.lastErr = st, false, time.Now(), nil
	write := sealed != nil && t.cachePath != "" && !bytes.Equal(sealed, t.cached)
	t.mu.Unlock()
	if !write {
		return
	}
	if err := writeCache(t.cachePath, sealed); err != nil {
		t.f.log.Warn("failed to cache fleet ticket keys; a restart during a store outage will have none", "err", err)
		return
	}
	t.mu.Lock()
	t.cached, t.cacheWritten = sealed, time.Now()
	t.mu.Unlock()
}

// fallback handles a failed sync: a node that has keys keeps them (the
// Keeper does), and one that has none loads the cache.
func (t *TicketSource) fallback(syncErr error) (*ticketState, error) {
	if t.known() != nil || t.cachePath == "" {
		return nil, syncErr
	}
	sealed, mtime, err := readCache(t.cachePath)
	if err != nil {
		return nil, fmt.Errorf("%w; no local ticket-key cache to start from: %v", syncErr, err)
	}
	st, err := t.open(sealed)
	if err != nil {
		return nil, fmt.Errorf("%w; local ticket-key cache %q is unusable: %v", syncErr, t.cachePath, err)
	}
	t.mu.Lock()
	t.state, t.fromCache, t.cached, t.cacheWritten = st, true, sealed, mtime
	t.mu.Unlock()
	t.f.log.Warn("fleet store unreachable at start; serving ticket keys from the local cache",
		"cache", t.cachePath, "written", mtime, "generation", st.Generation, "err", syncErr)
	return st, nil
}

// TicketStatus describes the node's ticket keys.
type TicketStatus struct {
	Generation   uint64    // the state's generation in use (each rotation adds one)
	SealingKeyID uint32    // the key sealing new tickets at the last Keys call
	Keys         int       // keys held (sealing, next, and old ones still opening tickets)
	NextSealFrom time.Time // when the newest key starts sealing: the next rotation is then
	LastSync     time.Time // last successful sync with the store; zero: never
	LastError    string    // the last failed sync's error, if the last sync failed
	FromCache    bool      // serving keys from the local cache: no sync yet since start
	CacheWritten time.Time // when the local cache was last written
	Rotations    uint64    // rotations this node wrote since start
}

func (t *TicketSource) status() TicketStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := TicketStatus{
		SealingKeyID: t.sealingID,
		LastSync:     t.lastSync,
		FromCache:    t.fromCache,
		CacheWritten: t.cacheWritten,
		Rotations:    t.rotations,
	}
	if t.lastErr != nil {
		s.LastError = t.lastErr.Error()
	}
	if t.state != nil {
		s.Generation = t.state.Generation
		s.Keys = len(t.state.Keys)
		if n := len(t.state.Keys); n > 0 {
			s.NextSealFrom = t.state.Keys[n-1].EncryptFrom
		}
	}
	return s
}
