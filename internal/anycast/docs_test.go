package anycast_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pqedge/pqedge/internal/config"
	"github.com/pqedge/pqedge/internal/peers"
)

// codeBlocks returns the fenced blocks of lang in a Markdown file.
func codeBlocks(t *testing.T, file, lang string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur *strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && line == "```"+lang:
			cur = &strings.Builder{}
		case cur != nil && line == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return blocks
}

// TestOperationsBIRDConfigs checks that BIRD 2 accepts every BIRD
// configuration docs/OPERATIONS.md gives anycast operators.
func TestOperationsBIRDConfigs(t *testing.T) {
	bird := peers.Binary(t, "bird")
	blocks := codeBlocks(t, "../../docs/OPERATIONS.md", "bird")
	if len(blocks) < 2 {
		t.Fatalf("docs/OPERATIONS.md has %d bird blocks, want the BGP and OSPF examples", len(blocks))
	}
	for i, b := range blocks {
		file := filepath.Join(t.TempDir(), "bird.conf")
		if err := os.WriteFile(file, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bird, "-p", "-c", file).CombinedOutput(); err != nil {
			t.Errorf("bird -p rejects block %d: %v: %s\n%s", i+1, err, out, b)
		}
		if !strings.Contains(b, `interface "`+config.DefaultAnycastDevice+`"`) {
			t.Errorf("block %d does not watch %s", i+1, config.DefaultAnycastDevice)
		}
	}
}

// TestOperationsAnycastBlock checks that the [anycast] example of
// docs/OPERATIONS.md is valid and shows the real defaults.
func TestOperationsAnycastBlock(t *testing.T) {
	var example string
	for _, b := range codeBlocks(t, "../../docs/OPERATIONS.md", "toml") {
		if strings.Contains(b, "[anycast]") {
			example = b
		}
	}
	if example == "" {
		t.Fatal("docs/OPERATIONS.md has no [anycast] example")
	}
	// The listeners the example names, so the block validates on its own.
	const listeners = `
[[listener]]
name = "https"
address = "[::]:443"
[[listener]]
name = "dot"
address = "[::]:853"
kind = "stream"
site = "dns"
pool = "resolvers"
[[listener]]
name = "dot6"
address = "[2001:db8::53]:8853"
kind = "stream"
site = "dns"
pool = "resolvers"
[[site]]
name = "dns"
server_names = ["dns.example"]
[[site.route]]
path = "/"
handler = "inspect"
[[pool]]
name = "resolvers"
upstreams = ["127.0.0.1:53"]
`
	cfg, err := config.Parse("OPERATIONS.md", []byte(listeners+example))
	if err != nil {
		t.Fatalf("the [anycast] example is invalid:\n%v", err)
	}
	a := cfg.Anycast
	got := []any{a.Device, a.Rise, a.Fall, a.Interval.Value(), a.HoldDown.Value(), cfg.Timeouts.WithdrawGrace.Value(), cfg.Timeouts.Shutdown.Value()}
	want := []any{config.DefaultAnycastDevice, config.DefaultAnycastRise, config.DefaultAnycastFall,
		config.DefaultAnycastInterval, config.DefaultAnycastHoldDown, config.DefaultAnycastWithdrawGrace, config.DefaultShutdownTimeout}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("the example says %v where the default is %v (it promises \"defaults shown\")", got[i], want[i])
		}
	}
}
