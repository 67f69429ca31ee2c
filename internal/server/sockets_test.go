package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pqedge/pqedge/internal/freeport"
)

// portMoveListener is one [[listener]] of portMoveConfig; {{PORT:name}}
// in its address is replaced by the port listener name is bound to.
type portMoveListener struct {
	name, address    string
	http3, reusePort bool
}

// portMoveConfig serves one site, proxied to up, on listeners.
func portMoveConfig(up string, listeners []portMoveListener) string {
	var b strings.Builder
	b.WriteString("data_dir = \"{{DATA}}/data\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = false\n")
	for _, l := range listeners {
		fmt.Fprintf(&b, "[[listener]]\nname = %q\naddress = %q\nhttp3 = %t\nreuse_port = %t\n", l.name, l.address, l.http3, l.reusePort)
	}
	fmt.Fprintf(&b, "[[site]]\nname = \"local\"\nserver_names = [\"localhost\"]\n[[site.route]]\npath = \"/\"\npool = \"app\"\n[[pool]]\nname = \"app\"\nupstreams = [%q]\n", up)
	return b.String()
}

// TestReloadToBoundPortKeepsSocket: a reload whose config names the port
// a port-0 listener was given (as "listening address=..." logged it) keeps
// that socket, TCP and UDP: the reload succeeds instead of failing to bind
// the port its own socket holds, the port serves TLS (and HTTP/3) in the
// new config, and a request in flight on a connection opened before the
// reload is answered on it. Two listeners that swap their ports swap
// their sockets; a listener moved from a concrete port to port 0 gets a
// new port.
func TestReloadToBoundPortKeepsSocket(t *testing.T) {
	tests := []struct {
		name string
		from []portMoveListener
		to   []portMoveListener
		// wantPort names, for each listener of to, the listener of from
		// whose port it must be on; "" for a new port.
		wantPort map[string]string
	}{
		{
			name:     "IPv4 loopback",
			from:     []portMoveListener{{name: "a", address: "127.0.0.1:0"}},
			to:       []portMoveListener{{name: "a", address: "127.0.0.1:{{PORT:a}}"}},
			wantPort: map[string]string{"a": "a"},
		},
		{
			name:     "IPv4 loopback with HTTP/3",
			from:     []portMoveListener{{name: "a", address: "127.0.0.1:0", http3: true}},
			to:       []portMoveListener{{name: "a", address: "127.0.0.1:{{PORT:a}}", http3: true}},
			wantPort: map[string]string{"a": "a"},
		},
		{
			name:     "IPv6 wildcard with HTTP/3",
			from:     []portMoveListener{{name: "a", address: "[::]:0", http3: true}},
			to:       []portMoveListener{{name: "a", address: "[::]:{{PORT:a}}", http3: true}},
			wantPort: map[string]string{"a": "a"},
		},
		{
			// Go binds 0.0.0.0 as the dual-stack [::], and logs that.
			name:     "IPv4 wildcard written as logged",
			from:     []portMoveListener{{name: "a", address: "0.0.0.0:0"}},
			to:       []portMoveListener{{name: "a", address: "[::]:{{PORT:a}}"}},
			wantPort: map[string]string{"a": "a"},
		},
		{
			// reuse_port needs a fixed port. Binding [::] beside the
			// socket of 0.0.0.0 would succeed with it, and closing the
			// old socket would reset the connections in its queue.
			name:     "reuse_port, IPv4 wildcard written as logged",
			from:     []portMoveListener{{name: "a", address: "0.0.0.0:{{FREE}}", reusePort: true}},
			to:       []portMoveListener{{name: "a", address: "[::]:{{PORT:a}}", reusePort: true}},
			wantPort: map[string]string{"a": "a"},
		},
		{
			name: "two listeners swap",
			from: []portMoveListener{{name: "a", address: "127.0.0.1:0"}, {name: "b", address: "127.0.0.1:0"}},
			to: []portMoveListener{{name: "a", address: "127.0.0.1:{{PORT:b}}"},
				{name: "b", address: "127.0.0.1:{{PORT:a}}"}},
			wantPort: map[string]string{"a": "b", "b": "a"},
		},
		{
			name:     "concrete port back to port 0",
			from:     []portMoveListener{{name: "a", address: "127.0.0.1:{{FREE}}"}},
			to:       []portMoveListener{{name: "a", address: "127.0.0.1:0"}},
			wantPort: map[string]string{"a": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newLameDuckUpstream(t)
			upAddr := strings.TrimPrefix(up.URL, "http://")
			// The slow requests end before the upstream closes, even
			// when the test fails before it releases them.
			release := sync.OnceFunc(func() { close(up.release) })
			var from []portMoveListener
			for _, l := range tt.from {
				if strings.Contains(l.address, "{{FREE}}") {
					l.address = strings.ReplaceAll(l.address, "{{FREE}}", strconv.Itoa(freeport.Must(t)))
				}
				from = append(from, l)
			}
			ts := startServer(t, portMoveConfig(upAddr, from))
			t.Cleanup(release) // before the server's drain waits for them
			tcpPorts, udpPorts := map[string]int{}, map[string]int{}
			sockets := map[string]*socket{}
			for _, l := range from {
				sockets[l.name] = ts.socket(l.name)
				tcpPorts[l.name] = portOf(t, ts.srv.ListenerAddr(l.name))
				if l.http3 {
					udpPorts[l.name] = portOf(t, ts.srv.QUICAddr(l.name))
				}
			}

			// A request in flight across the reload on each port, over
			// TCP and QUIC.
			var inFlight []<-chan h3Result
			for _, l := range from {
				inFlight = append(inFlight, getAsync(ts.client(), loopbackURL(tcpPorts[l.name])+"/slow"))
				waitEntered(t, up)
				if l.http3 {
					c, _ := ts.h3Client()
					inFlight = append(inFlight, getAsync(c, loopbackURL(udpPorts[l.name])+"/slow"))
					waitEntered(t, up)
				}
			}

			var to []portMoveListener
			for _, l := range tt.to {
				for name, port := range tcpPorts {
					l.address = strings.ReplaceAll(l.address, "{{PORT:"+name+"}}", strconv.Itoa(port))
				}
				to = append(to, l)
			}
			if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, portMoveConfig(upAddr, to))); err != nil {
				t.Fatalf("reload to %v: %v", to, err)
			}

			for _, l := range to {
				port := portOf(t, ts.srv.ListenerAddr(l.name))
				switch was := tt.wantPort[l.name]; {
				case was != "" && port != tcpPorts[was]:
					t.Errorf("listener %q is on port %d after the reload, want %d (listener %q's socket)", l.name, port, tcpPorts[was], was)
				case was != "" && ts.socket(l.name) != sockets[was]:
					t.Errorf("listener %q is on a new socket after the reload, want listener %q's", l.name, was)
				case was == "" && port == tcpPorts[l.name]:
					t.Errorf("listener %q kept port %d after a reload to port 0, want a new port", l.name, port)
				}
				if got := get(t, ts.client(), loopbackURL(port)); got != "hello" {
					t.Errorf("listener %q after the reload answered %q over TCP, want hello", l.name, got)
				}
				if !l.http3 {
					continue
				}
				udp := portOf(t, ts.srv.QUICAddr(l.name))
				if was := tt.wantPort[l.name]; was != "" && udp != udpPorts[was] {
					t.Errorf("listener %q serves HTTP/3 on UDP port %d after the reload, want %d", l.name, udp, udpPorts[was])
				}
				c, _ := ts.h3Client()
				if got := get(t, c, loopbackURL(udp)); got != "hello" {
					t.Errorf("listener %q after the reload answered %q over HTTP/3, want hello", l.name, got)
				}
			}
			release()
			for i, ch := range inFlight {
				if r := <-ch; r.err != nil || r.body != "slow done" {
					t.Errorf("request %d in flight across the reload: %q, %v", i, r.body, r.err)
				}
			}
		})
	}
}

// TestSocketAdoption: which socket a wanted key takes over (adoptable):
// only one of its kind, bound to exactly its address, that no key of the
// plan keeps; otherwise it binds anew and meets the kernel's EADDRINUSE.
func TestSocketAdoption(t *testing.T) {
	ss := newSocketSet(&Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(ss.closeAll)
	first, err := ss.open(t.Context(), []socketWant{{key: "127.0.0.1:0#a", what: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	ss.commit(first)
	sk := first.byKey["127.0.0.1:0#a"]
	port := strconv.Itoa(portOf(t, sk.addr()))

	tests := []struct {
		name    string
		want    []socketWant
		adopted string // the wanted key that must get sk; "" for none
		inUse   bool   // the open fails with EADDRINUSE
	}{
		{name: "the bound address", want: []socketWant{{key: "127.0.0.1:" + port}}, adopted: "127.0.0.1:" + port},
		{name: "IPv4-mapped", want: []socketWant{{key: "[::ffff:127.0.0.1]:" + port}}, adopted: "[::ffff:127.0.0.1]:" + port},
		{name: "kept under its key", want: []socketWant{{key: "127.0.0.1:0#a"}, {key: "127.0.0.1:" + port}}, inUse: true},
		{name: "an HTTP-01 listener", want: []socketWant{{key: "127.0.0.1:" + port, plain: true}}, inUse: true},
		{name: "port 0", want: []socketWant{{key: "127.0.0.1:0#b"}}},
		{name: "another address", want: []socketWant{{key: "127.0.0.2:" + port}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.want {
				tt.want[i].what = "test"
			}
			b, err := ss.open(t.Context(), tt.want)
			if tt.inUse {
				if !errors.Is(err, syscall.EADDRINUSE) {
					t.Fatalf("open = %v, want EADDRINUSE", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ss.abort(b)
			for _, w := range tt.want {
				if got := b.byKey[w.key] == sk; got != (w.key == tt.adopted) {
					t.Errorf("%s took the port-0 socket: %v, want %v", w.key, got, !got)
				}
			}
		})
	}
}

// TestBindsTo: the addresses that bind a socket's bound address, as Go
// binds them.
func TestBindsTo(t *testing.T) {
	v4 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443}
	any6 := &net.TCPAddr{IP: net.IPv6unspecified, Port: 8443}
	zoned := &net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 8443, Zone: "eth0"}
	tests := []struct {
		address string
		bound   net.Addr
		want    bool
	}{
		{"127.0.0.1:8443", v4, true},
		{"[::ffff:127.0.0.1]:8443", v4, true},
		{"127.0.0.1:8444", v4, false},
		{"127.0.0.2:8443", v4, false},
		{"127.0.0.1:0", v4, false},
		{"localhost:8443", v4, false},
		{"[::]:8443", any6, true},
		{"0.0.0.0:8443", any6, true},
		{":8443", any6, true},
		{"127.0.0.1:8443", any6, false},
		{"[fe80::1%eth0]:8443", zoned, true},
		{"[fe80::1]:8443", zoned, false},
	}
	for _, tt := range tests {
		if got := bindsTo(tt.address, tt.bound); got != tt.want {
			t.Errorf("bindsTo(%q, %v) = %v, want %v", tt.address, tt.bound, got, tt.want)
		}
	}
}

func portOf(t *testing.T, a net.Addr) int {
	t.Helper()
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.Port
	case *net.UDPAddr:
		return a.Port
	}
	t.Fatalf("no port in %v", a)
	return 0
}

// socket is the TCP socket a listener of the current config is served on.
func (ts *testServer) socket(listener string) *socket {
	ts.t.Helper()
	l := ts.srv.current.Load().plan.Listener(listener)
	if l == nil {
		ts.t.Fatalf("no listener %q", listener)
	}
	ts.srv.sockets.mu.Lock()
	defer ts.srv.sockets.mu.Unlock()
	return ts.srv.sockets.byKey[l.SocketKey]
}

func loopbackURL(port int) string {
	return "https://127.0.0.1:" + strconv.Itoa(port)
}

// get fetches url and returns its body, failing the test on an error.
func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}
