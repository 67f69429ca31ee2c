package config

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/connlimit"
	"github.com/pqedge/pqedge/internal/h1guard"
	"github.com/pqedge/pqedge/internal/h2guard"
	"github.com/pqedge/pqedge/proxy"
)

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := Load("../../config.example.toml")
	if err != nil {
		t.Fatalf("config.example.toml is invalid:\n%v", err)
	}
	if got := cfg.Listener[0].Address; got != "127.0.0.1:8443" {
		t.Errorf("example listens on %q, README promises 127.0.0.1:8443", got)
	}
	if got := cfg.Admin.Listen; got != "127.0.0.1:9180" {
		t.Errorf("example admin on %q, want 127.0.0.1:9180", got)
	}
	if cfg.Site[0].Route[0].Handler != "inspect" {
		t.Errorf("example's / route is %+v, want the inspect handler", cfg.Site[0].Route[0])
	}
	if !filepath.IsAbs(cfg.DataDir) {
		t.Errorf("data_dir %q was not made absolute", cfg.DataDir)
	}
}

// TestExampleUncommented uncomments every commented TOML line of
// config.example.toml, as an operator trying its blocks would, in file
// order: the result must be valid and draw no warning (the compat route
// once landed in the ACME site that way).
func TestExampleUncommented(t *testing.T) {
	data, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	toml := regexp.MustCompile(`^# (\[|[a-z_]+ = )`)
	var out []string
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if toml.MatchString(line) {
			line = strings.TrimPrefix(line, "# ")
			n++
		}
		out = append(out, line)
	}
	if n < 40 {
		t.Fatalf("uncommented only %d lines; the pattern no longer fits the example", n)
	}
	text := strings.Join(out, "\n")
	cfg, err := Parse("../../config.example.toml", []byte(text))
	if err != nil {
		t.Fatalf("the example with every block uncommented is invalid:\n%v\n%s", err, text)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("the example with every block uncommented draws warnings:\n%v", cfg.Warnings)
	}
	if len(cfg.Site) < 2 || cfg.Compat == nil || len(cfg.Listener) < 3 {
		t.Errorf("not every block was uncommented: %d sites, %d listeners, compat %v", len(cfg.Site), len(cfg.Listener), cfg.Compat != nil)
	}
}

// TestBadConfigs loads each testdata/bad/*.toml. Its "# want: LINE: TEXT"
// comments list the problems it must produce: a problem on LINE whose
// message contains TEXT. Every problem reported must be wanted.
func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.toml")
	if len(files) == 0 {
		t.Fatal("no testdata/bad/*.toml")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".toml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			wants := parseWants(t, data)
			_, err = Parse(file, data)
			ps, ok := err.(Problems)
			if !ok {
				t.Fatalf("Parse error = %v (%T), want Problems", err, err)
			}
			matched := make([]bool, len(ps))
			for _, w := range wants {
				found := false
				for i, p := range ps {
					if p.Line == w.line && strings.Contains(p.String(), w.text) {
						matched[i], found = true, true
					}
				}
				if !found {
					t.Errorf("want a problem at line %d containing %q; got:\n%v", w.line, w.text, ps)
				}
			}
			for i, p := range ps {
				if !matched[i] {
					t.Errorf("unexpected problem: %s", p)
				}
				prefix := file + ":" + strconv.Itoa(p.Line) + ": "
				if p.Line == 0 { // a problem of the whole file, such as a missing table
					prefix = file + ": "
				}
				if !strings.HasPrefix(p.String(), prefix) {
					t.Errorf("problem %q does not start with %q", p, prefix)
				}
			}
		})
	}
}

// TestValidConfigs loads each testdata/valid/*.toml: it must be valid,
// and its warnings must be exactly its "# warn: LINE: TEXT" lines (none
// when it has none).
func TestValidConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.toml")
	if len(files) == 0 {
		t.Fatal("no testdata/valid/*.toml")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".toml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(file, data)
			if err != nil {
				t.Fatalf("invalid:\n%v", err)
			}
			var wants []want
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "# warn: "); ok {
					num, text, _ := strings.Cut(rest, ": ")
					n, err := strconv.Atoi(num)
					if err != nil {
						t.Fatalf("bad warn line %q", sc.Text())
					}
					wants = append(wants, want{n, text})
				}
			}
			if len(cfg.Warnings) != len(wants) {
				t.Fatalf("warnings:\n%v\nwant %d", cfg.Warnings, len(wants))
			}
			for i, w := range wants {
				p := cfg.Warnings[i]
				prefix := file + ":" + strconv.Itoa(w.line) + ": warning: "
				if !p.Warning || !strings.HasPrefix(p.String(), prefix) || !strings.Contains(p.String(), w.text) {
					t.Errorf("warning %q, want %q...%q", p.String(), prefix, w.text)
				}
			}
		})
	}
}

type want struct {
	line int
	text string
}

func parseWants(t *testing.T, data []byte) []want {
	var ws []want
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "# want: ")
		if !ok {
			continue
		}
		num, text, _ := strings.Cut(rest, ": ")
		n, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("bad want line %q", sc.Text())
		}
		ws = append(ws, want{n, text})
	}
	if len(ws) == 0 {
		t.Fatal("file has no # want: lines")
	}
	return ws
}

func TestDisplayKey(t *testing.T) {
	for in, want := range map[string]string{
		"site.0.tls.groups":   "site[0].tls.groups",
		"admin.listen":        "admin.listen",
		"site.1.route.2.pool": "site[1].route[2].pool",
		"listener.0":          "listener[0]",
	} {
		if got := displayKey(in); got != want {
			t.Errorf("displayKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOneKey checks keys whose value has a range of its own, each with
// its default, edge values and refusals at FILE:LINE:
//   - timeouts.handshake_idle defaults to 2s and takes TCP's minimum
//     retransmission timeout or more (testdata/bad/handshake_idle.toml);
//   - limits.heap_floor defaults to none and takes a size from Go's own
//     4 MiB minimum heap goal up to 64 GiB (testdata/bad/heap_floor.toml);
//   - limits.handshake_cpu defaults to 0.8 and takes a share from 0.1
//     (below it a flood's handshakes all but stop) to 1.
func TestOneKey(t *testing.T) {
	const base = "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:8443\"\n" +
		"[[site]]\nname = \"a\"\nserver_names = [\"a.example\"]\n[[site.route]]\npath = \"/\"\nhandler = \"inspect\"\n"
	idle := func(c *Config) any { return c.Timeouts.HandshakeIdle.Value() }
	floor := func(c *Config) any { return c.Limits.HeapFloor.Value() }
	share := func(c *Config) any { return *c.Limits.HandshakeCPU }
	for _, tt := range []struct {
		name, toml string
		get        func(*Config) any
		want       any
		wantErr    string
	}{
		{"handshake_idle default", "", idle, 2 * time.Second, ""},
		{"handshake_idle set", "[timeouts]\nhandshake_idle = \"5s\"\n", idle, 5 * time.Second, ""},
		{"handshake_idle at the minimum", "[timeouts]\nhandshake_idle = \"200ms\"\n", idle, 200 * time.Millisecond, ""},
		{"handshake_idle below it", "[timeouts]\nhandshake_idle = \"199ms\"\n", idle, nil, "pqedge.toml:11: timeouts.handshake_idle: handshake_idle (199ms) is shorter than"},
		{"handshake_idle not a duration", "[timeouts]\nhandshake_idle = \"2\"\n", idle, nil, "pqedge.toml:11: timeouts.handshake_idle: invalid duration \"2\""},
		{"heap_floor default: none", "", floor, int64(0), ""},
		{"heap_floor none", "[limits]\nheap_floor = \"0\"\n", floor, int64(0), ""},
		{"heap_floor set", "[limits]\nheap_floor = \"64MiB\"\n", floor, int64(64 << 20), ""},
		{"heap_floor at the minimum", "[limits]\nheap_floor = \"4MiB\"\n", floor, int64(4 << 20), ""},
		{"heap_floor below it", "[limits]\nheap_floor = \"4000KiB\"\n", floor, nil, `pqedge.toml:11: limits.heap_floor: heap_floor "4000KiB" is out of range`},
		{"heap_floor beyond 64GiB", "[limits]\nheap_floor = \"65GiB\"\n", floor, nil, `pqedge.toml:11: limits.heap_floor: heap_floor "65GiB" is out of range`},
		{"heap_floor no size", "[limits]\nheap_floor = \"lots\"\n", floor, nil, `pqedge.toml:11: limits.heap_floor: invalid size "lots"`},
		{"handshake_cpu default", "", share, 0.8, ""},
		{"handshake_cpu set", "[limits]\nhandshake_cpu = 0.6\n", share, 0.6, ""},
		{"handshake_cpu 1: no budget", "[limits]\nhandshake_cpu = 1.0\n", share, 1.0, ""},
		{"handshake_cpu 0", "[limits]\nhandshake_cpu = 0.0\n", share, nil, "pqedge.toml:11: limits.handshake_cpu: handshake_cpu 0 is out of range"},
		{"handshake_cpu over 1", "[limits]\nhandshake_cpu = 1.5\n", share, nil, "pqedge.toml:11: limits.handshake_cpu: handshake_cpu 1.5 is out of range"},
		{"handshake_cpu a percentage", "[limits]\nhandshake_cpu = 80.0\n", share, nil, "pqedge.toml:11: limits.handshake_cpu: handshake_cpu 80 is out of range (a share of the CPUs from 0.1 to 1, not a percentage"},
		{"handshake_cpu at the minimum", "[limits]\nhandshake_cpu = 0.1\n", share, 0.1, ""},
		{"handshake_cpu below it", "[limits]\nhandshake_cpu = 0.05\n", share, nil, "pqedge.toml:11: limits.handshake_cpu: handshake_cpu 0.05 is out of range"},
		{"handshake_cpu tiny", "[limits]\nhandshake_cpu = 1e-9\n", share, nil, "pqedge.toml:11: limits.handshake_cpu: handshake_cpu 1e-09 is out of range"},
		{"handshake_cpu nan", "[limits]\nhandshake_cpu = nan\n", share, nil, "pqedge.toml:11: limits.handshake_cpu: handshake_cpu NaN is out of range"},
		{"handshake_cpu inf", "[limits]\nhandshake_cpu = inf\n", share, nil, "pqedge.toml:11: limits.handshake_cpu: handshake_cpu +Inf is out of range"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("/etc/pqedge/pqedge.toml", []byte(base+tt.toml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.get(cfg); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestEffectiveConfig checks that Parse fills in every default from the one
// table in defaults.go, so nothing downstream picks its own.
func TestEffectiveConfig(t *testing.T) {
	cfg, err := Parse("/etc/pqedge/pqedge.toml", []byte(`
[[listener]]
name = "https"
address = "127.0.0.1:8443"
[[listener]]
name = "dot"
kind = "stream"
address = "127.0.0.1:8853"
site = "a"
pool = "app"
[[site]]
name = "a"
server_names = ["a.example"]
[[site.route]]
path = "/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["127.0.0.1:3000"]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		key  string
		got  Duration
		want time.Duration
	}{
		{"handshake", cfg.Timeouts.Handshake, DefaultHandshakeTimeout},
		{"read_header", cfg.Timeouts.ReadHeader, DefaultReadHeaderTimeout},
		{"idle", cfg.Timeouts.Idle, DefaultIdleTimeout},
		{"upstream_dial", cfg.Timeouts.UpstreamDial, DefaultUpstreamDialTimeout},
		{"upstream_header", cfg.Timeouts.UpstreamHeader, DefaultUpstreamHeaderTimeout},
		{"stream_idle", cfg.Timeouts.StreamIdle, DefaultStreamIdleTimeout},
		{"shutdown", cfg.Timeouts.Shutdown, DefaultShutdownTimeout},
		{"request_body", cfg.Timeouts.RequestBody, DefaultRequestBodyTimeout},
		{"response_write", cfg.Timeouts.ResponseWrite, DefaultResponseWriteTimeout},
		{"upstream_idle", cfg.Timeouts.UpstreamIdle, DefaultUpstreamIdleTimeout},
		{"handshake_idle", cfg.Timeouts.HandshakeIdle, DefaultHandshakeIdle},
	} {
		if d.got.Value() != d.want {
			t.Errorf("timeouts.%s = %q, want %s", d.key, d.got, d.want)
		}
	}
	s, p := cfg.Site[0], cfg.Pool[0]
	for _, c := range []struct{ what, got, want string }{
		{"data_dir", cfg.DataDir, "/etc/pqedge/.pqedge"},
		{"listener kind", cfg.Listener[0].Kind, KindHTTPS},
		{"stream alpn", strings.Join(cfg.Listener[1].ALPN, ","), "dot"},
		{"certs", s.Certs, CertsLocal},
		{"pq_certs", s.PQCerts, "off"},
		{"tls.policy", s.TLS.Policy, "pq-preferred"},
		{"tls.mldsa_signer", s.TLS.MLDSASigner, "circl"},
		{"tls.ticket_scope", s.TLS.TicketScope, "a"},
		{"balance", p.Balance, "round_robin"},
		{"health.interval", string(p.Health.Interval), ""},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if p.IdleConns != DefaultPoolIdleConns {
		t.Errorf("idle_conns = %d, want %d", p.IdleConns, DefaultPoolIdleConns)
	}
	if !cfg.Log.AccessLog() || !s.TLS.TicketsOn() {
		t.Error("access log and session tickets should default on")
	}
	if cfg.Listener[0].ALPN != nil {
		t.Error("an https listener got a stream ALPN list")
	}
	l := cfg.Limits
	if got := l.H2ResetWindow.Value(); got != h2guard.DefaultGlitchWindow {
		t.Errorf("limits.h2_reset_window = %q, want %s", l.H2ResetWindow, h2guard.DefaultGlitchWindow)
	}
	if got := l.RequestHeader.Value(); got != h1guard.DefaultMaxHeaderBytes {
		t.Errorf("limits.request_header = %q (%d bytes), want %d", l.RequestHeader, got, h1guard.DefaultMaxHeaderBytes)
	}
	if got := l.ResponseHeader.Value(); got != proxy.DefaultMaxResponseHeaderBytes {
		t.Errorf("limits.response_header = %q (%d bytes), want %d", l.ResponseHeader, got, proxy.DefaultMaxResponseHeaderBytes)
	}
	if l.RequestBodyMinRate == nil || *l.RequestBodyMinRate != DefaultRequestBodyMinRate {
		t.Errorf("limits.request_body_min_rate = %v, want %d", l.RequestBodyMinRate, DefaultRequestBodyMinRate)
	}
	for _, c := range []struct {
		key  string
		got  *int
		want int
	}{
		{"handshakes", l.Handshakes, connlimit.DefaultMaxHandshakes}, {"handshake_queue", l.HandshakeQueue, connlimit.DefaultHandshakeQueue},
		{"connections", l.Connections, connlimit.DefaultMaxConns}, {"connections_per_client", l.ConnectionsPerClient, connlimit.DefaultMaxConnsPerClient},
		{"handshakes_per_client", l.HandshakesPerClient, connlimit.DefaultMaxHandshakesPerClient},
		{"h2_resets", l.H2Resets, h2guard.DefaultMaxGlitches},
	} {
		if c.got == nil || *c.got != c.want {
			t.Errorf("limits.%s = %v, want %d", c.key, c.got, c.want)
		}
	}
}

// TestByteOrderMarks: a UTF-8 byte order mark is dropped (Windows editors
// write one), lines counting as before; a UTF-16 or UTF-32 one is refused
// at FILE:1 with a message naming the encoding, instead of the decoder's
// "invalid character" about the mark's bytes.
func TestByteOrderMarks(t *testing.T) {
	const body = "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:0\"\nbogus = 1\n"
	tests := []struct {
		name string
		data string
		want string // the only problem
	}{
		{"UTF-8", "\xef\xbb\xbf" + body, "f.toml:4: listener[0].bogus: unknown key"},
		{"UTF-8 twice", "\xef\xbb\xbf\xef\xbb\xbf" + body, "f.toml:1: a UTF-8 byte order mark (EF BB BF) inside the file (remove it"},
		{"UTF-8 inside", body + "\xef\xbb\xbf[admin]\n", "f.toml:5: a UTF-8 byte order mark (EF BB BF) inside the file (remove it"},
		{"UTF-16LE", "\xff\xfe[\x00", "f.toml:1: the file is UTF-16 (it starts with a UTF-16 byte order mark, FF FE); TOML files are UTF-8 (save it as UTF-8)"},
		{"UTF-16BE", "\xfe\xff\x00[", "f.toml:1: the file is UTF-16 (it starts with a UTF-16 byte order mark, FE FF)"},
		{"UTF-32LE", "\xff\xfe\x00\x00[\x00\x00\x00", "f.toml:1: the file is UTF-32 (it starts with a UTF-32 byte order mark, FF FE 00 00)"},
		{"UTF-32BE", "\x00\x00\xfe\xff\x00\x00\x00[", "f.toml:1: the file is UTF-32 (it starts with a UTF-32 byte order mark, 00 00 FE FF)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(tt.data))
			ps, ok := err.(Problems)
			if !ok || len(ps) != 1 || !strings.HasPrefix(ps[0].String(), tt.want) {
				t.Errorf("Parse = %v; want one problem starting %q", err, tt.want)
			}
		})
	}
}

// TestInlineTableWrongTypes: a value of the wrong type inside an inline
// table, at any depth and in arrays of them, is named by its whole path
// and explained by its own key; a list where one value belongs is the
// value's wrong type, not its elements'. go-toml names only the inline table's key
// ("timeouts", "listener") and points at the value, which the positions
// index maps back to its key.
func TestInlineTableWrongTypes(t *testing.T) {
	const site = "[[site]]\nname = \"a\"\nserver_names = [\"a.example\"]\n"
	tests := []struct {
		name string
		data string
		want string // the only problem
	}{
		{"table", "timeouts = { idle = 5 }\n",
			`f.toml:1: timeouts.idle: wrong type: expected a duration string with a unit, not an integer (write it as idle = "10s")`},
		{"table in a table", site + "tls = { policy = 3 }\n",
			`f.toml:4: site[0].tls.policy: wrong type: expected a string, not an integer (write it as policy = "...")`},
		{"list element", site + "tls = { policy = \"pq-only\", groups = [\"x\", 1] }\n",
			`f.toml:4: site[0].tls.groups: wrong type: expected a list of strings, not a list holding an integer (write it as groups = ["a", "b"])`},
		{"array of tables", "listener = [{ name = \"https\", address = 5 }]\n",
			`f.toml:1: listener[0].address: wrong type: expected a string, not an integer (write it as address = "...")`},
		{"second element, next line", "listener = [{ name = \"h\u00e9\", address = \"127.0.0.1:1\" },\n  { name = \"b\",\taddress = true }]\n",
			`f.toml:2: listener[1].address: wrong type: expected a string, not a boolean (write it as address = "...")`},
		{"inline table for a string", "listener = [{ name = \"https\", address = { host = \"x\" } }]\n",
			`f.toml:1: listener[0].address: wrong type: expected a string, not an inline table (write it as address = "...")`},
		{"array of tables in a table", site + "route = [{ path = 1, handler = \"inspect\" }]\n",
			`f.toml:4: site[0].route[0].path: wrong type: expected a string, not an integer (write it as path = "...")`},
		{"a list for a string", "[[listener]]\nname = \"https\"\naddress = [\"127.0.0.1:1\"]\n",
			`f.toml:3: listener[0].address: wrong type: expected a string, not an array (write it as address = "...")`},
		{"a list for a string, inline", "listener = [{ name = \"https\", address = [\"127.0.0.1:1\", \"127.0.0.1:2\"] }]\n",
			`f.toml:1: listener[0].address: wrong type: expected a string, not an array (write it as address = "...")`},
		{"an element of a list", "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:1\"\nproxy_protocol_in = [\"10.0.0.1\", 2]\n",
			`f.toml:4: listener[0].proxy_protocol_in: wrong type: expected a list of strings, not a list holding an integer (write it as proxy_protocol_in = ["a", "b"])`},
		// go-toml gives an array or inline table inside an array no
		// position (it reports 1:1) and names its key without indexes:
		// the positions index finds the element.
		{"a list in a list", "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:1\"\n[[listener]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\nproxy_protocol_in = [\n  \"10.0.0.1\",\n  [\"a\"],\n]\n",
			`f.toml:9: listener[1].proxy_protocol_in: wrong type: expected a list of strings, not a list holding an array (write it as proxy_protocol_in = ["a", "b"])`},
		{"a list in a list, inline", site + "tls = { policy = \"pq-only\", groups = [[\"x25519\"]] }\n",
			`f.toml:4: site[0].tls.groups: wrong type: expected a list of strings, not a list holding an array (write it as groups = ["a", "b"])`},
		{"an empty list in a list", "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:1\"\n\nproxy_protocol_in = [[]]\n",
			`f.toml:5: listener[0].proxy_protocol_in: wrong type: expected a list of strings, not a list holding an array (write it as proxy_protocol_in = ["a", "b"])`},
		{"lists in a list, deep", site + "\n[[site.route]]\npath = \"/\"\nhandler = \"inspect\"\n[site.tls]\ngroups = [\"x25519\",\n\n  [[[\"a\"]]]]\n",
			`f.toml:11: site[0].tls.groups: wrong type: expected a list of strings, not a list holding an array (write it as groups = ["a", "b"])`},
		{"an inline table in a list", "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:1\"\nproxy_protocol_in = [\"10.0.0.1\",\n { net = \"a\" }]\n",
			`f.toml:5: listener[0].proxy_protocol_in: wrong type: expected a list of strings, not a list holding an inline table (write it as proxy_protocol_in = ["a", "b"])`},
		{"whole number", "limits = { h2_resets = \"many\" }\n",
			`f.toml:1: limits.h2_resets: wrong type: expected a whole number, not a string (write it as h2_resets = 3)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(tt.data))
			ps, ok := err.(Problems)
			if !ok || len(ps) != 1 || ps[0].String() != tt.want {
				t.Errorf("Parse = %v; want the one problem %q", err, tt.want)
			}
		})
	}
}

// TestProblemsInFileOrder: `pqedge config check` lists a file's problems
// as the file has them, top to bottom, then those about what it lacks
// (no line), whatever order validation found them in.
func TestProblemsInFileOrder(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.toml")
	multi := 0
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(path, data)
		ps, ok := err.(Problems)
		if !ok {
			continue
		}
		if len(ps) > 1 {
			multi++
		}
		for i := 1; i < len(ps); i++ {
			a, b := ps[i-1].Line, ps[i].Line
			if b > 0 && (a <= 0 || a > b) {
				t.Errorf("%s: problem at line %d listed after one at line %d:\n%v", path, b, a, ps)
				break
			}
		}
	}
	if multi == 0 {
		t.Fatal("no testdata/bad file has several problems to order")
	}
}
