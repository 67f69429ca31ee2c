package tickets

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"
)

// Lifetimes, as crypto/tls's own ticket keys have them.
const (
	// TicketLifetime is the longest crypto/tls resumes a session (its
	// maxSessionTicketLifetime; RFC 8446 section 4.6.1 caps it at 7 days).
	TicketLifetime = 7 * 24 * time.Hour
	// LocalRotation is how long a LocalSource key seals new tickets.
	LocalRotation = 24 * time.Hour
	// LocalKeyLifetime is how long a LocalSource key opens tickets: its
	// sealing period plus the lifetime of the last ticket it sealed.
	LocalKeyLifetime = LocalRotation + TicketLifetime
)

// LocalSource makes ticket keys in process memory: a new key every
// LocalRotation, each opening tickets for LocalKeyLifetime. Tickets resume
// on this process only, across reloads but not restarts. It is the Source
// of a node without a fleet.
type LocalSource struct {
	mu     sync.Mutex // guards keys and nextID
	keys   []Key
	nextID uint32
}

var _ Source = (*LocalSource)(nil)

// Keys rotates if the newest key is due and returns the keys still valid.
func (s *LocalSource) Keys(_ context.Context, now time.Time) ([]Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.keys[:0]
	for _, k := range s.keys {
		if now.Before(k.DecryptUntil) {
			live = append(live, k)
		}
	}
	s.keys = live
	if n := len(s.keys); n == 0 || !now.Before(s.keys[n-1].EncryptFrom.Add(LocalRotation)) {
		k := Key{ID: s.nextID, EncryptFrom: now, DecryptUntil: now.Add(LocalKeyLifetime)}
		if _, err := rand.Read(k.Secret[:]); err != nil {
			return nil, fmt.Errorf("failed to make a session-ticket key: %w", err)
		}
		s.nextID++
		s.keys = append(s.keys, k)
	}
	return append([]Key(nil), s.keys...), nil
}
