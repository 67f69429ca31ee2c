package config

import (
	"testing"
	"time"
)

// TestFleetTable: a valid [fleet] table gets its defaults from defaults.go
// and its file names anchored at the config's directory, and Settings
// hands package fleet exactly that.
func TestFleetTable(t *testing.T) {
	cfg, err := Parse("/etc/pqedge/pqedge.toml", []byte(`
data_dir = "/var/lib/pqedge"
[fleet]
store = "rediss://pqedge@valkey.internal:6380/2"
password_env = "PQEDGE_REDIS_PASSWORD"
ca_file = "redis-ca.pem"
encryption_key_file = "fleet.key"
node_id = "edge-fra-1"

[[listener]]
name = "https"
address = "127.0.0.1:8443"
[[site]]
name = "a"
server_names = ["a.example"]
[[site.route]]
path = "/"
handler = "inspect"
`))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Fleet.Settings(cfg.DataDir)
	for _, c := range []struct{ what, got, want string }{
		{"store", s.Store, "rediss://pqedge@valkey.internal:6380/2"},
		{"password_env", s.PasswordEnv, "PQEDGE_REDIS_PASSWORD"},
		{"ca_file", s.CAFile, "/etc/pqedge/redis-ca.pem"},
		{"encryption_key_file", s.EncryptionKeyFile, "/etc/pqedge/fleet.key"},
		{"key_prefix", s.KeyPrefix, DefaultFleetKeyPrefix},
		{"node_id", s.NodeID, "edge-fra-1"},
		{"data_dir", s.DataDir, "/var/lib/pqedge"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if s.TicketRotation != DefaultTicketRotation || DefaultTicketRotation != 12*time.Hour {
		t.Errorf("ticket_rotation = %s, want the 12h default", s.TicketRotation)
	}
	if cfg.Fleet.PasswordFile != "" {
		t.Errorf("password_file made up: %q", cfg.Fleet.PasswordFile)
	}
}
