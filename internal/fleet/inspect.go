package fleet

import (
	"context"
	"fmt"
	"time"
)

// Report is what Inspect finds in the store.
type Report struct {
	RoundTrip   time.Duration // of a PING
	Tickets     *TicketReport // nil: no ticket keys in the store yet
	ACMEEntries int64         // certmagic values (accounts, certificates, keys, challenge data)
	Locks       int           // locks held now, by any node
}

// TicketReport describes the ticket-key state in the store.
type TicketReport struct {
	Generation   uint64
	Keys         int
	SealingKeyID uint32    // the key that seals at the time given to Inspect
	NextSealFrom time.Time // when the newest key starts sealing
	UpdatedBy    string    // the node that wrote the state
	UpdatedAt    time.Time
}

// maxLockScan caps the keys Inspect's lock count walks through, on a
// server other fleets or applications may fill.
const maxLockScan = 100000

// Inspect reads the store without writing anything: for `pqedge fleet
// check`, run from any node (or an operator's machine with the fleet's key
// file) to see whether the store is up and whether this key opens what is
// there. An error names what failed: the connection, the password, or a
// key file that is not the fleet's (ErrWrongKey).
func (f *Fleet) Inspect(ctx context.Context, now time.Time) (Report, error) {
	var r Report
	start := time.Now()
	if err := f.Ping(ctx); err != nil {
		return r, err
	}
	r.RoundTrip = time.Since(start)
	st, _, err := f.tickets.load(ctx, f.client)
	if err != nil {
		return r, err
	}
	if st != nil {
		tr := &TicketReport{Generation: st.Generation, Keys: len(st.Keys), UpdatedBy: st.UpdatedBy, UpdatedAt: st.UpdatedAt}
		if n := len(st.Keys); n > 0 {
			tr.NextSealFrom = st.Keys[n-1].EncryptFrom
		}
		if _, id, err := st.usable(now); err == nil {
			tr.SealingKeyID = id
		}
		r.Tickets = tr
	}
	if r.ACMEEntries, err = f.client.ZCard(ctx, f.keys.acmeIndex()).Result(); f.observe(err) != nil {
		return r, fmt.Errorf("failed to count ACME entries: %w", err)
	}
	// The prefix has no glob characters (CheckKeyPrefix).
	it := f.client.Scan(ctx, 0, f.keys.lock("*"), 1000).Iterator()
	for n := 0; n < maxLockScan && it.Next(ctx); n++ {
		r.Locks++
	}
	if err := f.observe(it.Err()); err != nil {
		return r, fmt.Errorf("failed to count locks: %w", err)
	}
	return r, nil
}
