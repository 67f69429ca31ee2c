package pqtls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/peers"
)

// This file regenerates testdata/clienthello from real clients:
//
//	go test ./pqtls -run TestUpdateCaptures -update
//
// Each client connects to a loopback TLS server whose listener wraps every
// conn in a CaptureConn; GetConfigForClient takes the capture, as pqedge
// does. The records are stored as read (*.bin) with the client's command and
// wire shape in index.json.

var updateCaptures = flag.Bool("update", false, "regenerate testdata/clienthello from real clients and the JA4 golden values from tshark")

const captureDir = "testdata/clienthello"

// captureEntry is one line of testdata/clienthello/index.json.
type captureEntry struct {
	Name    string    `json:"name"`
	Client  string    `json:"client"`  // program and version
	Command string    `json:"command"` // how it was run; PORT is the server's port
	Wire    WireShape `json:"wire"`
}

func readCaptureIndex(t testing.TB) []captureEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(captureDir, "index.json"))
	if err != nil {
		t.Fatalf("failed to read capture index: %v", err)
	}
	var idx []captureEntry
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("failed to parse %s/index.json: %v", captureDir, err)
	}
	return idx
}

func readCapture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(captureDir, name+".bin"))
	if err != nil {
		t.Fatalf("failed to read capture: %v", err)
	}
	return b
}

// capture is what the capture server saw on one connection.
type capture struct {
	records []byte
	ch      *ClientHello
	err     error
}

// captureServer is a loopback HTTPS server that reports the first
// ClientHello of every connection on got.
type captureServer struct {
	port int
	got  chan capture
	// readSignal, when set, receives a value after every server-side Read
	// that returned bytes; the split client uses it to write in steps.
	readSignal chan struct{}
}

func startCaptureServer(t testing.TB) *captureServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("failed to listen: %v", err)
	}
	s := &captureServer{port: ln.Addr().(*net.TCPAddr).Port, got: make(chan capture, 64), readSignal: make(chan struct{}, 64)}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{captureTestCertificate(t)},
		NextProtos:   []string{"h2", "http/1.1"},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, ok := hello.Conn.(*CaptureConn)
			if !ok {
				return nil, fmt.Errorf("conn is %T, not *CaptureConn", hello.Conn)
			}
			ch, err := cc.ClientHello()
			select {
			case s.got <- capture{records: append([]byte(nil), cc.RawRecords()...), ch: ch, err: err}:
			default:
			}
			return nil, nil
		},
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "<p>pqedge capture</p>") }),
		TLSConfig: cfg,
		ErrorLog:  nilLogger(), // failed handshakes (s_client -sigalgs mldsa44) are expected
	}
	go srv.ServeTLS(&captureListener{Listener: ln, signal: s.readSignal}, "", "")
	t.Cleanup(func() { srv.Close() })
	return s
}

// captureListener wraps accepted conns in a CaptureConn (over a conn that
// signals reads, for the split client).
type captureListener struct {
	net.Listener
	signal chan struct{}
}

func (l *captureListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewCaptureConn(&signalConn{Conn: c, signal: l.signal}, 0), nil
}

type signalConn struct {
	net.Conn
	signal chan struct{}
}

func (c *signalConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		select {
		case c.signal <- struct{}{}:
		default:
		}
	}
	return n, err
}

// wait returns the first capture, or fails after the deadline.
func (s *captureServer) wait(t testing.TB, done <-chan error) capture {
	t.Helper()
	deadline := time.NewTimer(90 * time.Second) // browsers start slowly on 2 shared cores
	defer deadline.Stop()
	for {
		select {
		case c := <-s.got:
			return c
		case err := <-done:
			if err != nil {
				t.Logf("client exited: %v", err)
			}
			done = nil // keep waiting: a capture may still be queued
			deadline.Reset(5 * time.Second)
		case <-deadline.C:
			t.Fatalf("no ClientHello captured")
		}
	}
}

var (
	certOnce sync.Once
	certVal  tls.Certificate
	certErr  error
)

// captureTestCertificate is a self-signed ECDSA P-256 certificate for localhost.
func captureTestCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			certErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "localhost"},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			certErr = err
			return
		}
		certVal = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	if certErr != nil {
		t.Fatalf("failed to make test certificate: %v", certErr)
	}
	return certVal
}

// realClient is one client the update test runs.
type realClient struct {
	name, client string
	// run connects to the server on port and returns the command it ran
	// (with the port replaced by PORT). It starts the client and returns a
	// channel that yields its exit.
	run func(t *testing.T, ctx context.Context, s *captureServer) (command string, done <-chan error)
}

func opensslClient(name string, extra ...string) realClient {
	return realClient{name: name, client: "openssl s_client (trixie)", run: func(t *testing.T, ctx context.Context, s *captureServer) (string, <-chan error) {
		root := peers.Trixie(t)
		args := append([]string{"s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", s.port), "-servername", "localhost"}, extra...)
		return startClient(t, root.Command(ctx, "openssl", args...), "openssl", args, s.port)
	}}
}

func curlClient(name string, trixie bool) realClient {
	client := "curl (host, bookworm)"
	if trixie {
		client = "curl (trixie)"
	}
	return realClient{name: name, client: client, run: func(t *testing.T, ctx context.Context, s *captureServer) (string, <-chan error) {
		url := fmt.Sprintf("https://localhost:%d/", s.port)
		args := []string{"-sk", "--resolve", fmt.Sprintf("localhost:%d:127.0.0.1", s.port), url}
		var cmd *exec.Cmd
		if trixie {
			cmd = peers.Trixie(t).Command(ctx, "curl", args...)
		} else {
			cmd = exec.CommandContext(ctx, peers.Binary(t, "curl"), args...)
		}
		return startClient(t, cmd, "curl", args, s.port)
	}}
}

var realClients = []realClient{
	{name: "go", client: "Go crypto/tls client (net/http defaults)", run: runGoClient},
	{name: "go-split", client: "Go crypto/tls client, ClientHello re-framed into several records and writes", run: runSplitClient},
	opensslClient("openssl"),
	opensslClient("openssl-x25519mlkem768", "-groups", "X25519MLKEM768"),
	opensslClient("openssl-secp256r1mlkem768", "-groups", "SecP256r1MLKEM768"),
	opensslClient("openssl-secp384r1mlkem1024", "-groups", "SecP384r1MLKEM1024"),
	opensslClient("openssl-mlkem1024", "-groups", "MLKEM1024"),
	opensslClient("openssl-mldsa44", "-sigalgs", "mldsa44"),
	curlClient("curl-trixie", true),
	curlClient("curl-host", false),
	{name: "chromium", client: "Chromium (host)", run: runChromium},
	{name: "firefox", client: "Firefox ESR (host)", run: runFirefox},
}

// startClient starts cmd with peers.Start (its own process group, killed
// with the browsers' helpers when the capture is done) and returns the
// command line to record, the port shown as PORT.
func startClient(t *testing.T, cmd *exec.Cmd, name string, args []string, port int) (string, <-chan error) {
	t.Helper()
	cmd.Stdin = nil // openssl s_client exits at end of input
	done := peers.Start(t, cmd, name)
	command := name + " " + strings.Join(args, " ")
	return strings.ReplaceAll(command, fmt.Sprint(port), "PORT"), done
}

func runGoClient(t *testing.T, ctx context.Context, s *captureServer) (string, <-chan error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	done := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("https://localhost:%d/", s.port))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	return "http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}.Get(https://localhost:PORT/)", done
}

func runSplitClient(t *testing.T, ctx context.Context, s *captureServer) (string, <-chan error) {
	done := make(chan error, 1)
	go func() {
		raw, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err != nil {
			done <- err
			return
		}
		defer raw.Close()
		conn := tls.Client(&splitConn{Conn: raw, readSignal: s.readSignal, recordSizes: []int{300, 300}, writeSizes: []int{3, 400, 200}},
			&tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		done <- conn.Handshake()
	}()
	return "tls.Client(splitConn{records of 300, 300 and the rest; writes of 3, 400, 200 and the rest}).Handshake()", done
}

// splitConn re-frames the first TLS record the client writes (its
// ClientHello) into several records, and sends those in several writes,
// waiting after each write until the server has read it so that every write
// is a separate server Read.
type splitConn struct {
	net.Conn
	readSignal  chan struct{}
	recordSizes []int // payload sizes of the first records; the rest goes in one more
	writeSizes  []int // sizes of the first writes; the rest goes in one more
	first       bool
}

func (c *splitConn) Write(p []byte) (int, error) {
	if c.first || len(p) < recordHeaderLen {
		return c.Conn.Write(p)
	}
	c.first = true
	n := int(binary.BigEndian.Uint16(p[3:5]))
	if len(p) != recordHeaderLen+n {
		return 0, fmt.Errorf("first write holds %d bytes, not one record", len(p))
	}
	payload := p[recordHeaderLen:]
	var out []byte
	for _, size := range append(c.recordSizes, len(payload)) {
		size = min(size, len(payload))
		if size == 0 {
			break
		}
		out = append(out, p[0], p[1], p[2], byte(size>>8), byte(size))
		out = append(out, payload[:size]...)
		payload = payload[size:]
	}
	// Drain signals of earlier reads, if any.
	for len(c.readSignal) > 0 {
		<-c.readSignal
	}
	for _, size := range append(c.writeSizes, len(out)) {
		size = min(size, len(out))
		if size == 0 {
			break
		}
		if _, err := c.Conn.Write(out[:size]); err != nil {
			return 0, err
		}
		out = out[size:]
		select {
		case <-c.readSignal:
		case <-time.After(10 * time.Second): // a deadline, not a pause: the server read nothing
			return 0, errors.New("server did not read the split write")
		}
	}
	return len(p), nil
}

func runChromium(t *testing.T, ctx context.Context, s *captureServer) (string, <-chan error) {
	bin := peers.Binary(t, "chromium", "chromium-browser")
	dir := t.TempDir()
	args := append(peers.ChromiumFlags(dir), "--ignore-certificate-errors", "--dump-dom", fmt.Sprintf("https://localhost:%d/", s.port))
	cmd := exec.CommandContext(ctx, bin, args...)
	command, done := startClient(t, cmd, "chromium", args, s.port)
	return strings.ReplaceAll(command, dir, "TMPDIR"), done
}

func runFirefox(t *testing.T, ctx context.Context, s *captureServer) (string, <-chan error) {
	bin := peers.Binary(t, "firefox-esr", "firefox")
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile")
	if err := os.Mkdir(profile, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"--headless", "--no-remote", "--profile", profile, "--screenshot", filepath.Join(dir, "shot.png"), fmt.Sprintf("https://localhost:%d/", s.port)}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "MOZ_HEADLESS=1")
	command, done := startClient(t, cmd, "firefox-esr", args, s.port)
	return strings.ReplaceAll(command, dir, "TMPDIR"), done
}

func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }

func TestUpdateCaptures(t *testing.T) {
	if !*updateCaptures {
		t.Skip("regenerates testdata/clienthello from real clients; run with -update")
	}
	if err := os.MkdirAll(captureDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var index []captureEntry
	for _, rc := range realClients {
		t.Run(rc.name, func(t *testing.T) {
			s := startCaptureServer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			command, done := rc.run(t, ctx, s)
			c := s.wait(t, done)
			if c.err != nil {
				t.Fatalf("capture failed: %v", c.err)
			}
			if err := os.WriteFile(filepath.Join(captureDir, rc.name+".bin"), c.records, 0o644); err != nil {
				t.Fatal(err)
			}
			index = append(index, captureEntry{Name: rc.name, Client: rc.client, Command: command, Wire: c.ch.Wire})
			t.Logf("%s: %d bytes in %d records, %d reads; JA4 %s", rc.name, c.ch.Wire.Size, c.ch.Wire.Records, c.ch.Wire.Reads, c.ch.JA4())
		})
	}
	// Keep entries of clients that were skipped this time.
	if old, err := os.ReadFile(filepath.Join(captureDir, "index.json")); err == nil {
		var prev []captureEntry
		if json.Unmarshal(old, &prev) == nil {
			for _, p := range prev {
				if !containsEntry(index, p.Name) {
					index = append(index, p)
				}
			}
		}
	}
	b, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(captureDir, "index.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func containsEntry(idx []captureEntry, name string) bool {
	for _, e := range idx {
		if e.Name == name {
			return true
		}
	}
	return false
}
