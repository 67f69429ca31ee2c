package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/freeport"
)

// runPqedgeProcess runs the real pqedge (this test binary under that name)
// with args and returns its exit code and output: Docker acts on the exit
// code of a HEALTHCHECK process, so that is what these tests read.
func runPqedgeProcess(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pqedge")
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("failed to run pqedge: %v", err)
	}
	return code, out.String(), errOut.String()
}

// adminStub is an admin listener whose /readyz answers with handler.
func adminStub(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func answer(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pqedge.toml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestHealthAnswers: exit 0 only for a 200 from /readyz, 1 for anything
// else, and never 2; what /readyz said is printed.
func TestHealthAnswers(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name       string
		addr       string
		args       []string
		wantCode   int
		wantStdout string // substring; "" checks nothing
		wantStderr string // substring; "" wants it empty
	}{
		{name: "ready", addr: adminStub(t, answer(200, "ready\n")), wantStdout: "ready\n"},
		{name: "draining", addr: adminStub(t, answer(503, "not ready: draining\n")), wantCode: 1,
			wantStdout: "not ready: draining", wantStderr: "answered 503 Service Unavailable: not ready: draining"},
		{name: "failed checks listed", addr: adminStub(t, answer(503, "not ready\nlistener \"https\": not bound\npool \"app\": no healthy upstream")), wantCode: 1,
			wantStdout: "pool \"app\": no healthy upstream\n", wantStderr: "answered 503"},
		{name: "server error", addr: adminStub(t, answer(500, "")), wantCode: 1, wantStderr: "answered 500 Internal Server Error: (empty body)"},
		{name: "redirect not followed", addr: adminStub(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/healthz", http.StatusFound)
		}), wantCode: 1, wantStderr: "answered 302"},
		{name: "stuck admin listener", addr: adminStub(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}), args: []string{"-timeout", "300ms"}, wantCode: 1, wantStderr: "Client.Timeout"},
		{name: "nothing listening", addr: refused, wantCode: 1, wantStderr: "hint: is pqedge running, with its admin listener on " + refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runPqedgeProcess(t, append([]string{"health", "-admin", tt.addr}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("stdout %q, want it to contain %q", stdout, tt.wantStdout)
			}
			if tt.wantStderr == "" && stderr != "" || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr %q, want %q", stderr, tt.wantStderr)
			}
			if tt.wantCode != 0 && !strings.HasPrefix(stderr, "pqedge: error: ") {
				t.Errorf("stderr %q does not start with pqedge: error:", stderr)
			}
		})
	}
}

// TestHealthAddress: where health looks, and the mistakes in saying so.
// Every mistake exits 1, like an unhealthy answer, never 2.
func TestHealthAddress(t *testing.T) {
	ready := adminStub(t, answer(200, "ready\n"))
	_, port, _ := net.SplitHostPort(ready)
	other := adminStub(t, answer(503, "not ready: draining\n"))

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string // substring; "" wants it empty
	}{
		{name: "config on loopback", args: []string{"-config", writeConfig(t, "[admin]\nlisten = \""+ready+"\"\n")}},
		{name: "config on every address asks loopback", args: []string{"-config", writeConfig(t, "[admin]\nlisten = \"0.0.0.0:"+port+"\"\n")}},
		{name: "config with no host asks loopback", args: []string{"-config", writeConfig(t, "[admin]\nlisten = \":"+port+"\"\n")}},
		// pqedge run accepts a UTF-8 byte order mark (config.WithoutBOM):
		// health must too, or a container it serves is restarted.
		{name: "config with a UTF-8 byte order mark", args: []string{"-config", writeConfig(t, "\xef\xbb\xbf[admin]\nlisten = \""+ready+"\"\n")}},
		// Only admin.listen is read: a config that would fail validation
		// (no listener, an unknown pool) still names the running admin.
		{name: "rest of the config not validated", args: []string{"-config", writeConfig(t, "[admin]\nlisten = \""+ready+"\"\n[[site]]\nname = \"a\"\n[[site.route]]\npath = \"/\"\npool = \"missing\"\n")}},
		{name: "-admin wins over -config", args: []string{"-admin", ready, "-config", writeConfig(t, "[admin]\nlisten = \""+other+"\"\n")}},
		{name: "config without admin", args: []string{"-config", writeConfig(t, "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:8443\"\n")}, wantCode: 1,
			wantStderr: "has no admin listener, which is where /readyz is served\nhint: set listen = \"127.0.0.1:9180\" under [admin] in "},
		{name: "config missing", args: []string{"-config", filepath.Join(t.TempDir(), "none.toml")}, wantCode: 1, wantStderr: "failed to read config"},
		{name: "config not TOML", args: []string{"-config", writeConfig(t, "[admin\n")}, wantCode: 1, wantStderr: "hint: `pqedge config check "},
		{name: "random port", args: []string{"-config", writeConfig(t, "[admin]\nlisten = \"127.0.0.1:0\"\n")}, wantCode: 1, wantStderr: "chosen at random"},
		{name: "bad -admin", args: []string{"-admin", "localhost"}, wantCode: 1, wantStderr: "bad admin address \"localhost\" from -admin"},
		{name: "bad -timeout", args: []string{"-admin", ready, "-timeout", "0s"}, wantCode: 1, wantStderr: "-timeout must be positive"},
		{name: "unknown flag", args: []string{"-url", "x"}, wantCode: 1, wantStderr: "flag provided but not defined: -url"},
		{name: "stray argument", args: []string{ready}, wantCode: 1, wantStderr: "health takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runPqedgeProcess(t, append([]string{"health"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if tt.wantStderr == "" && stderr != "" || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr %q, want %q", stderr, tt.wantStderr)
			}
		})
	}
}

// TestAdminListenErrorsSayWhere: a config health cannot read is named
// with FILE:LINE, as config check would name it, not only its decoder's
// message.
func TestAdminListenErrorsSayWhere(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"syntax", "[admin]\nlisten = \"127.0.0.1:1\"\n[timeouts\n", "f.toml:3: failed to read admin.listen: "},
		{"wrong type", "\n[admin]\nlisten = [\"127.0.0.1:1\"]\n", "f.toml:3: failed to read admin.listen: "},
		{"duplicate key", "[admin]\nlisten = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n", "f.toml:3: failed to read admin.listen: "},
		{"too deep", "[admin]\nready_pools = " + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + "\n", "f.toml:2: failed to read admin.listen: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseAdminListen("f.toml", []byte(tt.data))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("parseAdminListen = %v; want an error starting %q", err, tt.want)
			}
		})
	}
}

func TestDialAddress(t *testing.T) {
	tests := []struct{ listen, want, wantErr string }{
		{listen: "127.0.0.1:9180", want: "127.0.0.1:9180"},
		{listen: "0.0.0.0:9180", want: "127.0.0.1:9180"},
		{listen: ":9180", want: "127.0.0.1:9180"},
		{listen: "[::]:9180", want: "[::1]:9180"},
		{listen: "[fd00::1]:9180", want: "[fd00::1]:9180"},
		{listen: "admin.internal:9180", want: "admin.internal:9180"},
		{listen: "127.0.0.1:0", wantErr: "chosen at random"},
		{listen: "127.0.0.1", wantErr: "missing port"},
	}
	for _, tt := range tests {
		got, err := dialAddress(tt.listen)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("dialAddress(%q) = %q, %v; want error %q", tt.listen, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("dialAddress(%q) = %q, %v; want %q", tt.listen, got, err, tt.want)
		}
	}
	if got, err := healthAddress("", ""); err != nil || got != defaultAdmin {
		t.Errorf("without -admin and -config health asks %q, %v; want %s", got, err, defaultAdmin)
	}
}

// TestHealthOfRunningPqedge: against a real pqedge, health becomes 0 once
// it serves, and reads the address from the same config file.
func TestHealthOfRunningPqedge(t *testing.T) {
	dir := t.TempDir()
	admin := freeport.MustAddr(t)
	file := filepath.Join(dir, "pqedge.toml")
	cfg := lifecycleConfig(dir, freeport.Must(t), "127.0.0.1:9", "pq-preferred") + fmt.Sprintf("\n[admin]\nlisten = %q\n", admin)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startPqedge(t, file)
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, stdout, stderr := runPqedgeProcess(t, "health", "-config", file)
		if code == 0 {
			// health prints what /readyz says, whatever checks it lists.
			resp, err := http.Get("http://" + admin + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || stdout != string(body) || stderr != "" {
				t.Errorf("healthy pqedge: health printed %q (stderr %q); /readyz answers %s %q", stdout, stderr, resp.Status, body)
			}
			return
		}
		if code != 1 {
			t.Fatalf("health exited %d while pqedge starts, want 1 (not 2: Docker reserves it)", code)
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never exited 0; last stderr:\n%s", stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FuzzHealthAddress: any config text gives an error or an address to dial
// with a host and a fixed port, never a panic.
func FuzzHealthAddress(f *testing.F) {
	for _, seed := range []string{"../../config.example.toml", "../../internal/image/pqedge.toml", "testdata/script/config_check.txtar"} {
		data, err := os.ReadFile(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("[admin]\nlisten = \"[::]:9180\"\n"))
	f.Add([]byte("[admin]\nlisten = \":0\"\n"))
	f.Add([]byte("admin = 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		listen, err := parseAdminListen("fuzz.toml", data)
		if err != nil {
			return
		}
		addr, err := dialAddress(listen)
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" || port == "0" {
			t.Fatalf("admin.listen %q gave dial address %q (%v)", listen, addr, err)
		}
	})
}
