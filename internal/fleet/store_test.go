package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseStoreURL(t *testing.T) {
	tests := []struct {
		in      string
		want    StoreURL
		wantErr string
	}{
		{in: "redis://127.0.0.1:6379/0", want: StoreURL{Scheme: "redis", Addr: "127.0.0.1:6379"}},
		{in: "redis://10.0.0.5/3", want: StoreURL{Scheme: "redis", Addr: "10.0.0.5:6379", DB: 3}},
		{in: "rediss://pqedge@valkey.internal:6380/1", want: StoreURL{Scheme: "rediss", Addr: "valkey.internal:6380", DB: 1, Username: "pqedge"}},
		{in: "redis://[::1]:6379", want: StoreURL{Scheme: "redis", Addr: "[::1]:6379"}},
		{in: "unix:///run/valkey/valkey.sock", want: StoreURL{Scheme: "unix", Addr: "/run/valkey/valkey.sock"}},
		{in: "unix:///run/redis.sock?db=2", want: StoreURL{Scheme: "unix", Addr: "/run/redis.sock", DB: 2}},
		{in: "redis://u:pw@127.0.0.1:6379/0", wantErr: "holds a password"},
		{in: "redis://:pw@127.0.0.1:6379/0", wantErr: "holds a password"},
		{in: "unix://:pw@/run/redis.sock", wantErr: "holds a password"},
		{in: "http://127.0.0.1:6379", wantErr: `unknown scheme "http"`},
		{in: "127.0.0.1:6379", wantErr: "unknown scheme"},
		{in: "redis://", wantErr: "has no host"},
		{in: "redis://127.0.0.1:99999/0", wantErr: "bad port"},
		{in: "redis://::", wantErr: `bad host ":"`},
		{in: "redis://:6379/0", wantErr: `bad host ""`},
		{in: "redis://[fe80::1%25eth0]:6379/0", wantErr: "bad host"},
		{in: "redis://127.0.0.1:6379/x", wantErr: `bad database number "x"`},
		{in: "redis://127.0.0.1:6379/0/1", wantErr: "bad database number"},
		{in: "redis://127.0.0.1:6379/0?dial_timeout=1s", wantErr: "query parameters"},
		{in: "unix://run/redis.sock", wantErr: "three slashes"},
		{in: "unix:///run/redis.sock?timeout=1", wantErr: `unknown query parameter "timeout"`},
		{in: "unix:///run/redis.sock?db=-1", wantErr: "bad database number"},
		{in: "unix:///run/a%00b", wantErr: "control character"},
		{in: "unix:///run/my%20redis%25.sock?db=1", want: StoreURL{Scheme: "unix", Addr: "/run/my redis%.sock", DB: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseStoreURL(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pw@") {
					t.Errorf("error repeats the password: %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseStoreURL = %+v, %v; want %+v", got, err, tt.want)
			}
			if again, err := ParseStoreURL(got.String()); err != nil || again != got {
				t.Errorf("String() = %q does not parse back: %+v, %v", got.String(), again, err)
			}
		})
	}
}

// TestSettingsOptions: the files a [fleet] table names are read, and each
// mistake names the key to fix.
func TestSettingsOptions(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "fleet.key")
	if _, err := WriteKeyFile(keyFile, false); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose.key")
	data, _ := os.ReadFile(keyFile)
	os.WriteFile(loose, data, 0o644)
	pwFile := filepath.Join(dir, "redis.pass")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	empty := filepath.Join(dir, "empty.pass")
	os.WriteFile(empty, nil, 0o600)
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("nope"), 0o600)
	t.Setenv("PQEDGE_TEST_REDIS_PASSWORD", "from-env")

	base := Settings{Store: "redis://127.0.0.1:6379/0", EncryptionKeyFile: keyFile, DataDir: dir, TicketRotation: time.Hour}
	tests := []struct {
		name     string
		mod      func(*Settings)
		password string
		wantErr  string
	}{
		{name: "minimal", mod: func(*Settings) {}},
		{name: "password file", mod: func(s *Settings) { s.PasswordFile = pwFile }, password: "s3cret"},
		{name: "password env", mod: func(s *Settings) { s.PasswordEnv = "PQEDGE_TEST_REDIS_PASSWORD" }, password: "from-env"},
		{name: "no key file", mod: func(s *Settings) { s.EncryptionKeyFile = "" }, wantErr: "fleet.encryption_key_file is not set"},
		{name: "missing key file", mod: func(s *Settings) { s.EncryptionKeyFile = filepath.Join(dir, "none") }, wantErr: "fleet.encryption_key_file: failed to read"},
		{name: "readable key file", mod: func(s *Settings) { s.EncryptionKeyFile = loose }, wantErr: "mode 0644"},
		{name: "unset env", mod: func(s *Settings) { s.PasswordEnv = "PQEDGE_TEST_UNSET_VARIABLE" }, wantErr: "fleet.password_env names PQEDGE_TEST_UNSET_VARIABLE, which is not set"},
		{name: "empty password file", mod: func(s *Settings) { s.PasswordFile = empty }, wantErr: "is empty"},
		{name: "missing password file", mod: func(s *Settings) { s.PasswordFile = filepath.Join(dir, "none") }, wantErr: "failed to read fleet.password_file"},
		{name: "both", mod: func(s *Settings) { s.PasswordFile, s.PasswordEnv = pwFile, "X" }, wantErr: "keep one"},
		{name: "bad CA file", mod: func(s *Settings) { s.Store, s.CAFile = "rediss://h:6379/0", notPEM }, wantErr: "holds no PEM certificate"},
		{name: "bad URL", mod: func(s *Settings) { s.Store = "redis://a:b@h/0" }, wantErr: "fleet.store: the store URL holds a password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			tt.mod(&s)
			o, err := s.Options()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Password != tt.password || o.Key == nil || o.CacheDir != filepath.Join(dir, "fleet") || o.TicketRotation != time.Hour {
				t.Errorf("options = %+v", o)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	f, err := New(Options{Store: StoreURL{Scheme: "redis", Addr: "127.0.0.1:1"}, Key: testKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	host, _ := os.Hostname()
	if f.opts.NodeID != host || f.opts.KeyPrefix != DefaultKeyPrefix || f.opts.TicketRotation != DefaultTicketRotation ||
		f.opts.TicketLifetime != DefaultTicketLifetime || f.opts.LockTTL != DefaultLockTTL {
		t.Errorf("defaults not applied: %+v", f.opts)
	}
	for _, bad := range []Options{
		{Store: StoreURL{Addr: "x"}},
		{Key: testKey(t)},
		{Store: StoreURL{Addr: "x"}, Key: testKey(t), KeyPrefix: "a*"},
		{Store: StoreURL{Addr: "x"}, Key: testKey(t), NodeID: "a b"},
	} {
		if f, err := New(bad); err == nil {
			f.Close()
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}
