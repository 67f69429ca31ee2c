package server

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pqedge/pqedge/internal/fleet"
)

// fleetCollector exports a Fleet's Status as metrics, read at each scrape:
// the Fleet keeps the counts, so nothing here polls or copies them.
type fleetCollector struct {
	f *fleet.Fleet

	info, up, failures, lastContact                                 *prometheus.Desc
	generation, lastSync, fromCache, nextRotation, rotations, keyID *prometheus.Desc
	locksHeld, lockWaiting, lockWaits, lockWaitSeconds, locksLost   *prometheus.Desc
}

func newFleetCollector(f *fleet.Fleet) *fleetCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &fleetCollector{
		f:           f,
		info:        d("pqedge_fleet_info", "1, labelled with the fleet store (without credentials), this node's id and the encryption key's fingerprint (nodes showing different ones cannot read each other's values).", "store", "node", "key"),
		up:          d("pqedge_fleet_store_up", "1 when the last call to the fleet store succeeded, else 0. Not in the handshake path: nodes keep serving while it is 0."),
		failures:    d("pqedge_fleet_store_failures_total", "Failed calls to the fleet store since start."),
		lastContact: d("pqedge_fleet_store_last_contact_timestamp_seconds", "Unix time of the last successful call to the fleet store; 0 if none yet."),
		generation:  d("pqedge_fleet_ticket_generation", "Generation of the fleet's ticket-key state this node uses (each rotation adds one); nodes that agree show the same."),
		keyID:       d("pqedge_fleet_ticket_sealing_key_id", "ID of the ticket key sealing new tickets at the last refresh; nodes that agree show the same."),
		lastSync:    d("pqedge_fleet_ticket_last_sync_timestamp_seconds", "Unix time of the last successful ticket-key sync with the store; 0 if none yet."),
		fromCache:   d("pqedge_fleet_ticket_keys_from_cache", "1 while the ticket keys come from the local cache (the node started while the store was down), else 0."),
		nextRotation: d("pqedge_fleet_ticket_next_rotation_timestamp_seconds",
			"Unix time the newest ticket key starts sealing, when the next rotation is due; 0 without keys."),
		rotations:       d("pqedge_fleet_ticket_rotations_total", "Ticket-key rotations this node wrote to the store."),
		locksHeld:       d("pqedge_fleet_locks_held", "Fleet locks this node holds now."),
		lockWaiting:     d("pqedge_fleet_lock_waiting", "Calls on this node waiting for a fleet lock now."),
		lockWaits:       d("pqedge_fleet_lock_waits_total", "Lock calls that found the lock taken by another node or goroutine, and waited."),
		lockWaitSeconds: d("pqedge_fleet_lock_wait_seconds_total", "Total time lock calls waited."),
		locksLost:       d("pqedge_fleet_locks_lost_total", "Fleet locks whose lease ran out while this node held them (a stalled node or a store outage)."),
	}
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.info, c.up, c.failures, c.lastContact, c.generation, c.keyID, c.lastSync, c.fromCache,
		c.nextRotation, c.rotations, c.locksHeld, c.lockWaiting, c.lockWaits, c.lockWaitSeconds, c.locksLost} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.f.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(c.info, 1, st.Store, st.NodeID, st.KeyFingerprint)
	gauge(c.up, boolFloat(st.Reachable))
	counter(c.failures, float64(st.Failures))
	gauge(c.lastContact, unixSeconds(st.LastContact))
	gauge(c.generation, float64(st.Tickets.Generation))
	gauge(c.keyID, float64(st.Tickets.SealingKeyID))
	gauge(c.lastSync, unixSeconds(st.Tickets.LastSync))
	gauge(c.fromCache, boolFloat(st.Tickets.FromCache))
	gauge(c.nextRotation, unixSeconds(st.Tickets.NextSealFrom))
	counter(c.rotations, float64(st.Tickets.Rotations))
	gauge(c.locksHeld, float64(st.Locks.Held))
	gauge(c.lockWaiting, float64(st.Locks.Waiting))
	counter(c.lockWaits, float64(st.Locks.Waits))
	counter(c.lockWaitSeconds, st.Locks.WaitTime.Seconds())
	counter(c.locksLost, float64(st.Locks.Lost))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// fleetPage is what /fleet on the admin listener answers, as JSON (times in
// RFC 3339, zero when never).
type fleetPage struct {
	Fleet       bool      `json:"fleet"` // false: this node has no [fleet]
	Store       string    `json:"store,omitempty"`
	Node        string    `json:"node,omitempty"`
	Key         string    `json:"key_fingerprint,omitempty"`
	Reachable   bool      `json:"reachable"`
	LastContact time.Time `json:"last_contact"`
	LastError   string    `json:"last_error,omitempty"`
	Failures    uint64    `json:"failures"`
	Tickets     struct {
		Generation   uint64    `json:"generation"`
		SealingKeyID uint32    `json:"sealing_key_id"`
		Keys         int       `json:"keys"`
		NextRotation time.Time `json:"next_rotation"`
		LastSync     time.Time `json:"last_sync"`
		LastError    string    `json:"last_error,omitempty"`
		FromCache    bool      `json:"from_cache"`
		CacheWritten time.Time `json:"cache_written"`
		Rotations    uint64    `json:"rotations"`
	} `json:"tickets"`
	Locks struct {
		Held        int     `json:"held"`
		Waiting     int     `json:"waiting"`
		Waits       uint64  `json:"waits"`
		WaitSeconds float64 `json:"wait_seconds"`
		Lost        uint64  `json:"lost"`
	} `json:"locks"`
}

func newFleetPage(st fleet.Status) fleetPage {
	p := fleetPage{Fleet: true, Store: st.Store, Node: st.NodeID, Key: st.KeyFingerprint, Reachable: st.Reachable,
		LastContact: st.LastContact, LastError: st.LastError, Failures: st.Failures}
	t := st.Tickets
	p.Tickets.Generation, p.Tickets.SealingKeyID, p.Tickets.Keys = t.Generation, t.SealingKeyID, t.Keys
	p.Tickets.NextRotation, p.Tickets.LastSync, p.Tickets.LastError = t.NextSealFrom, t.LastSync, t.LastError
	p.Tickets.FromCache, p.Tickets.CacheWritten, p.Tickets.Rotations = t.FromCache, t.CacheWritten, t.Rotations
	l := st.Locks
	p.Locks.Held, p.Locks.Waiting, p.Locks.Waits, p.Locks.WaitSeconds, p.Locks.Lost = l.Held, l.Waiting, l.Waits, l.WaitTime.Seconds(), l.Lost
	return p
}

// serveFleet is the admin page /fleet: the node's view of its fleet, as
// text, or JSON for ?format=json or Accept: application/json.
func (s *Server) serveFleet(w http.ResponseWriter, r *http.Request) {
	var p fleetPage
	if s.fleet != nil {
		p = newFleetPage(s.fleet.f.Status())
	}
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, p)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, p.text(s.now()))
}

// text is the page for people: what is wrong first, ages rather than
// timestamps.
func (p fleetPage) text(now time.Time) string {
	if !p.Fleet {
		return "not in a fleet: this node has no [fleet] table (docs/FLEET.md)\n"
	}
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	}
	var b strings.Builder
	state := "reachable"
	if !p.Reachable {
		state = "UNREACHABLE"
		if p.LastError != "" {
			state += ": " + p.LastError
		}
	}
	fmt.Fprintf(&b, "store      %s  %s\n", p.Store, state)
	fmt.Fprintf(&b, "           last contact %s, %d failed calls since start\n", ago(p.LastContact), p.Failures)
	fmt.Fprintf(&b, "node       %s\n", p.Node)
	fmt.Fprintf(&b, "key        %s\n", p.Key)
	t := p.Tickets
	src := "the store"
	if t.FromCache {
		src = "the LOCAL CACHE (written " + ago(t.CacheWritten) + "): no sync since start"
	}
	fmt.Fprintf(&b, "tickets    generation %d, %d keys from %s, key %d seals\n", t.Generation, t.Keys, src, t.SealingKeyID)
	next := "none"
	if !t.NextRotation.IsZero() {
		next = t.NextRotation.Sub(now).Round(time.Second).String()
		if t.NextRotation.Before(now) {
			next = "due (waits for the store)"
		} else {
			next = "in " + next
		}
	}
	fmt.Fprintf(&b, "           last sync %s, next rotation %s, %d rotations written by this node\n", ago(t.LastSync), next, t.Rotations)
	if t.LastError != "" {
		fmt.Fprintf(&b, "           last sync failed: %s\n", t.LastError)
	}
	l := p.Locks
	fmt.Fprintf(&b, "locks      %d held, %d waiting; %d waits (%.1f s in all), %d leases lost\n", l.Held, l.Waiting, l.Waits, l.WaitSeconds, l.Lost)
	return b.String()
}
