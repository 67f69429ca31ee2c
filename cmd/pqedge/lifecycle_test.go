package main

import (
	"bytes"

	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/freeport"
)

// pqedgeProcess is the real binary (this test binary under the name
// pqedge, see TestMain) serving a config, with its stderr captured.
type pqedgeProcess struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

func startPqedge(t *testing.T, configFile string) *pqedgeProcess {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pqedge")
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	p := &pqedgeProcess{cmd: exec.Command(bin, "run", "-config", configFile), stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("pqedge stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

func (p *pqedgeProcess) waitLog(t *testing.T, substr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.stderr.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("pqedge never logged %q; stderr:\n%s", substr, p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func lifecycleConfig(dir string, port int, upstream, policy string) string {
	return fmt.Sprintf(`
data_dir = %q
[log]
level = "debug"
[timeouts]
shutdown = "10s"
[[listener]]
name = "https"
address = "127.0.0.1:%d"
[[site]]
name = "local"
server_names = ["localhost"]
[site.tls]
policy = %q
[[site.route]]
path = "/"
handler = "inspect"
[[site.route]]
path = "/slow"
pool = "app"
[[pool]]
name = "app"
upstreams = [%q]
`, filepath.Join(dir, "data"), port, policy, upstream)
}

// TestSIGTERMDrains: a request in flight when SIGTERM arrives completes,
// new connections are refused, and pqedge exits 0.
func TestSIGTERMDrains(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "finished after SIGTERM")
	})}
	upLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go up.Serve(upLn)
	defer up.Close()

	dir := t.TempDir()
	port := freeport.Must(t)
	file := filepath.Join(dir, "pqedge.toml")
	os.WriteFile(file, []byte(lifecycleConfig(dir, port, upLn.Addr().String(), "pq-preferred")), 0o600)
	p := startPqedge(t, file)
	p.waitLog(t, "pqedge started")

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := client.Get(url + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{string(b), err}
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitLog(t, "draining")
	// The listening socket is closed at once: new clients are refused.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("pqedge still accepts connections after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	r := <-res
	if r.err != nil || r.body != "finished after SIGTERM" {
		t.Fatalf("in-flight request: %q, %v", r.body, r.err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("pqedge exited with %v, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("pqedge did not exit after draining")
	}
}

// TestSIGHUPReloads: a valid config is swapped in; an invalid one is
// refused with its problems logged while the old config keeps serving.
func TestSIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	port := freeport.Must(t)
	file := filepath.Join(dir, "pqedge.toml")
	os.WriteFile(file, []byte(lifecycleConfig(dir, port, "127.0.0.1:9", "pq-preferred")), 0o600)
	p := startPqedge(t, file)
	p.waitLog(t, "pqedge started")
	url := fmt.Sprintf("https://127.0.0.1:%d/", port)
	classical := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, CurvePreferences: []tls.CurveID{tls.X25519}}}}
	get := func() error {
		classical.CloseIdleConnections()
		resp, err := classical.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(); err != nil {
		t.Fatalf("classical client refused under pq-preferred: %v", err)
	}

	os.WriteFile(file, []byte("[[listener]]\nname = 1\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "reload refused")
	if !strings.Contains(p.stderr.String(), "pqedge.toml:2") {
		t.Errorf("the refused reload does not name FILE:LINE:\n%s", p.stderr.String())
	}
	if err := get(); err != nil {
		t.Fatalf("after a refused reload the old config stopped serving: %v", err)
	}

	// A certificate file that is missing: refused at the line naming it,
	// as config check and a start report it.
	missing := strings.Replace(lifecycleConfig(dir, port, "127.0.0.1:9", "pq-preferred"), "[site.tls]",
		"certs = \"files\"\n[[site.cert]]\ncert = \"nope.crt\"\nkey = \"nope.key\"\n[site.tls]", 1)
	os.WriteFile(file, []byte(missing), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "nope.crt")
	if out := p.stderr.String(); !strings.Contains(out, "pqedge.toml:15: site[0].cert[0].cert: failed to read certificate") {
		t.Errorf("the refused reload does not name the missing file's FILE:LINE and key:\n%s", out)
	}
	if err := get(); err != nil {
		t.Fatalf("after a refused reload the old config stopped serving: %v", err)
	}

	os.WriteFile(file, []byte(lifecycleConfig(dir, port, "127.0.0.1:9", "pq-only")), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "config reloaded")
	if err := get(); err == nil {
		t.Fatal("after reloading to pq-only a classical client still completes a handshake")
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGINT")
	}
}
