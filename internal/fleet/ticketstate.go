package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pqedge/pqedge/internal/tickets"
)

// maxTicketKeys caps the keys a state may hold. With the shortest
// rotation config allows (1 minute) and a 7-day lifetime a fleet would
// keep about 10,000; at the default 12 h, 16.
const maxTicketKeys = 16384

// ticketState is the fleet's ticket keys, sealed as JSON at
// PREFIX + "tickets". Every write increments Generation.
type ticketState struct {
	Version    int         `json:"version"`
	Generation uint64      `json:"generation"`
	NextID     uint32      `json:"next_id"` // the ID the next new key gets (skipping IDs in use)
	Keys       []ticketKey `json:"keys"`    // sorted by EncryptFrom
	UpdatedBy  string      `json:"updated_by"`
	UpdatedAt  time.Time   `json:"updated_at"`
}

type ticketKey struct {
	ID           uint32    `json:"id"`
	Secret       []byte    `json:"secret"`
	EncryptFrom  time.Time `json:"encrypt_from"`
	DecryptUntil time.Time `json:"decrypt_until"`
	CreatedBy    string    `json:"created_by"`
}

const ticketStateVersion = 1

func (st *ticketState) encode() ([]byte, error) { return json.Marshal(st) }

// decodeTicketState parses and checks a state. It runs on values that
// opened under the fleet key, so only a fleet member could have written
// them, but a bug or an older pqedge might have: every invariant the
// rotation relies on is checked.
func decodeTicketState(data []byte) (*ticketState, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	st := &ticketState{}
	if err := dec.Decode(st); err != nil {
		return nil, fmt.Errorf("bad ticket-key state: %w", err)
	}
	if dec.More() {
		return nil, errors.New("bad ticket-key state: trailing data")
	}
	if st.Version != ticketStateVersion {
		return nil, fmt.Errorf("bad ticket-key state: version %d, want %d (written by another pqedge version?)", st.Version, ticketStateVersion)
	}
	if len(st.Keys) > maxTicketKeys {
		return nil, fmt.Errorf("bad ticket-key state: %d keys, more than %d", len(st.Keys), maxTicketKeys)
	}
	ids := map[uint32]bool{}
	for i, k := range st.Keys {
		switch {
		case len(k.Secret) != tickets.KeySize:
			return nil, fmt.Errorf("bad ticket-key state: key %d has a %d-byte secret, want %d", k.ID, len(k.Secret), tickets.KeySize)
		case ids[k.ID]:
			return nil, fmt.Errorf("bad ticket-key state: key ID %d appears twice", k.ID)
		case !k.DecryptUntil.After(k.EncryptFrom):
			return nil, fmt.Errorf("bad ticket-key state: key %d stops opening tickets before it seals any", k.ID)
		case i > 0 && !k.EncryptFrom.After(st.Keys[i-1].EncryptFrom):
			return nil, fmt.Errorf("bad ticket-key state: keys are not in sealing order at key %d", k.ID)
		}
		ids[k.ID] = true
	}
	return st, nil
}

func (st *ticketState) clone() *ticketState {
	c := *st
	c.Keys = slices.Clone(st.Keys)
	return &c
}

// usable returns the keys that open tickets at now, for the Keeper, and
// the ID of the one that seals. It fails if no key seals at now.
func (st *ticketState) usable(now time.Time) ([]tickets.Key, uint32, error) {
	var out []tickets.Key
	sealing, found := uint32(0), false
	for _, k := range st.Keys {
		if !k.DecryptUntil.After(now) {
			continue
		}
		tk := tickets.Key{ID: k.ID, EncryptFrom: k.EncryptFrom, DecryptUntil: k.DecryptUntil}
		copy(tk.Secret[:], k.Secret)
		out = append(out, tk)
		if !k.EncryptFrom.After(now) {
			sealing, found = k.ID, true
		}
	}
	if !found {
		return nil, 0, errors.New("no fleet ticket key seals now (all are in the future or expired)")
	}
	return out, sealing, nil
}

// firstKeyBackdate is how long before it is written the first key of a
// state starts sealing. Every other key is published one interval before
// it seals, but the first (of a new fleet, or after every key expired)
// seals at once: a node whose clock is behind the writer's, or that read
// its clock before the write reached the store (nodes starting together),
// would otherwise find no key that seals "now" and seal with a key of its
// own until its next refresh. A minute covers any clock kept by NTP.
const firstKeyBackdate = time.Minute

// rotation is the fleet's schedule: how long a key seals and how long a
// ticket resumes.
type rotation struct {
	every    time.Duration
	lifetime time.Duration
	node     string
	random   func() ([tickets.KeySize]byte, uint32, error) // a secret, and a first ID for a new state
}

// plan returns the state a rotation at now should write, or nil if st
// (nil: none in the store) needs no change. The rules:
//
//   - keys that open no ticket any more (DecryptUntil passed) are dropped;
//   - with no key left, a key that seals from now (backdated by
//     firstKeyBackdate) and its successor are made;
//   - once the newest key seals (EncryptFrom <= now), its successor is
//     made to seal from now + every: the next key is always published one
//     interval before any node seals with it, so every node that syncs
//     more often than that can open its tickets;
//   - a key seals until its successor does, so its DecryptUntil is its
//     successor's EncryptFrom plus the ticket lifetime (provisionally
//     EncryptFrom + every + lifetime for the newest).
//
// A rotation due while the store is down simply happens at the first sync
// after it: the newest key keeps sealing meanwhile.
func (r rotation) plan(st *ticketState, now time.Time) (*ticketState, error) {
	var next *ticketState
	if st == nil {
		_, first, err := r.random()
		if err != nil {
			return nil, err
		}
		next = &ticketState{Version: ticketStateVersion, NextID: first}
	} else {
		next = st.clone()
	}
	changed := st == nil
	live := next.Keys[:0]
	for _, k := range next.Keys {
		if k.DecryptUntil.After(now) {
			live = append(live, k)
		} else {
			changed = true
		}
	}
	next.Keys = live
	if len(next.Keys) == 0 {
		if err := r.add(next, now.Add(-firstKeyBackdate)); err != nil {
			return nil, err
		}
		changed = true
	}
	if newest := next.Keys[len(next.Keys)-1]; !newest.EncryptFrom.After(now) {
		if err := r.add(next, now.Add(r.every)); err != nil {
			return nil, err
		}
		changed = true
	}
	if !changed {
		return nil, nil
	}
	next.Generation++
	next.UpdatedBy, next.UpdatedAt = r.node, now
	return next, nil
}

// add appends a key sealing from `from` with an ID no key in st holds,
// and extends its predecessor to open tickets it seals until then.
func (r rotation) add(st *ticketState, from time.Time) error {
	secret, _, err := r.random()
	if err != nil {
		return err
	}
	inUse := make(map[uint32]bool, len(st.Keys))
	for _, k := range st.Keys {
		inUse[k.ID] = true
	}
	id := st.NextID
	for inUse[id] {
		id++ // only after 2^32 keys, or a state restored from a cache
	}
	st.NextID = id + 1
	if n := len(st.Keys); n > 0 {
		prev := &st.Keys[n-1]
		if end := from.Add(r.lifetime); end.After(prev.DecryptUntil) {
			prev.DecryptUntil = end
		}
	}
	st.Keys = append(st.Keys, ticketKey{
		ID:           id,
		Secret:       secret[:],
		EncryptFrom:  from,
		DecryptUntil: from.Add(r.every + r.lifetime),
		CreatedBy:    r.node,
	})
	return nil
}
