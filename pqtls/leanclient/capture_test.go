package leanclient

import (
	"bytes"
	"crypto/tls"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/flights from real servers")

// recordingConn keeps every byte read from the server.
type recordingConn struct {
	net.Conn
	read bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Write(p[:n])
	return n, err
}

// captureFlight runs one handshake and returns the server's plaintext
// handshake messages (ServerHello through Finished, concatenated) and the
// raw bytes it sent.
func captureFlight(t *testing.T, addr string, cfg *Config) (msgs, wire []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("failed to dial: %v", err)
	}
	defer conn.Close()
	rc := &recordingConn{Conn: conn}
	var buf bytes.Buffer
	cfg.onMessage = func(m []byte) { buf.Write(m) }
	if _, err := Handshake(testContext(t), rc, cfg); err != nil {
		t.Fatalf("handshake failed: %v", err)
	}
	return buf.Bytes(), rc.read.Bytes()
}

// TestCaptureFlights refreshes the fuzz seeds in testdata/flights with
// -update; without it, it checks the saved flights still parse.
func TestCaptureFlights(t *testing.T) {
	if !*update {
		files, _ := filepath.Glob("testdata/flights/*.msgs")
		if len(files) == 0 {
			t.Fatal("no saved flights in testdata/flights; run go test -run TestCaptureFlights -update")
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			msgs := splitMessages(data)
			if len(msgs) != 5 {
				t.Fatalf("%s: %d messages, want ServerHello..Finished (5)", f, len(msgs))
			}
			if err := parseFlight(msgs); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
		return
	}
	save := func(name string, msgs, wire []byte) {
		os.MkdirAll("testdata/flights", 0o755)
		if err := os.WriteFile(filepath.Join("testdata/flights", name+".msgs"), msgs, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata/flights", name+".wire"), wire, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, alg := range []string{"ecdsa", "mldsa44"} {
		chain := newTestChain(t, alg)
		addr, _ := startGoServer(t, &tls.Config{Certificates: []tls.Certificate{chain.cert}})
		msgs, wire := captureFlight(t, addr, &Config{Groups: []tls.CurveID{tls.X25519MLKEM768}})
		save("go-"+alg+"-X25519MLKEM768", msgs, wire)
	}
	srv := startOpenSSL(t, "mldsa65", "SecP256r1MLKEM768")
	msgs, wire := captureFlight(t, srv.addr, &Config{Groups: []tls.CurveID{tls.SecP256r1MLKEM768}})
	save("openssl-mldsa65-SecP256r1MLKEM768", msgs, wire)
}

// splitMessages cuts concatenated handshake messages apart.
func splitMessages(data []byte) [][]byte {
	var out [][]byte
	for len(data) >= 4 {
		n := int(data[1])<<16 | int(data[2])<<8 | int(data[3])
		if len(data) < 4+n {
			break
		}
		out = append(out, data[:4+n])
		data = data[4+n:]
	}
	return out
}

// parseFlight runs every server-message parser on a flight.
func parseFlight(msgs [][]byte) error {
	if _, err := parseServerHello(msgs[0]); err != nil {
		return err
	}
	if _, err := parseEncryptedExtensions(msgs[1]); err != nil {
		return err
	}
	if _, err := parseCertificate(msgs[2]); err != nil {
		return err
	}
	if _, _, err := parseCertificateVerify(msgs[3]); err != nil {
		return err
	}
	_, err := parseFinished(msgs[4], len(msgs[4])-4)
	return err
}
