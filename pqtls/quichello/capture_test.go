package quichello

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
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
	"github.com/pqedge/pqedge/pqtls"
	"github.com/quic-go/quic-go/http3"
)

// This file records real QUIC clients into testdata/captures and replays
// the recordings:
//
//	go test ./pqtls/quichello -run 'TestUpdateCaptures|TestUpdateJA4Golden' -update
//
// Each capture (NAME.bin) is the datagrams a loopback HTTP/3 server
// (quic-go) received from one client until the ClientHello was complete,
// in order, each as a 2-byte big-endian length and the datagram.

var update = flag.Bool("update", false, "record testdata/captures from real QUIC clients and the JA4 golden values from tshark")

const captureDir = "testdata/captures"

// captureEntry is one element of testdata/captures/index.json.
type captureEntry struct {
	Name    string          `json:"name"`
	Client  string          `json:"client"`
	Command string          `json:"command"` // PORT is the server's port
	Wire    pqtls.WireShape `json:"wire"`
}

func readCaptureIndex(t testing.TB) []captureEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(captureDir, "index.json"))
	if err != nil {
		t.Fatalf("failed to read the capture index: %v", err)
	}
	var idx []captureEntry
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("failed to parse %s/index.json: %v", captureDir, err)
	}
	return idx
}

func readCaptureDatagrams(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(captureDir, name+".bin"))
	if err != nil {
		t.Fatal(err)
	}
	var ds [][]byte
	for len(b) > 0 {
		if len(b) < 2 || int(binary.BigEndian.Uint16(b)) > len(b)-2 {
			t.Fatalf("%s.bin: truncated datagram", name)
		}
		n := int(binary.BigEndian.Uint16(b))
		ds = append(ds, b[2:2+n])
		b = b[2+n:]
	}
	return ds
}

// TestCaptures replays every recorded client: the ClientHello must come
// out with the wire shape the capture server recorded.
func TestCaptures(t *testing.T) {
	idx := readCaptureIndex(t)
	if len(idx) == 0 {
		t.Fatal("no captures")
	}
	golden := readJA4Golden(t)
	for _, e := range idx {
		t.Run(e.Name, func(t *testing.T) {
			r := NewRecorder(0)
			for i, d := range readCaptureDatagrams(t, e.Name) {
				if err := r.Datagram(d); err != nil && !errors.Is(err, ErrSkipped) {
					t.Fatalf("datagram %d: %v", i, err)
				}
			}
			ch, err := r.ClientHello()
			if err != nil {
				t.Fatal(err)
			}
			if ch.Wire != e.Wire {
				t.Errorf("wire %+v, recorded %+v", ch.Wire, e.Wire)
			}
			if want, ok := golden[e.Name]; !ok {
				t.Errorf("no tshark JA4 for %s: rerun with -update", e.Name)
			} else if got := ch.JA4(); got != want[0] {
				t.Errorf("JA4 %s, tshark says %s", got, want[0])
			} else if got := ch.JA4R(); got != want[1] {
				t.Errorf("JA4_r %s\ntshark  %s", got, want[1])
			}
		})
	}
}

// recordingConn is the capture server's socket: it keeps each client's
// datagrams until a Recorder fed the same datagrams has the ClientHello.
type recordingConn struct {
	net.PacketConn
	mu     sync.Mutex // guards byAddr
	byAddr map[string]*recording
	done   chan *recording
}

// SetReadBuffer and SetWriteBuffer let quic-go size the socket's buffers
// (it warns otherwise); without ReadMsgUDP the conn stays a plain
// PacketConn, so every datagram passes through ReadFrom.
func (c *recordingConn) SetReadBuffer(n int) error {
	return c.PacketConn.(*net.UDPConn).SetReadBuffer(n)
}

func (c *recordingConn) SetWriteBuffer(n int) error {
	return c.PacketConn.(*net.UDPConn).SetWriteBuffer(n)
}

type recording struct {
	datagrams [][]byte
	rec       *Recorder
}

func (c *recordingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if n > 0 {
		c.mu.Lock()
		r := c.byAddr[addr.String()]
		if r == nil {
			r = &recording{rec: NewRecorder(0)}
			c.byAddr[addr.String()] = r
		}
		if !r.rec.Done() {
			r.datagrams = append(r.datagrams, append([]byte(nil), b[:n]...))
			r.rec.Datagram(b[:n])
			if r.rec.Done() {
				c.done <- r
			}
		}
		c.mu.Unlock()
	}
	return n, addr, err
}

// startCaptureServer serves HTTP/3 on loopback through a recordingConn.
func startCaptureServer(t *testing.T) (int, <-chan *recording) {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conn := &recordingConn{PacketConn: udp, byAddr: map[string]*recording{}, done: make(chan *recording, 8)}
	srv := &http3.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "pqedge quic capture") }),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{testCertificate(t)}},
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(conn) }()
	t.Cleanup(func() { srv.Close(); udp.Close(); <-served })
	return udp.LocalAddr().(*net.UDPAddr).Port, conn.done
}

// quicClient is one real client the update test runs.
type quicClient struct {
	name, client string
	// run connects to the server on port and returns the command it ran
	// (PORT for the port); the client's exit arrives on the channel.
	run func(t *testing.T, ctx context.Context, port int) (string, <-chan error)
}

func goClient(name string, groups ...tls.CurveID) quicClient {
	desc := "quic-go http3.Transport, crypto/tls defaults"
	if len(groups) > 0 {
		desc = "quic-go http3.Transport, CurvePreferences " + strings.Join(groupNames(groups), ",")
	}
	return quicClient{name: name, client: desc, run: func(t *testing.T, ctx context.Context, port int) (string, <-chan error) {
		tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, CurvePreferences: groups}}
		done := make(chan error, 1)
		go func() {
			defer tr.Close()
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("https://localhost:%d/", port), nil)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		return "http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, CurvePreferences: " + fmt.Sprint(groupNames(groups)) + "}}.RoundTrip(GET https://localhost:PORT/)", done
	}}
}

func groupNames(gs []tls.CurveID) []string {
	var out []string
	for _, g := range gs {
		out = append(out, pqtls.GroupName(g))
	}
	return out
}

func curlClient(name string, extra ...string) quicClient {
	return quicClient{name: name, client: "curl 8.14 --http3-only (trixie, OpenSSL 3.5 QUIC, nghttp3)", run: func(t *testing.T, ctx context.Context, port int) (string, <-chan error) {
		root := peers.Trixie(t)
		args := append([]string{"-sk", "--http3-only", "--max-time", "20"}, extra...)
		args = append(args, fmt.Sprintf("https://localhost:%d/", port))
		cmd := root.Command(ctx, "curl", args...)
		done := peers.Start(t, cmd, "curl")
		return strings.ReplaceAll("curl "+strings.Join(args, " "), fmt.Sprint(port), "PORT"), done
	}}
}

// chromiumClient is headless Chromium forced onto QUIC for the capture
// server (its certificate errors ignored: only the ClientHello matters).
func chromiumClient(name string) quicClient {
	return quicClient{name: name, client: "headless Chromium, QUIC forced for the origin", run: func(t *testing.T, ctx context.Context, port int) (string, <-chan error) {
		chromium := peers.Binary(t, "chromium")
		args := append(peers.ChromiumQUICFlags(t.TempDir(), port), "--ignore-certificate-errors", "--dump-dom", fmt.Sprintf("https://localhost:%d/", port))
		cmd := exec.CommandContext(ctx, chromium, args...)
		done := peers.Start(t, cmd, "chromium")
		shown := append(peers.ChromiumQUICFlags("DIR", port), "--ignore-certificate-errors", "--dump-dom", fmt.Sprintf("https://localhost:%d/", port))
		return strings.ReplaceAll("chromium "+strings.Join(shown, " "), fmt.Sprint(port), "PORT"), done
	}}
}

var quicClients = []quicClient{
	goClient("quic-go"),
	goClient("quic-go-x25519", tls.X25519),
	curlClient("curl-trixie"),
	curlClient("curl-trixie-secp256r1mlkem768", "--curves", "SecP256r1MLKEM768"),
	curlClient("curl-trixie-secp384r1mlkem1024", "--curves", "SecP384r1MLKEM1024"),
	curlClient("curl-trixie-x25519", "--curves", "X25519"),
	chromiumClient("chromium"),
}

func TestUpdateCaptures(t *testing.T) {
	if !*update {
		t.Skip("records testdata/captures from real QUIC clients; run with -update")
	}
	if err := os.MkdirAll(captureDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var index []captureEntry
	for _, qc := range quicClients {
		t.Run(qc.name, func(t *testing.T) {
			port, got := startCaptureServer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			command, done := qc.run(t, ctx, port)
			var r *recording
			select {
			case r = <-got:
			case err := <-done:
				select {
				case r = <-got:
				case <-time.After(2 * time.Second):
					t.Fatalf("client exited (%v) before its ClientHello was complete", err)
				}
			case <-ctx.Done():
				t.Fatal("no ClientHello recorded")
			}
			ch, err := r.rec.ClientHello()
			if err != nil {
				t.Fatal(err)
			}
			var file []byte
			for _, d := range r.datagrams {
				file = binary.BigEndian.AppendUint16(file, uint16(len(d)))
				file = append(file, d...)
			}
			if err := os.WriteFile(filepath.Join(captureDir, qc.name+".bin"), file, 0o644); err != nil {
				t.Fatal(err)
			}
			index = append(index, captureEntry{Name: qc.name, Client: qc.client, Command: command, Wire: ch.Wire})
			t.Logf("%s: %d bytes in %d Initial packets, %d datagrams; key shares %v; JA4 %s", qc.name, ch.Wire.Size, ch.Wire.Packets, ch.Wire.Datagrams, ch.KeyShares, ch.JA4())
		})
	}
	if old, err := os.ReadFile(filepath.Join(captureDir, "index.json")); err == nil {
		var prev []captureEntry
		if json.Unmarshal(old, &prev) == nil {
			for _, p := range prev {
				if !hasEntry(index, p.Name) {
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

func hasEntry(idx []captureEntry, name string) bool {
	for _, e := range idx {
		if e.Name == name {
			return true
		}
	}
	return false
}

// TestCaptureFamilies: the client family pqedge counts a QUIC client under
// (adoption, metrics) is its family over TCP. Chromium's QUIC ClientHello
// has no GREASE where its TCP one has it; its ALPS still tells.
func TestCaptureFamilies(t *testing.T) {
	want := map[string]string{"quic-go": pqtls.FamilyGo, "quic-go-x25519": pqtls.FamilyGo, "chromium": pqtls.FamilyChromium}
	for _, e := range readCaptureIndex(t) {
		t.Run(e.Name, func(t *testing.T) {
			r := NewRecorder(0)
			for _, d := range readCaptureDatagrams(t, e.Name) {
				r.Datagram(d)
			}
			ch, err := r.ClientHello()
			if err != nil {
				t.Fatal(err)
			}
			w, ok := want[e.Name]
			if !ok && strings.HasPrefix(e.Name, "curl-") {
				w, ok = pqtls.FamilyCurlOpenSSL, true
			}
			if !ok {
				t.Fatalf("capture %s has no expected family in this test", e.Name)
			}
			if got := ch.Family(); got != w {
				t.Errorf("family %s, want %s", got, w)
			}
		})
	}
}
