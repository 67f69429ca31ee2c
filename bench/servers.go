package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/connlimit"
	"github.com/pqedge/pqedge/internal/freeport"
	"github.com/pqedge/pqedge/pqtls"
)

// Server kinds of the matrix.
const (
	ServerPQEdge = "pqedge"
	ServerPlain  = "plain"
	ServerNginx  = "nginx"
)

// ServerSpec is what a server of the matrix serves: one certificate chain
// and every group of the grid (the client offers one group per cell).
type ServerSpec struct {
	Dir    string // a private directory for configs and logs
	Chain  *Chain
	Alg    CertAlg
	Groups []tls.CurveID
	// QUIC asks for HTTP/3 on UDP at the same address too (only for
	// servers that implement QUICServer).
	QUIC bool
	// Upstream, when set (host:port of an HTTP/1.1 server), makes the
	// server a reverse proxy to it for every path, as `bench proxy`
	// configures it (see ProxySpec), instead of answering by itself: the
	// matrix's cells with a request (MatrixOptions.Request). Not with QUIC.
	Upstream string
	// MaxConns is how many client connections the server must hold at
	// once (nginx's worker_connections is sized from it).
	MaxConns int
}

// Launcher starts one kind of server.
type Launcher interface {
	// Kind is ServerPQEdge, ServerPlain or ServerNginx.
	Kind() string
	// Signer names who signs handshakes for alg ("circl", "stdlib",
	// "openssl", "" for classical keys), or returns "" and false when this
	// server cannot serve alg as asked.
	Signer(alg CertAlg) (string, bool)
	// Start runs the server and returns once it accepts connections.
	Start(ctx context.Context, spec ServerSpec) (*Process, error)
}

// Process is a running server.
type Process struct {
	Addr string
	PID  int // the process whose CPU (with its children's) is the server's

	cmd     *exec.Cmd
	stopFn  func() // instead of cmd, for servers run in this process (tests)
	exited  chan struct{}
	stderr  *limitedBuffer
	waitMu  sync.Mutex // guards waitErr
	waitErr error
}

// Stop ends the server with SIGTERM, then SIGKILL if it has not exited
// after 5s (a server that ignores SIGTERM must not hang the matrix).
func (p *Process) Stop() {
	if p.stopFn != nil {
		p.stopFn()
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// startProcess runs cmd and waits until addr accepts TCP connections.
func startProcess(ctx context.Context, cmd *exec.Cmd, addr string) (*Process, error) {
	return startProcessAt(ctx, cmd, []string{addr})
}

// startProcessAt runs cmd and waits until every address in addrs accepts
// TCP connections, for at most 20s (key loading and nginx start are quick;
// a server that takes longer is broken). The Process's Addr is addrs[0].
func startProcessAt(ctx context.Context, cmd *exec.Cmd, addrs []string) (*Process, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no address to wait for")
	}
	p := &Process{Addr: addrs[0], cmd: cmd, exited: make(chan struct{}), stderr: &limitedBuffer{max: 8 << 10}}
	cmd.Stdout = p.stderr
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", cmd.Path, err)
	}
	p.PID = cmd.Process.Pid
	go func() {
		err := cmd.Wait()
		p.waitMu.Lock()
		p.waitErr = err
		p.waitMu.Unlock()
		close(p.exited)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range addrs {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.exited:
				p.waitMu.Lock()
				defer p.waitMu.Unlock()
				return nil, fmt.Errorf("%s exited before listening on %s (%v): %s", filepath.Base(cmd.Path), addr, p.waitErr, strings.TrimSpace(p.stderr.String()))
			case <-ctx.Done():
				p.Stop()
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				p.Stop()
				return nil, fmt.Errorf("%s did not listen on %s within 20s: %s", filepath.Base(cmd.Path), addr, strings.TrimSpace(p.stderr.String()))
			}
		}
	}
	return p, nil
}

// limitedBuffer keeps the first max bytes of a child's output for error
// messages; the rest is dropped so a chatty server cannot exhaust memory.
type limitedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func groupNames(groups []tls.CurveID) []string {
	var names []string
	for _, g := range groups {
		names = append(names, pqtls.GroupName(g))
	}
	return names
}

// PQEdgeLauncher runs `pqedge run -config FILE` with a generated config
// serving the chain from files.
type PQEdgeLauncher struct {
	Self []string // the pqedge command: the binary and any leading arguments
}

func (PQEdgeLauncher) Kind() string { return ServerPQEdge }

// Signer: pqedge signs ML-DSA with the signer the cell names, through its
// [site.tls] mldsa_signer key.
func (PQEdgeLauncher) Signer(alg CertAlg) (string, bool) {
	return string(alg.Signer), true
}

// ServesQUIC: the listener's http3 = true serves HTTP/3 on the same port.
func (PQEdgeLauncher) ServesQUIC() bool { return true }

func (l PQEdgeLauncher) Start(ctx context.Context, spec ServerSpec) (*Process, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	var quoted []string
	for _, n := range groupNames(spec.Groups) {
		quoted = append(quoted, fmt.Sprintf("%q", n))
	}
	// pqedge refuses allow_classical_only next to a post-quantum group.
	classicalOnly := "allow_classical_only = true"
	for _, g := range spec.Groups {
		if pqtls.IsPostQuantumGroup(g) {
			classicalOnly = ""
		}
	}
	signer := ""
	if spec.Alg.Signer != "" {
		signer = fmt.Sprintf("mldsa_signer = %q", spec.Alg.Signer)
	}
	pq := "off"
	if spec.Alg.PostQuantum() {
		pq = "always" // the only chain: serve it to every client that offers ML-DSA
	}
	http3 := ""
	if spec.QUIC {
		http3 = "http3 = true"
	}
	conf := fmt.Sprintf(`# generated by pqedge bench matrix
data_dir = %q

[admin]
listen = ""

[log]
level = "warn"
access = false

[[listener]]
name = "https"
address = %q
kind = "https"
%s

[[site]]
name = "bench"
server_names = ["localhost"]
certs = "files"
pq_certs = %q
[[site.cert]]
cert = %q
key = %q
[site.tls]
groups = [%s]
%s
%s

%s`, filepath.Join(spec.Dir, "data"), addr, http3, pq, spec.Chain.CertFile, spec.Chain.KeyFile, strings.Join(quoted, ", "), classicalOnly, signer, pqedgeRoute(spec.Upstream))
	if spec.MaxConns > connlimit.DefaultMaxHandshakesPerClient {
		// The client is one address standing for many: its handshakes
		// in flight must not meet the cap on one address's.
		conf += fmt.Sprintf("\n[limits]\nhandshakes_per_client = %d\n", clientHandshakeCap(spec.MaxConns))
	}
	file := filepath.Join(spec.Dir, "pqedge.toml")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("failed to write %s: %w", file, err)
	}
	if len(l.Self) == 0 {
		return nil, errors.New("no pqedge binary to run")
	}
	args := append(append([]string{}, l.Self[1:]...), "run", "-config", file)
	return startProcess(ctx, exec.CommandContext(ctx, l.Self[0], args...), addr)
}

// pqedgeRoute is the matrix pqedge's only route: its inspect page, or
// with an upstream the same pool as PQEdgeProxyConfig's, pqedge's
// defaults unchanged.
func pqedgeRoute(upstream string) string {
	if upstream == "" {
		return "[[site.route]]\npath = \"/\"\nhandler = \"inspect\"\n"
	}
	return fmt.Sprintf("[[site.route]]\npath = \"/\"\npool = \"app\"\n\n[[pool]]\nname = \"app\"\nupstreams = [%q]\n", upstream)
}

// PlainLauncher runs `pqedge bench serve-plain`: crypto/tls and nothing
// else, the floor pqedge is compared with.
type PlainLauncher struct {
	Self []string
}

func (PlainLauncher) Kind() string { return ServerPlain }

func (PlainLauncher) Signer(alg CertAlg) (string, bool) { return string(alg.Signer), true }

// ServesQUIC: serve-plain -quic serves HTTP/3 with quic-go.
func (PlainLauncher) ServesQUIC() bool { return true }

func (l PlainLauncher) Start(ctx context.Context, spec ServerSpec) (*Process, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	if len(l.Self) == 0 {
		return nil, errors.New("no pqedge binary to run")
	}
	args := append(append([]string{}, l.Self[1:]...), "bench", "serve-plain",
		"-listen", addr, "-cert", spec.Chain.CertFile, "-key", spec.Chain.KeyFile,
		"-groups", strings.Join(groupNames(spec.Groups), ","))
	if spec.Alg.Signer != "" {
		args = append(args, "-signer", string(spec.Alg.Signer))
	}
	if spec.QUIC {
		args = append(args, "-quic")
	}
	if spec.Upstream != "" {
		// The floor of bench proxy, ServePlainProxy: crypto/tls, net/http
		// and httputil.ReverseProxy with a keep-alive upstream pool.
		args = append(args, "-upstream", spec.Upstream)
	}
	return startProcess(ctx, exec.CommandContext(ctx, l.Self[0], args...), addr)
}

// NginxLauncher runs nginx from a Debian root through chroot(8).
type NginxLauncher struct {
	Root string // the root file system holding /usr/sbin/nginx
}

// NginxRoot returns the trixie peer root made by scripts/peers when it is
// complete and this process may chroot into it.
func NginxRoot(peersDir string) (string, error) {
	root := filepath.Join(peersDir, "trixie")
	if _, err := os.Stat(filepath.Join(root, ".pqedge-complete")); err != nil {
		return "", fmt.Errorf("no trixie peer root at %s (make it with `make peers`)", root)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/sbin/nginx")); err != nil {
		return "", fmt.Errorf("no nginx in %s", root)
	}
	if os.Geteuid() != 0 {
		return "", errors.New("chroot into the peer root needs root privileges")
	}
	return root, nil
}

func (NginxLauncher) Kind() string { return ServerNginx }

// ServesQUIC: trixie's nginx 1.26 is built with http_v3_module; with
// OpenSSL 3.5 it runs QUIC through its OpenSSL compatibility layer. Over
// QUIC the client is crypto/tls, whose signature_algorithms_cert leaves
// ML-DSA out, so OpenSSL refuses to send an ML-DSA-signed chain: only
// classically signed chains complete there.
func (NginxLauncher) ServesQUIC() bool { return true }

// Signer: OpenSSL signs, whatever signer the cell names; the matrix runs
// nginx once per ML-DSA key (for the circl-named cell).
func (NginxLauncher) Signer(alg CertAlg) (string, bool) {
	if alg.Signer == "" {
		return "", true
	}
	return "openssl", alg.Signer == certs.SignerCircl
}

func (l NginxLauncher) Start(ctx context.Context, spec ServerSpec) (*Process, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	host, inside, err := l.workDir()
	if err != nil {
		return nil, err
	}
	for _, f := range []string{spec.Chain.CertFile, spec.Chain.KeyFile} {
		if err := copyFile(f, filepath.Join(host, filepath.Base(f))); err != nil {
			os.RemoveAll(host)
			return nil, err
		}
	}
	if spec.Upstream != "" {
		// Proxying as bench proxy's nginx front does: upstream keep-alive,
		// no limits that would close connections during a run.
		conf := NginxProxyConfig(ProxySpec{Chain: spec.Chain, Groups: spec.Groups, Upstream: spec.Upstream, MaxConns: spec.MaxConns}, inside, addr, "")
		return l.run(ctx, host, inside, conf, []string{addr})
	}
	quicListen := "" // HTTP/3 on the same port over UDP (nginx 1.25+ syntax)
	if spec.QUIC {
		quicListen = "listen " + addr + " quic;"
	}
	conf := fmt.Sprintf(`# generated by pqedge bench matrix
daemon off;
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s;
    proxy_temp_path %[1]s;
    fastcgi_temp_path %[1]s;
    uwsgi_temp_path %[1]s;
    scgi_temp_path %[1]s;
    server {
        listen %[2]s ssl;
        %[6]s
        server_name localhost;
        ssl_protocols TLSv1.3;
        ssl_certificate %[1]s/%[3]s;
        ssl_certificate_key %[1]s/%[4]s;
        ssl_ecdh_curve %[5]s;
        ssl_session_cache off;
        return 200 "ok\n";
    }
}
`, inside, addr, filepath.Base(spec.Chain.CertFile), filepath.Base(spec.Chain.KeyFile), strings.Join(groupNames(spec.Groups), ":"), quicListen)
	return l.run(ctx, host, inside, conf, []string{addr})
}

// clientHandshakeCap is limits.handshakes_per_client for a harness that
// is one client address with n connections in flight: n, but no more
// than the places pqedge's default limits have (the handshake slots and
// their queue, which its config check holds it to) nor its connections
// per address.
func clientHandshakeCap(n int) int {
	return min(n, connlimit.DefaultMaxConnsPerClient, connlimit.DefaultMaxHandshakes+connlimit.DefaultHandshakeQueue)
}
