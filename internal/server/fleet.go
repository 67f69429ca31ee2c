package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/pqedge/pqedge/certs/acme"
	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/fleet"
)

// Fleet mode (package internal/fleet, docs/FLEET.md) is a component of the
// Server, like the Keeper it feeds: the node's connection to the store its
// fleet shares. It is made once, in New, from the first config's [fleet]
// table (Settings.Options reads the files the table names; fleet.New does
// no network I/O, so a node starts, and serves from its caches, while the
// store is down) and closed by Shutdown after the ACME Managers. It gives:
//
//   - the Keeper its key Source (Fleet.Tickets) and its node name (the
//     fleet's node_id), so every node opens every node's tickets and
//     pqedge_resumptions_total tells a ticket this node issued (self) from
//     a peer's;
//   - every ACME Manager its Storage (Fleet.Storage: one order per name
//     for the fleet, any node answers the challenge) and a sealed local
//     copy in data_dir/fleet/acme (Fleet.LocalCache);
//   - /metrics, the admin page /fleet (fleet_admin.go) and a line of
//     /readyz its state, read from Fleet.Status when asked.
//
// # Reloads
//
// A reload never swaps the Fleet: one that adds, removes or changes
// [fleet] (including what its key, password and CA files hold, and
// data_dir, where its caches live) is refused with the key that changed,
// and the node keeps serving with the fleet it started with. Swapping it
// would leave the node between two fleets: the node id is in every ticket
// it issued and the store's ticket keys are another fleet's, so tickets
// resumed a moment ago would stop resuming, and ACME Managers of the old
// generation would hold a closed store in the middle of a renewal. A
// restart does the change cleanly and, in a fleet, costs nothing: the other
// nodes keep serving (and under anycast the node withdraws first).
type fleetMember struct {
	f *fleet.Fleet
	// opts are the options the Fleet was made with: a reload's [fleet],
	// read again, must give the same.
	opts fleet.Options
}

// fleetOptions reads cfg's [fleet] table and the files it names, then lets
// Options.FleetOptions adjust the result (tests).
func (s *Server) fleetOptions(cfg *config.Config) (fleet.Options, error) {
	opts, err := cfg.Fleet.Settings(cfg.DataDir).Options()
	if err != nil {
		return fleet.Options{}, fmt.Errorf("failed to start fleet mode: %w", err)
	}
	opts.Logger = s.log
	if s.opts.FleetOptions != nil {
		s.opts.FleetOptions(&opts)
	}
	return opts, nil
}

// startFleet makes the Fleet of cfg's [fleet] table, if it has one. It
// contacts nothing.
func (s *Server) startFleet(cfg *config.Config) error {
	if cfg.Fleet == nil {
		return nil
	}
	if s.opts.TicketSource != nil {
		return errors.New("failed to start fleet mode: Options.TicketSource is set, and [fleet] supplies the ticket keys")
	}
	opts, err := s.fleetOptions(cfg)
	if err != nil {
		return err
	}
	f, err := fleet.New(opts)
	if err != nil {
		return fmt.Errorf("failed to start fleet mode: %w", err)
	}
	s.fleet = &fleetMember{f: f, opts: opts}
	s.acme.fleet = f
	s.metrics.reg.MustRegister(newFleetCollector(f))
	st := f.Status()
	s.log.Info("fleet mode", "store", st.Store, "node", st.NodeID, "key", st.KeyFingerprint)
	return nil
}

// closeFleet releases the node's fleet locks and store connections, once
// nothing uses them any more (the ACME Managers are closed).
func (s *Server) closeFleet() {
	if s.fleet == nil {
		return
	}
	if err := s.fleet.f.Close(); err != nil {
		s.log.Warn("failed to close the fleet store connection", "err", err)
	}
}

// checkFleet is the reload step that refuses a config whose [fleet] is not
// the one the node started with (see fleetMember). It reads the files
// [fleet] names, and nothing else.
func (t *txn) checkFleet() error {
	s, cfg := t.s, t.cfg
	switch {
	case s.fleet == nil && cfg.Fleet == nil:
		return nil
	case s.fleet == nil:
		return config.Problems{cfg.Problem("fleet", "restart pqedge to join a fleet", "[fleet] was added: a running node does not join a fleet")}
	case cfg.Fleet == nil:
		return config.Problems{cfg.Problem("fleet", "restart pqedge to leave the fleet", "[fleet] was removed: a running node does not leave its fleet")}
	}
	next, err := s.fleetOptions(cfg)
	if err != nil {
		return err
	}
	if key, what := fleetChange(s.fleet.opts, next, cfg.Fleet); key != "" {
		return config.Problems{cfg.Problem(key, "restart pqedge to apply it; this node keeps its current fleet settings until then (docs/FLEET.md)",
			"%s changed: a running node keeps the fleet store, key and node id it started with", what)}
	}
	return nil
}

// fleetChange names the first setting in which next differs from cur, as
// the TOML key and a description; "" if they are the same. Secrets are
// compared, never printed.
func fleetChange(cur, next fleet.Options, table *config.Fleet) (key, what string) {
	passwordKey := "fleet.password_file"
	if table.PasswordEnv != "" {
		passwordKey = "fleet.password_env"
	}
	sameRoots := cur.CARoots == nil && next.CARoots == nil ||
		cur.CARoots != nil && next.CARoots != nil && cur.CARoots.Equal(next.CARoots)
	switch {
	case cur.Store != next.Store:
		return "fleet.store", fmt.Sprintf("the store (%s, was %s)", next.Store, cur.Store)
	case subtle.ConstantTimeCompare([]byte(cur.Password), []byte(next.Password)) != 1:
		return passwordKey, "the store password"
	case !sameRoots:
		return "fleet.ca_file", "the store's CA roots"
	case cur.Key.Fingerprint() != next.Key.Fingerprint():
		return "fleet.encryption_key_file", fmt.Sprintf("the encryption key (fingerprint %s, was %s)", next.Key.Fingerprint(), cur.Key.Fingerprint())
	case cur.KeyPrefix != next.KeyPrefix:
		return "fleet.key_prefix", fmt.Sprintf("the key prefix (%q, was %q)", next.KeyPrefix, cur.KeyPrefix)
	case cur.NodeID != next.NodeID:
		return "fleet.node_id", fmt.Sprintf("the node id (%q, was %q)", next.NodeID, cur.NodeID)
	case cur.TicketRotation != next.TicketRotation:
		return "fleet.ticket_rotation", fmt.Sprintf("the ticket rotation (%s, was %s)", next.TicketRotation, cur.TicketRotation)
	case cur.CacheDir != next.CacheDir:
		return "data_dir", fmt.Sprintf("the fleet's cache directory (%s, was %s)", next.CacheDir, cur.CacheDir)
	}
	return "", ""
}

// useFleet points an ACME Manager's options at the fleet's store and a
// sealed node-local copy in dataDir/fleet/acme, when the node is in a
// fleet.
func (st *acmeState) useFleet(o *acme.Options, dataDir string) error {
	if st.fleet == nil {
		return nil
	}
	local, err := st.fleet.LocalCache(filepath.Join(dataDir, "fleet", "acme"))
	if err != nil {
		return err
	}
	o.Storage, o.LocalCache = st.fleet.Storage(), local
	return nil
}

// fleetCheck describes the store for /readyz, and reports whether the node
// is in a fleet at all. The store is not a readiness condition: it is not
// in the handshake path, a node whose store is down serves with the keys
// and certificates it has, and a store outage would otherwise take every
// node of the fleet out of service at once. The line is there so that an
// operator reading /readyz sees the outage, and why the node stays ready.
func (s *Server) fleetCheck() (detail string, inFleet bool) {
	if s.fleet == nil {
		return "", false
	}
	st := s.fleet.f.Status()
	switch {
	case st.Reachable:
		return fmt.Sprintf("store %s reachable", st.Store), true
	case st.LastContact.IsZero() && st.Failures == 0:
		return fmt.Sprintf("store %s not contacted yet", st.Store), true
	default:
		return fmt.Sprintf("store %s unreachable (%s); serving with the ticket keys and certificates this node has, which does not affect readiness", st.Store, st.LastError), true
	}
}
