package config

import (
	"strings"
	"time"

	"github.com/pqedge/pqedge/internal/fleet"
)

// Fleet is the [fleet] table: the shared store of a fleet of nodes behind
// one address (see docs/FLEET.md). Secrets never appear here: the store
// password comes from a file or an environment variable, and the
// encryption key from its own file.
type Fleet struct {
	// Store is redis://HOST:PORT/DB, rediss://HOST:PORT/DB (TLS) or
	// unix:///PATH?db=DB; a user name may be given, a password may not.
	Store        string `toml:"store"`
	PasswordFile string `toml:"password_file"` // first line is the password
	PasswordEnv  string `toml:"password_env"`  // name of an environment variable holding it
	// CAFile is a PEM file of roots for a rediss:// store's certificate;
	// default: the system roots.
	CAFile string `toml:"ca_file"`
	// KeyPrefix starts every key the fleet writes, so fleets can share a
	// server; default DefaultFleetKeyPrefix.
	KeyPrefix string `toml:"key_prefix"`
	// EncryptionKeyFile is the key (made by `pqedge fleet keygen`) that
	// seals every value written; the same file on every node, mode 0600.
	EncryptionKeyFile string `toml:"encryption_key_file"`
	// NodeID names this node in locks and logs; default: the host name.
	NodeID string `toml:"node_id"`
	// TicketRotation is how long each session-ticket key seals new
	// tickets; default DefaultTicketRotation.
	TicketRotation Duration `toml:"ticket_rotation"`
}

// Bounds of ticket_rotation: a rotation every few seconds would make every
// node's refresh a rotation; one longer than a ticket's 7-day lifetime
// lets one leaked key open more than a week of sessions.
const (
	minTicketRotation = time.Minute
	maxTicketRotation = 7 * 24 * time.Hour
)

// Settings is the table for package fleet, with the cache under dataDir.
func (f *Fleet) Settings(dataDir string) fleet.Settings {
	return fleet.Settings{
		Store:             f.Store,
		PasswordFile:      f.PasswordFile,
		PasswordEnv:       f.PasswordEnv,
		CAFile:            f.CAFile,
		KeyPrefix:         f.KeyPrefix,
		EncryptionKeyFile: f.EncryptionKeyFile,
		NodeID:            f.NodeID,
		TicketRotation:    f.TicketRotation.Value(),
		DataDir:           dataDir,
	}
}

// checkFleet validates the [fleet] table. It reads no file: CheckFiles
// does (checkFleetFiles).
func (v *validator) checkFleet() {
	f := v.cfg.Fleet
	if f == nil {
		return
	}
	if f.Store == "" {
		v.addf("fleet", `e.g. store = "redis://127.0.0.1:6379/0"`, "fleet has no store")
	} else if _, err := fleet.ParseStoreURL(f.Store); err != nil {
		hint := "redis://HOST:PORT/DB, rediss://HOST:PORT/DB or unix:///PATH"
		if strings.Contains(err.Error(), "password") {
			hint = "remove it from the URL; put it in a file named by password_file, or an environment variable named by password_env"
		}
		v.addf("fleet.store", hint, "%v", err)
	}
	if f.PasswordFile != "" && f.PasswordEnv != "" {
		v.addf("fleet.password_env", "keep password_file or password_env", "both password_file and password_env are set")
	}
	if f.PasswordEnv != "" && !isEnvName(f.PasswordEnv) {
		v.addf("fleet.password_env", "name the variable, e.g. password_env = \"PQEDGE_REDIS_PASSWORD\", not its value",
			"%q is not an environment variable name", f.PasswordEnv)
	}
	if scheme, _, ok := strings.Cut(f.Store, "://"); f.CAFile != "" && ok && scheme != "rediss" {
		v.addf("fleet.ca_file", "use a rediss:// store URL for TLS, or remove ca_file", "ca_file is only used with a rediss:// store, not %s://", scheme)
	}
	if f.EncryptionKeyFile == "" {
		v.addf("fleet", "make one with `pqedge fleet keygen -o FILE`, copy it to every node, and set encryption_key_file = \"FILE\"",
			"fleet has no encryption_key_file")
	}
	if f.KeyPrefix != "" {
		if err := fleet.CheckKeyPrefix(f.KeyPrefix); err != nil {
			v.addf("fleet.key_prefix", "", "%v", err)
		}
	}
	if f.NodeID != "" {
		if err := fleet.CheckNodeID(f.NodeID); err != nil {
			v.addf("fleet.node_id", "leave it out to use the host name", "%v", err)
		}
	}
	if d, err := time.ParseDuration(string(f.TicketRotation)); f.TicketRotation != "" && err == nil && (d < minTicketRotation || d > maxTicketRotation) {
		v.addf("fleet.ticket_rotation", "use 1m to 168h; the default is 12h", "ticket_rotation %s is out of range", d)
	}
}

func isEnvName(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

// checkFleetFiles reads the files a [fleet] table names, as the node will
// when it starts: the encryption key (exists, mode 0600, one base64 key of
// the right size), the password file (readable, not empty) and the CA
// file (PEM certificates). An unset password_env is a warning only: the
// environment `pqedge config check` runs in is often not the service's.
func checkFleetFiles(f *Fleet, add func(key string, err error, warning bool)) {
	if f == nil {
		return
	}
	if f.EncryptionKeyFile != "" {
		if _, err := fleet.LoadKeyFile(f.EncryptionKeyFile); err != nil {
			add("fleet.encryption_key_file", err, false)
		}
	}
	if f.PasswordFile != "" && f.PasswordEnv == "" {
		if _, err := fleet.ReadPassword(f.PasswordFile, ""); err != nil {
			add("fleet.password_file", err, false)
		}
	}
	if f.PasswordEnv != "" && f.PasswordFile == "" && isEnvName(f.PasswordEnv) {
		if _, err := fleet.ReadPassword("", f.PasswordEnv); err != nil {
			add("fleet.password_env", err, true)
		}
	}
	if f.CAFile != "" {
		if _, err := fleet.LoadCARoots(f.CAFile); err != nil {
			add("fleet.ca_file", err, false)
		}
	}
}
