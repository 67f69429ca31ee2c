package quichello

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/pqedge/pqedge/pqtls"
)

// rfcDCID is the client's Destination Connection ID in the examples of RFC
// 9001 Appendix A and RFC 9369 Appendix A.
const rfcDCID = "8394c8f03e515708"

// TestInitialSecrets checks the key derivation against RFC 9001
// Appendix A.1 and RFC 9369 Appendix A.1.
func TestInitialSecrets(t *testing.T) {
	tests := []struct {
		name                string
		params              *versionParams
		secret, key, iv, hp string
	}{
		{"v1", &paramsV1, "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea",
			"1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2"},
		{"v2", &paramsV2, "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b",
			"8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret, err := clientInitialSecret(tt.params, mustHex(t, rfcDCID))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(secret, mustHex(t, tt.secret)) {
				t.Errorf("client_initial_secret = %x, want %s", secret, tt.secret)
			}
			for _, kv := range []struct {
				label, want string
				n           int
			}{{tt.params.keyLabel, tt.key, keyLen}, {tt.params.ivLabel, tt.iv, ivLen}, {tt.params.hpLabel, tt.hp, hpKeyLen}} {
				got, err := expandLabel(secret, kv.label, kv.n)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, mustHex(t, kv.want)) {
					t.Errorf("%q = %x, want %s", kv.label, got, kv.want)
				}
			}
		})
	}
}

// TestRFCClientInitial opens the protected client Initial of RFC 9001
// Appendix A.2 (and its QUIC v2 form, RFC 9369 Appendix A.2) and checks
// that the ClientHello inside is the one the RFC sealed.
func TestRFCClientInitial(t *testing.T) {
	want := readHex(t, "rfc9001-client-hello.hex")
	for _, tt := range []struct {
		file    string
		version uint32
	}{{"rfc9001-client-initial.hex", Version1}, {"rfc9369-client-initial.hex", Version2}} {
		t.Run(tt.file, func(t *testing.T) {
			d := readHex(t, tt.file)
			orig := bytes.Clone(d)
			r := NewRecorder(0)
			if err := r.Datagram(d); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d, orig) {
				t.Error("Datagram modified its input")
			}
			if !r.Done() || r.Version() != tt.version || r.HadToken() {
				t.Errorf("done %v, version %#x, token %v", r.Done(), r.Version(), r.HadToken())
			}
			ch, err := r.ClientHello()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ch.Raw, want) {
				t.Errorf("ClientHello\n%x\nwant\n%x", ch.Raw, want)
			}
			wire := pqtls.WireShape{Size: 241, Transport: pqtls.TransportQUIC, Packets: 1, Datagrams: 1}
			if ch.Wire != wire {
				t.Errorf("wire %+v, want %+v", ch.Wire, wire)
			}
			if ch.ServerName != "example.com" || len(ch.KeyShares) != 1 || ch.KeyShares[0].Group != tls.X25519 {
				t.Errorf("server name %q, key shares %+v", ch.ServerName, ch.KeyShares)
			}
			if !strings.HasPrefix(ch.JA4(), "q13d") {
				t.Errorf("JA4 %s does not start with q13d", ch.JA4())
			}
		})
	}
}

// bigHello is a real 1.5 KB ClientHello with an X25519MLKEM768 key share
// (Go 1.27 crypto/tls, from pqtls's captures).
func bigHello(t testing.TB) []byte {
	t.Helper()
	rec, err := os.ReadFile("../testdata/clienthello/go.bin")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := pqtls.ParseClientHelloRecords(rec)
	if err != nil {
		t.Fatal(err)
	}
	return ch.Raw
}

var testDCID = []byte{1, 2, 3, 4, 5, 6, 7, 8}

// initial seals one Initial packet with the test DCID carrying frames.
func initial(t testing.TB, pn uint64, frames ...[]byte) []byte {
	t.Helper()
	return testPacket{dcid: testDCID, pn: pn, payload: bytes.Join(frames, nil)}.seal(t)
}

// TestRecorderReassembly feeds ClientHellos cut in the ways real clients
// and networks cut them and checks the message and the counts.
func TestRecorderReassembly(t *testing.T) {
	hello := bigHello(t)
	h1, h2 := hello[:1000], hello[1000:]
	otherDCID := testPacket{dcid: []byte{9, 9, 9, 9}, pn: 0, payload: cryptoFrame(0, h1)}.seal(t)
	handshake := []byte{0xe0, 0, 0, 0, 1, 0, 0, 4, 0, 0, 0, 0} // v1 Handshake, 4 bytes of "payload"
	tests := []struct {
		name      string
		datagrams func(t *testing.T) [][]byte
		packets   int
		datagramN int
	}{
		{"two Initials in two datagrams", func(t *testing.T) [][]byte {
			return [][]byte{datagram(1200, initial(t, 0, cryptoFrame(0, h1))), datagram(1200, initial(t, 1, cryptoFrame(1000, h2)))}
		}, 2, 2},
		{"second half first", func(t *testing.T) [][]byte {
			return [][]byte{datagram(1200, initial(t, 1, cryptoFrame(1000, h2))), datagram(1200, initial(t, 0, cryptoFrame(0, h1)))}
		}, 2, 2},
		{"two Initials coalesced in one datagram", func(t *testing.T) [][]byte {
			return [][]byte{datagram(1200, initial(t, 0, cryptoFrame(0, hello[:600])), initial(t, 1, cryptoFrame(600, hello[600:])))}
		}, 2, 1},
		{"duplicated and overlapping frames", func(t *testing.T) [][]byte {
			return [][]byte{
				datagram(1200, initial(t, 0, cryptoFrame(0, h1))),
				datagram(1200, initial(t, 1, cryptoFrame(0, h1))), // a retransmission
				datagram(1200, initial(t, 2, cryptoFrame(900, hello[900:]))),
			}
		}, 3, 3},
		{"many small frames, shuffled", func(t *testing.T) [][]byte {
			var frames [][]byte
			for off := len(hello) - len(hello)%100; off >= 0; off -= 100 {
				frames = append(frames, cryptoFrame(off, hello[off:min(off+100, len(hello))]))
			}
			return [][]byte{
				datagram(1200, initial(t, 0, frames[:8]...)),
				datagram(1200, initial(t, 1, frames[8:]...)),
			}
		}, 2, 2},
		{"PING, ACK and PADDING around the frames, 1-byte packet numbers", func(t *testing.T) [][]byte {
			ack := []byte{frameACK, 0, 0, 0, 0}
			return [][]byte{
				datagram(1200, testPacket{dcid: testDCID, pn: 0, pnLen: 1, payload: bytes.Join([][]byte{{framePing}, cryptoFrame(0, h1), {0, 0, 0}}, nil)}.seal(t)),
				datagram(1200, testPacket{dcid: testDCID, pn: 1, pnLen: 1, payload: bytes.Join([][]byte{ack, cryptoFrame(1000, h2)}, nil)}.seal(t)),
			}
		}, 2, 2},
		{"noise skipped: short datagram, other connection, Handshake packet, garbage", func(t *testing.T) [][]byte {
			return [][]byte{
				initial(t, 0, cryptoFrame(0, h1)), // under 1,200 bytes: a server drops it
				datagram(1200, initial(t, 0, cryptoFrame(0, h1))),
				datagram(1200, otherDCID),        // another attempt's keys fail here
				datagram(1200, handshake),        // not an Initial
				bytes.Repeat([]byte{0x40}, 1300), // a short-header packet
				datagram(1200, initial(t, 1, cryptoFrame(1000, h2)), handshake),
			}
		}, 2, 2},
		{"client switched to the server's connection ID", func(t *testing.T) [][]byte {
			// Same keys (from the first DCID), another DCID in the header.
			p := testPacket{dcid: []byte{0xaa, 0xbb, 0xcc, 0xdd}, keyDCID: testDCID, pn: 1, payload: cryptoFrame(1000, h2)}.seal(t)
			return [][]byte{datagram(1200, initial(t, 0, cryptoFrame(0, h1))), datagram(1200, p)}
		}, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder(0)
			for i, d := range tt.datagrams(t) {
				err := r.Datagram(d)
				if err != nil && !errors.Is(err, ErrSkipped) {
					t.Fatalf("datagram %d: %v", i, err)
				}
			}
			ch, err := r.ClientHello()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ch.Raw, hello) {
				t.Fatalf("reassembled %d bytes (sha256 %x), want %d", len(ch.Raw), sha256.Sum256(ch.Raw), len(hello))
			}
			if ch.Wire.Packets != tt.packets || ch.Wire.Datagrams != tt.datagramN || ch.Wire.Transport != pqtls.TransportQUIC {
				t.Errorf("wire %+v, want %d packets in %d datagrams", ch.Wire, tt.packets, tt.datagramN)
			}
			if len(ch.KeyShares) == 0 || ch.KeyShares[0].Group != tls.X25519MLKEM768 {
				t.Errorf("key shares %+v", ch.KeyShares)
			}
		})
	}
}

// TestRecorderRefuses checks the inputs that end an attempt, and that
// every such error names the rule.
func TestRecorderRefuses(t *testing.T) {
	hello := bigHello(t)
	tests := []struct {
		name      string
		limit     int
		datagrams func(t *testing.T) [][]byte
		want      string
	}{
		{"conflicting retransmission", 0, func(t *testing.T) [][]byte {
			bad := bytes.Clone(hello[:100])
			bad[50] ^= 1
			return [][]byte{datagram(1200, initial(t, 0, cryptoFrame(0, hello[:100]))), datagram(1200, initial(t, 1, cryptoFrame(0, bad)))}
		}, "differ from the copy received before"},
		{"STREAM frame in an Initial", 0, func(t *testing.T) [][]byte {
			return [][]byte{datagram(1200, initial(t, 0, []byte{0x08, 0, 1, 'x'}))}
		}, "not allowed in an Initial packet"},
		{"truncated CRYPTO frame", 0, func(t *testing.T) [][]byte {
			return [][]byte{datagram(1200, initial(t, 0, []byte{frameCrypto, 0, 0x40, 0xff, 1, 2}))}
		}, "exceeds the"},
		{"not a ClientHello", 0, func(t *testing.T) [][]byte {
			return [][]byte{datagram(1200, initial(t, 0, cryptoFrame(0, []byte{2, 0, 0, 1, 0})))}
		}, "not client_hello"},
		{"ClientHello larger than the limit", 512, func(t *testing.T) [][]byte {
			return [][]byte{datagram(1200, initial(t, 0, cryptoFrame(0, hello[:200])))}
		}, "exceed the limit of 512"},
		{"CRYPTO data beyond the limit", 512, func(t *testing.T) [][]byte {
			return [][]byte{datagram(1200, initial(t, 0, cryptoFrame(600, hello[600:700])))}
		}, "exceeds the limit of 512 bytes"},
		{"data past the ClientHello", 0, func(t *testing.T) [][]byte {
			return [][]byte{datagram(1200, initial(t, 0, cryptoFrame(0, hello[:10]), cryptoFrame(len(hello), []byte{1})))}
		}, "runs past the"},
		{"too many fragments", 0, func(t *testing.T) [][]byte {
			var frames [][]byte
			for off := 10; off < 10+3*(maxFragments+1); off += 3 {
				frames = append(frames, cryptoFrame(off, hello[off:off+1]))
			}
			return [][]byte{datagram(1200, initial(t, 0, frames...))}
		}, "separate pieces"},
		{"never completes", 0, func(t *testing.T) [][]byte {
			var ds [][]byte
			for i := range DefaultMaxDatagrams + 1 {
				ds = append(ds, datagram(1200, initial(t, uint64(i), cryptoFrame(0, hello[:10]))))
			}
			return ds
		}, "not complete after 32 datagrams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder(tt.limit)
			var last error
			for _, d := range tt.datagrams(t) {
				if err := r.Datagram(d); err != nil && !errors.Is(err, ErrSkipped) {
					last = err
				}
			}
			if !r.Done() || last == nil {
				t.Fatalf("done %v, err %v: want the attempt ended", r.Done(), last)
			}
			_, err := r.ClientHello()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ClientHello error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRecorderIncomplete(t *testing.T) {
	r := NewRecorder(0)
	if err := r.Datagram(datagram(1200, initial(t, 0, cryptoFrame(0, bigHello(t)[:1000])))); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ClientHello(); !errors.Is(err, ErrIncomplete) || r.Done() {
		t.Errorf("err %v, done %v: want ErrIncomplete", err, r.Done())
	}
}
