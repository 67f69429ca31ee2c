package leanclient

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// replayOnce sends hello on a new connection to addr and reads the
// server's flight.
func replayOnce(t *testing.T, addr string, hello []byte, want Flight) (int, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("failed to dial: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(hello); err != nil {
		t.Fatalf("failed to send the ClientHello: %v", err)
	}
	return ReadFlight(bufio.NewReader(conn), want)
}

// TestReplayedClientHelloAgainstCryptoTLS: a built ClientHello is accepted
// by a crypto/tls server, which answers with its whole flight, as many
// bytes as a real handshake receives.
func TestReplayedClientHelloAgainstCryptoTLS(t *testing.T) {
	tests := []struct {
		name  string
		alg   string
		group tls.CurveID
		// slack is how much one flight may differ from another: ECDSA
		// signatures are DER and vary by a few bytes, ML-DSA's do not.
		slack int
	}{
		{"ecdsa X25519MLKEM768", "ecdsa", tls.X25519MLKEM768, 4},
		{"mldsa44 X25519MLKEM768", "mldsa44", tls.X25519MLKEM768, 0},
		{"ecdsa SecP256r1MLKEM768", "ecdsa", tls.SecP256r1MLKEM768, 4},
		{"ecdsa x25519", "ecdsa", tls.X25519, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain := newTestChain(t, tt.alg)
			addr, _ := startGoServer(t, &tls.Config{Certificates: []tls.Certificate{chain.cert}})
			cfg := &Config{ServerName: "localhost", Groups: []tls.CurveID{tt.group}, CloseNotify: true}
			flight, res, err := Calibrate(testContext(t), addr, cfg)
			if err != nil {
				t.Fatalf("Calibrate: %v", err)
			}
			if flight.Bytes != res.ServerFlightBytes || flight.Records != res.ServerFlightRecords {
				t.Fatalf("flight %+v, the handshake's %d B in %d records", flight, res.ServerFlightBytes, res.ServerFlightRecords)
			}
			// crypto/tls: ServerHello, change_cipher_spec, then one record
			// per encrypted message (EncryptedExtensions, Certificate,
			// CertificateVerify, Finished).
			if flight.Records != 6 {
				t.Errorf("flight of %d records, want 6", flight.Records)
			}
			real, err := Dial(testContext(t), addr, cfg)
			if err != nil {
				t.Fatalf("full handshake: %v", err)
			}
			seen := map[string]bool{}
			for range 3 {
				hello, err := ClientHelloRecord(cfg)
				if err != nil {
					t.Fatalf("ClientHelloRecord: %v", err)
				}
				if seen[string(hello)] {
					t.Fatal("two ClientHellos are the same")
				}
				seen[string(hello)] = true
				ch, err := pqtls.ParseClientHelloRecords(hello)
				if err != nil {
					t.Fatalf("the ClientHello does not parse: %v", err)
				}
				if ch.ServerName != "localhost" || len(ch.KeyShares) != 1 || ch.KeyShares[0].Group != tt.group ||
					ch.Family() != pqtls.FamilyPQEdge || len(ch.PSKModes) != 0 {
					t.Errorf("ClientHello: server name %q, key shares %v, family %q, psk modes %v", ch.ServerName, ch.KeyShares, ch.Family(), ch.PSKModes)
				}
				n, err := replayOnce(t, addr, hello, flight)
				if err != nil {
					t.Fatalf("ReadFlight: %v", err)
				}
				if d := n - real.ServerFlightBytes; d < -tt.slack || d > tt.slack {
					t.Errorf("replayed flight %d B, a real handshake's %d B", n, real.ServerFlightBytes)
				}
			}
		})
	}
}

// TestCalibrateRefusesHelloRetry: a server that asks for another group
// cannot be flooded by replay, and the error says which group to offer.
func TestCalibrateRefusesHelloRetry(t *testing.T) {
	chain := newTestChain(t, "ecdsa")
	addr, _ := startGoServer(t, &tls.Config{Certificates: []tls.Certificate{chain.cert}, CurvePreferences: []tls.CurveID{tls.X25519}})
	cfg := &Config{Groups: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}}
	_, _, err := Calibrate(testContext(t), addr, cfg)
	if KindOf(err) != KindUnsupported || !bytes.Contains([]byte(err.Error()), []byte("HelloRetryRequest for x25519")) {
		t.Fatalf("Calibrate: %v, want an unsupported error naming x25519", err)
	}
	// A replayed ClientHello gets the retry request, which ReadFlight
	// names instead of waiting for a flight that never comes.
	hello, err := ClientHelloRecord(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replayOnce(t, addr, hello, Flight{Records: 6}); KindOf(err) != KindUnsupported {
		t.Fatalf("ReadFlight after a HelloRetryRequest: %v, want KindUnsupported", err)
	}
}

func savedWire(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/flights", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flightOf counts the records of a saved wire capture up to the server
// Finished: the captures hold exactly the flight.
func flightOf(wire []byte) Flight {
	f := Flight{}
	for len(wire) >= 5 {
		n := firstRecord(wire)
		if len(wire) < n {
			break
		}
		f.Records++
		f.Bytes += n
		wire = wire[n:]
	}
	return f
}

// firstRecord is the length of wire's first record, header included.
func firstRecord(wire []byte) int { return 5 + (int(wire[3])<<8 | int(wire[4])) }

func TestReadFlightMalformed(t *testing.T) {
	wire := savedWire(t, "go-ecdsa-X25519MLKEM768.wire")
	flight := flightOf(wire)
	if flight.Records != 6 || flight.Bytes != len(wire) {
		t.Fatalf("saved flight: %+v of %d bytes", flight, len(wire))
	}
	hrr := bytes.Clone(wire)
	copy(hrr[5+4+2:], helloRetryRandom)
	tests := []struct {
		name  string
		reply []byte
		kind  ErrorKind
		short bool // ErrShortFlight
	}{
		{"whole flight", wire, 0, false},
		{"flight and more", append(bytes.Clone(wire), 23, 3, 3, 0, 1, 0), 0, false},
		{"nothing", nil, KindDial, true},
		{"closed after the ServerHello", wire[:firstRecord(wire)], KindDial, true},
		{"closed in a record", wire[:len(wire)-3], KindDial, true},
		{"closed in a header", wire[:2], KindDial, true},
		{"http", []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), KindNotTLS, false},
		{"plaintext alert", []byte{21, 3, 3, 0, 2, 2, 40}, KindAlert, false},
		{"alert of one byte", []byte{21, 3, 3, 0, 1, 2}, KindMalformed, false},
		{"hello retry request", hrr, KindUnsupported, false},
		{"starts encrypted", append([]byte{23, 3, 3, 0, 1, 0}, wire...), KindMalformed, false},
		{"not a server hello", []byte{22, 3, 3, 0, 38, 1, 0, 0, 34, 3, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}, KindMalformed, false},
		{"short server hello record", []byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, KindMalformed, false},
		{"bad version", append(bytes.Clone(wire[:firstRecord(wire)]), 20, 2, 0, 0, 1, 1), KindMalformed, false},
		{"oversized record", append(bytes.Clone(wire[:firstRecord(wire)]), 23, 3, 3, 0x48, 0x01), KindMalformed, false},
		{"unknown record type", append(bytes.Clone(wire[:firstRecord(wire)]), 24, 3, 3, 0, 1, 0), KindMalformed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ReadFlight(bufio.NewReader(bytes.NewReader(tt.reply)), flight)
			if KindOf(err) != tt.kind || (err != nil && tt.kind == 0) {
				t.Fatalf("ReadFlight: %v (kind %v), want kind %v", err, KindOf(err), tt.kind)
			}
			if errors.Is(err, ErrShortFlight) != tt.short {
				t.Errorf("ReadFlight: %v, short flight %v", err, tt.short)
			}
			if n > len(tt.reply) || (err == nil && n != flight.Bytes) {
				t.Errorf("read %d bytes of %d, flight %d", n, len(tt.reply), flight.Bytes)
			}
		})
	}
}

func TestReadFlightRejectsBadWant(t *testing.T) {
	for _, records := range []int{0, -1, maxFlightRecords + 1} {
		if _, err := ReadFlight(bufio.NewReader(bytes.NewReader(nil)), Flight{Records: records}); err == nil {
			t.Errorf("ReadFlight of %d records: no error", records)
		}
	}
	if _, err := ReadFlight(bufio.NewReaderSize(bytes.NewReader(nil), 16), Flight{Records: 6}); err == nil {
		t.Error("ReadFlight through a 16-byte buffer: no error")
	}
}

// FuzzReadFlight reads mutated real flights: it never panics, never
// reports more bytes than arrived, and every failure is a typed *Error.
func FuzzReadFlight(f *testing.F) {
	seedFlights(f, "wire", func(data []byte) { f.Add(data, uint8(flightOf(data).Records)) })
	f.Fuzz(func(t *testing.T, reply []byte, records uint8) {
		want := Flight{Records: 1 + int(records)%maxFlightRecords}
		n, err := ReadFlight(bufio.NewReader(bytes.NewReader(reply)), want)
		if n > len(reply) {
			t.Fatalf("read %d bytes of %d", n, len(reply))
		}
		if err != nil && KindOf(err) == 0 {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
