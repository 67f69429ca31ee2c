package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/anycast"
)

func TestAnycastConfig(t *testing.T) {
	const base = `
[[listener]]
name = "dot"
address = "[::]:853"
kind = "stream"
site = "dns"
pool = "resolvers"

[[listener]]
name = "https4"
address = "192.0.2.53:443"

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
	for _, tc := range []struct {
		name        string
		anycast     string
		wantAnycast *Anycast
		wantAnns    []anycast.Announcement
	}{
		{
			name: "no [anycast] table",
		},
		{
			name: "defaults",
			anycast: `
[[anycast.prefix]]
prefix = "192.0.2.53/32"
listeners = ["dot", "https4"]
[[anycast.prefix]]
prefix = "2001:db8::53/128"
listeners = ["dot"]
`,
			wantAnycast: &Anycast{Device: "pqedge-any0", Rise: 3, Fall: 1, Interval: "1s", HoldDown: "10s",
				Prefix: []AnycastPrefix{{"192.0.2.53/32", []string{"dot", "https4"}}, {"2001:db8::53/128", []string{"dot"}}}},
			wantAnns: []anycast.Announcement{
				{Prefix: netip.MustParsePrefix("192.0.2.53/32"), Policy: anycast.Policy{Rise: 3, Fall: 1, Interval: time.Second, HoldDown: 10 * time.Second}},
				{Prefix: netip.MustParsePrefix("2001:db8::53/128"), Policy: anycast.Policy{Rise: 3, Fall: 1, Interval: time.Second, HoldDown: 10 * time.Second}},
			},
		},
		{
			name: "every key set",
			anycast: `
[anycast]
device = "anycast7"
rise = 5
fall = 2
interval = "500ms"
hold_down = "0s"
[[anycast.prefix]]
prefix = "192.0.2.53/32"
listeners = ["https4"]
`,
			wantAnycast: &Anycast{Device: "anycast7", Rise: 5, Fall: 2, Interval: "500ms", HoldDown: "0s",
				Prefix: []AnycastPrefix{{"192.0.2.53/32", []string{"https4"}}}},
			wantAnns: []anycast.Announcement{
				{Prefix: netip.MustParsePrefix("192.0.2.53/32"), Policy: anycast.Policy{Rise: 5, Fall: 2, Interval: 500 * time.Millisecond}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("anycast.toml", []byte(base+tc.anycast))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(cfg.Anycast, tc.wantAnycast) {
				t.Fatalf("Anycast = %+v, want %+v", cfg.Anycast, tc.wantAnycast)
			}
			if cfg.Anycast == nil {
				return
			}
			anns := cfg.Anycast.Announcements()
			if !reflect.DeepEqual(anns, tc.wantAnns) {
				t.Errorf("Announcements = %+v, want %+v", anns, tc.wantAnns)
			}
			// What config accepts, the controller must accept too.
			c := anycast.NewController(nopAnnouncer{}, anycast.Options{})
			defer c.Close()
			if err := c.Configure(anns); err != nil {
				t.Errorf("the controller refuses a valid config: %v", err)
			}
		})
	}
}

// TestAnycastPassivePoolWarning: a pool an announced listener depends on
// without active health checks is a warning (the config stays valid); one
// with checks, or one no prefix depends on, is not.
func TestAnycastPassivePoolWarning(t *testing.T) {
	const cfg = `
[[listener]]
name = "dot"
address = "[::]:853"
kind = "stream"
site = "dns"
pool = "resolvers"
[[listener]]
name = "https"
address = "192.0.2.53:443"
[[site]]
name = "dns"
server_names = ["dns.example"]
listeners = ["https"]
[[site.route]]
path = "/api/"
pool = "api"
[[site.route]]
path = "/"
pool = "resolvers"
[[pool]]
name = "resolvers"
upstreams = ["127.0.0.1:53"]
[[pool]]
name = "api"
upstreams = ["127.0.0.1:3000"]
[pool.health]
interval = "1s"
[[pool]]
name = "unused"
upstreams = ["127.0.0.1:3001"]
[[anycast.prefix]]
prefix = "192.0.2.53/32"
listeners = ["https", "dot"]
`
	c, err := Parse("warn.toml", []byte(cfg))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(c.Warnings) != 1 {
		t.Fatalf("warnings %v, want one about pool resolvers", c.Warnings)
	}
	w := c.Warnings[0]
	want := `warn.toml:21: warning: pool[0]: pool "resolvers" has no active health checks, and anycast prefix 192.0.2.53/32 (line 32) depends on it through listener "https"`
	if !w.Warning || !strings.HasPrefix(w.String(), want) {
		t.Errorf("warning %q, want it to start with %q", w.String(), want)
	}
}

type nopAnnouncer struct{}

func (nopAnnouncer) Announce(netip.Prefix) error { return nil }
func (nopAnnouncer) Withdraw(netip.Prefix) error { return nil }
