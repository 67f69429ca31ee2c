package leanclient

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
)

func seedFlights(f *testing.F, ext string, each func(data []byte)) {
	files, _ := filepath.Glob("testdata/flights/*." + ext)
	if len(files) == 0 {
		f.Fatal("no saved flights in testdata/flights")
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		each(data)
	}
}

// FuzzServerMessages feeds every server-message parser with mutations of
// real, decrypted server messages.
func FuzzServerMessages(f *testing.F) {
	seedFlights(f, "msgs", func(data []byte) {
		for _, m := range splitMessages(data) {
			f.Add(m)
		}
	})
	f.Fuzz(func(t *testing.T, msg []byte) {
		parseServerHello(msg)
		parseEncryptedExtensions(msg)
		parseCertificate(msg)
		parseCertificateVerify(msg)
		parseFinished(msg, 32)
	})
}

// FuzzServerFlight runs whole handshakes against mutated server replies, as
// they came off the wire, and checks every failure is a typed *Error.
func FuzzServerFlight(f *testing.F) {
	seedFlights(f, "wire", func(data []byte) { f.Add(data) })
	groups := []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768}
	cache := NewShareCache()
	f.Fuzz(func(t *testing.T, reply []byte) {
		_, err := Handshake(t.Context(), &memConn{reply: reply}, &Config{Groups: groups, KeyShares: groups, Precomputed: cache})
		if err != nil && KindOf(err) == 0 {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
