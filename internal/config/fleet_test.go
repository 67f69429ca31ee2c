package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/fleet"
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

// TestFleetFiles: config check reads the files [fleet] names, each problem
// at the line of its key.
func TestFleetFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := fleet.WriteKeyFile(filepath.Join(dir, "good.key"), false); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "good.key"))
	os.WriteFile(filepath.Join(dir, "loose.key"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "short.key"), []byte("QkJC\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "redis.pass"), []byte("s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "empty.pass"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("not PEM"), 0o600)
	site := "\n[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:8443\"\n[[site]]\nname = \"a\"\nserver_names = [\"a.example\"]\n[[site.route]]\npath = \"/\"\nhandler = \"inspect\"\n"
	tests := []struct {
		name, fleet string
		want        []string // "LINE: text" or "warn LINE: text"
		hint        string   // in the first problem's hint
	}{
		{name: "good", fleet: "store = \"redis://h/0\"\nencryption_key_file = \"good.key\"\npassword_file = \"redis.pass\""},
		{name: "missing key", fleet: "store = \"redis://h/0\"\nencryption_key_file = \"none.key\"", want: []string{"3: failed to read fleet key file"},
			hint: "make the fleet's key once with `pqedge fleet keygen -o " + filepath.Join(dir, "none.key") + "`"},
		{name: "loose key", fleet: "store = \"redis://h/0\"\nencryption_key_file = \"loose.key\"", want: []string{"3: has mode 0644"}},
		{name: "short key", fleet: "store = \"redis://h/0\"\nencryption_key_file = \"short.key\"", want: []string{"3: the key is 3 bytes, want 32"}},
		{name: "empty password file", fleet: "store = \"redis://h/0\"\nencryption_key_file = \"good.key\"\npassword_file = \"empty.pass\"", want: []string{"4: is empty"}},
		{name: "unset password env", fleet: "store = \"redis://h/0\"\nencryption_key_file = \"good.key\"\npassword_env = \"PQEDGE_TEST_SURELY_UNSET\"", want: []string{"warn 4: which is not set"}},
		{name: "bad CA file", fleet: "store = \"rediss://h/0\"\nencryption_key_file = \"good.key\"\nca_file = \"ca.pem\"", want: []string{"4: holds no PEM certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, "pqedge.toml")
			if err := os.WriteFile(file, []byte("[fleet]\n"+tt.fleet+"\n"+site), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(file)
			if err != nil {
				t.Fatal(err)
			}
			got := CheckFiles(cfg, time.Now())
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i, w := range tt.want {
				warn := strings.HasPrefix(w, "warn ")
				line, text, _ := strings.Cut(strings.TrimPrefix(w, "warn "), ": ")
				if strconv.Itoa(got[i].Line) != line || !strings.Contains(got[i].Msg, text) || got[i].Warning != warn {
					t.Errorf("problem %v, want line %s warning %v containing %q", got[i], line, warn, text)
				}
			}
			if tt.hint != "" && !strings.Contains(got[0].Hint, tt.hint) {
				t.Errorf("hint %q, want it to contain %q", got[0].Hint, tt.hint)
			}
		})
	}
}
