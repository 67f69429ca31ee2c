// Package tickets owns the keys that seal TLS session tickets across config
// generations: which key seals new tickets, which keys may still open old
// ones, and where the keys come from (one process, or a fleet's shared
// store through a Source).
//
// It is not a session cache: tickets are stateless (RFC 8446 section 4.6.1),
// so everything a server needs to resume is inside the ticket, sealed under
// one of these keys.
package tickets

import (
	"context"
	"time"
)

// KeySize is the length of a ticket key's secret in bytes.
const KeySize = 32

// Key is one session-ticket key.
type Key struct {
	// ID names the key inside every ticket it seals, so the key that opens
	// a ticket is found without trying each one. IDs are unique within a
	// Source; a Source that rotates never reuses one while an old ticket
	// could still carry it.
	ID uint32
	// Secret is the key material; it never leaves the process unsealed.
	Secret [KeySize]byte
	// EncryptFrom is when the key starts sealing new tickets. Before that
	// it only opens them: a fleet publishes the next key one rotation
	// interval early, so every node can open tickets sealed with it before
	// any node seals with one.
	EncryptFrom time.Time
	// DecryptUntil is when tickets sealed with the key stop resuming: at
	// least the end of its sealing period plus the ticket lifetime.
	DecryptUntil time.Time
}

// Source supplies ticket keys.
//
// Keys returns every key usable at now: the one with the latest EncryptFrom
// not after now seals new tickets, and every key whose DecryptUntil is after
// now opens them. The Keeper calls it from its own refresh goroutine, once at
// start and then on a timer, never concurrently, never on a handshake. ctx
// bounds the call. On error the Keeper keeps serving with the keys of the
// last successful call (they expire only by DecryptUntil), logs and counts
// the failure, and tries again at the next refresh.
type Source interface {
	Keys(ctx context.Context, now time.Time) ([]Key, error)
}
