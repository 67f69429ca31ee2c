package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/fleet"
)

// TestFleetCheck runs `pqedge fleet check` against a store a node has
// written to, and with a key file that is not the fleet's.
func TestFleetCheck(t *testing.T) {
	store := miniredis.RunT(t)
	dir := t.TempDir()
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runFleet(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, _, stderr := run("keygen", "-o", filepath.Join(dir, "fleet.key")); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := run("keygen", "-o", filepath.Join(dir, "other.key")); code != 0 {
		t.Fatal(stderr)
	}
	writeConfig := func(name, keyFile string) string {
		path := filepath.Join(dir, name)
		cfg := `data_dir = "data"
[fleet]
store = "redis://` + store.Addr() + `/0"
encryption_key_file = "` + keyFile + `"
node_id = "edge-1"
ticket_rotation = "1h"

[[listener]]
name = "https"
address = "127.0.0.1:0"

[[site]]
name = "a"
server_names = ["a.example"]
[[site.route]]
path = "/"
handler = "inspect"
`
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := writeConfig("good.toml", "fleet.key")
	other := writeConfig("other.toml", "other.key")

	code, stdout, stderr := run("check", "-config", good)
	if code != 0 || !strings.Contains(stdout, "reachable:  yes") || !strings.Contains(stdout, "tickets:    none yet") {
		t.Fatalf("check of an empty store: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("check wrote to data_dir")
	}
	if n := len(store.Keys()); n != 0 {
		t.Errorf("check wrote %d keys to the store", n)
	}

	// A node writes the fleet's first ticket keys (as its Keeper would at
	// start), through the same code path as pqedge run.
	writeTicketState(t, good)
	code, stdout, stderr = run("check", "-config", good)
	if code != 0 || !strings.Contains(stdout, "tickets:    generation 1, 2 keys") || !strings.Contains(stdout, "written by edge-1") {
		t.Errorf("check after a node started: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = run("check", "-config", other)
	if code != 1 || !strings.Contains(stderr, "sealed under another encryption key") || !strings.Contains(stderr, "same encryption_key_file") {
		t.Errorf("check with another key file: exit %d\n%s", code, stderr)
	}
}

func writeTicketState(t *testing.T, configFile string) {
	t.Helper()
	cfg, err := config.Load(configFile)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.Fleet.Settings(cfg.DataDir).Options()
	if err != nil {
		t.Fatal(err)
	}
	f, err := fleet.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Tickets().Keys(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
}
