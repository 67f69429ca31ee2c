package pqtls

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/peers"
)

// ja4GoldenFile holds JA4 and JA4_r computed by Wireshark's tshark 4.4 (an
// implementation independent of this package) for every capture; see
// testdata/README.md.
var ja4GoldenFile = filepath.Join(captureDir, "ja4.tsv")

// TestJA4MatchesTshark compares JA4 and JA4_r with tshark's values for every
// real capture.
func TestJA4MatchesTshark(t *testing.T) {
	golden := readJA4Golden(t)
	idx := readCaptureIndex(t)
	if len(golden) != len(idx) {
		t.Errorf("ja4.tsv has %d entries, index.json %d: rerun with -update", len(golden), len(idx))
	}
	for _, e := range idx {
		t.Run(e.Name, func(t *testing.T) {
			want, ok := golden[e.Name]
			if !ok {
				t.Fatalf("no tshark JA4 for %s: rerun with -update", e.Name)
			}
			ch, err := ParseClientHelloRecords(readCapture(t, e.Name))
			if err != nil {
				t.Fatal(err)
			}
			wantJA4, wantR := want[0], want[1]
			if hasGREASESignature(ch) {
				// Wireshark 4.4 hashes GREASE signature algorithms, against
				// the spec ("ignore GREASE values anywhere"); FoxIO's
				// reference tools were fixed for it (FoxIO-LLC/ja4#305).
				// Take tshark's lists, drop the GREASE entries, rehash.
				wantJA4, wantR = withoutGREASESignatures(t, wantJA4, wantR)
			}
			if got := ch.JA4(); got != wantJA4 {
				t.Errorf("JA4 = %s, want %s (tshark: %s)", got, wantJA4, want[0])
			}
			if got := ch.JA4R(); got != wantR {
				t.Errorf("JA4_r = %s\nwant    %s", got, wantR)
			}
		})
	}
}

// TestJA4Spec checks the worked example of FoxIO's JA4 specification and
// the edge cases it spells out (ALPN characters, empty lists).
func TestJA4Spec(t *testing.T) {
	specExample := &ClientHello{
		SupportedVersions:   []uint16{0x0a0a, 0x0304, 0x0303},
		CipherSuites:        []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035},
		Extensions:          []uint16{0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015},
		ALPN:                []string{"h2", "http/1.1"},
		SignatureAlgorithms: []tls.SignatureScheme{0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601},
	}
	noSigs := *specExample
	noSigs.SignatureAlgorithms = nil
	// The same ClientHello over QUIC: only the transport character
	// changes (the spec's "q"; pqtls/quichello checks whole QUIC hellos
	// against tshark).
	overQUIC := *specExample
	overQUIC.Wire.Transport = TransportQUIC
	tests := []struct {
		name string
		ch   *ClientHello
		want string
	}{
		{"spec example", specExample, "t13d1516h2_8daaf6152771_e5627efa2ab1"},
		{"no signature algorithms", &noSigs, "t13d1516h2_8daaf6152771_6d807ffa2a79"},
		{"over QUIC", &overQUIC, "q13d1516h2_8daaf6152771_e5627efa2ab1"},
		{"nothing", &ClientHello{LegacyVersion: 0x0303}, "t12i000000_000000000000_000000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ch.JA4(); got != tt.want {
				t.Errorf("JA4 = %s, want %s", got, tt.want)
			}
		})
	}
	alpn := []struct {
		name  string
		proto string
		want  string
	}{
		{"http/1.1", "http/1.1", "h1"},
		{"one character", "x", "xx"},
		{"non-alphanumeric byte", "\xab", "ab"},
		{"two non-alphanumeric bytes", "\xab\xcd", "ad"},
		{"alphanumeric then not", "\x30\xab", "3b"},
		{"ends non-alphanumeric", "\x30\x31\xab\xcd", "3d"},
		{"middle non-alphanumeric", "\x30\xab\xcd\x31", "01"},
	}
	for _, tt := range alpn {
		t.Run("alpn "+tt.name, func(t *testing.T) {
			if got := ja4ALPN([]string{tt.proto}); got != tt.want {
				t.Errorf("ja4ALPN(%q) = %s, want %s", tt.proto, got, tt.want)
			}
		})
	}
}

func hasGREASESignature(ch *ClientHello) bool {
	for _, s := range ch.SignatureAlgorithms {
		if IsGREASE(uint16(s)) {
			return true
		}
	}
	return false
}

// withoutGREASESignatures corrects tshark 4.4's JA4 and JA4_r of a hello
// with GREASE signature algorithms: the raw form's last list loses its
// GREASE entries, and JA4's last part is rehashed from the raw lists.
func withoutGREASESignatures(t *testing.T, ja4, ja4r string) (string, string) {
	t.Helper()
	parts := strings.Split(ja4r, "_")
	if len(parts) != 4 {
		t.Fatalf("tshark JA4_r %q has %d parts, want 4", ja4r, len(parts))
	}
	var sigs []string
	for _, h := range strings.Split(parts[3], ",") {
		v, err := strconv.ParseUint(h, 16, 16)
		if err != nil {
			t.Fatalf("tshark JA4_r signature %q: %v", h, err)
		}
		if !IsGREASE(uint16(v)) {
			sigs = append(sigs, h)
		}
	}
	parts[3] = strings.Join(sigs, ",")
	sum := sha256.Sum256([]byte(parts[2] + "_" + parts[3]))
	abc := strings.Split(ja4, "_")
	return abc[0] + "_" + abc[1] + "_" + hex.EncodeToString(sum[:])[:12], strings.Join(parts, "_")
}

// TestJA4FoxIOReference checks the Chromium capture against the value
// FoxIO's fixed reference tool publishes for Chromium 152+ (GREASE and
// ML-DSA in signature_algorithms): rust/ja4/src/snapshots/
// ja4__insta@sigalg-grease.pcapng.snap in FoxIO-LLC/ja4. A future Chromium
// that changes its cipher, extension or signature lists changes it too.
func TestJA4FoxIOReference(t *testing.T) {
	ch, err := ParseClientHelloRecords(readCapture(t, "chromium"))
	if err != nil {
		t.Fatal(err)
	}
	const foxio = "t13d1517h2_8daaf6152771_cb7bf5808d99"
	if got := ch.JA4(); got != foxio {
		t.Errorf("JA4 = %s, FoxIO's reference says %s", got, foxio)
	}
}

func readJA4Golden(t testing.TB) map[string][2]string {
	t.Helper()
	b, err := os.ReadFile(ja4GoldenFile)
	if err != nil {
		t.Fatalf("failed to read JA4 golden values: %v", err)
	}
	out := map[string][2]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		if sc.Text() == "" || strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 {
			t.Fatalf("%s:%d: want name, ja4, ja4_r separated by tabs", ja4GoldenFile, line)
		}
		out[f[0]] = [2]string{f[1], f[2]}
	}
	return out
}

// TestUpdateJA4Golden writes every capture into one pcap as a TCP stream to
// port 443 and records what tshark says their JA4 and JA4_r are. It runs
// after TestUpdateCaptures with -update.
func TestUpdateJA4Golden(t *testing.T) {
	if !*updateCaptures {
		t.Skip("regenerates testdata/clienthello/ja4.tsv with tshark; run with -update")
	}
	root := peers.Trixie(t)
	if _, err := os.Stat(filepath.Join(root.Root, "usr/bin/tshark")); err != nil {
		peers.Missing(t, "tshark in the trixie root (chroot ROOT apt-get install tshark)")
	}
	idx := readCaptureIndex(t)
	var pcap pcapWriter
	byPort := map[string]string{}
	for i, e := range idx {
		port := uint16(40000 + i)
		byPort[fmt.Sprint(port)] = e.Name
		pcap.stream(port, readCapture(t, e.Name))
	}
	host, inside := root.TempDir(t)
	if err := os.WriteFile(filepath.Join(host, "hellos.pcap"), pcap.buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"-r", inside + "/hellos.pcap", "-Y", "tls.handshake.type == 1", "-T", "fields",
		"-e", "tcp.srcport", "-e", "tls.handshake.ja4", "-e", "tls.handshake.ja4_r"}
	out, err := root.Command(ctx, "tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", strings.Join(args, " "), err)
	}
	var golden strings.Builder
	golden.WriteString("# name\tja4\tja4_r, computed by tshark 4.4 (see ../README.md)\n")
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 || byPort[f[0]] == "" {
			t.Fatalf("unexpected tshark line %q", line)
		}
		fmt.Fprintf(&golden, "%s\t%s\t%s\n", byPort[f[0]], f[1], f[2])
		seen++
	}
	if seen != len(idx) {
		t.Fatalf("tshark found %d ClientHellos in %d streams:\n%s", seen, len(idx), out)
	}
	if err := os.WriteFile(ja4GoldenFile, []byte(golden.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pcapWriter builds a classic pcap file (LINKTYPE_RAW: IPv4 packets) with
// one TCP connection per ClientHello, cut into 1448-byte segments like a
// loopback or Ethernet link would.
type pcapWriter struct {
	buf bytes.Buffer
	t   uint32
}

func (w *pcapWriter) stream(port uint16, data []byte) {
	if w.buf.Len() == 0 {
		binary.Write(&w.buf, binary.LittleEndian, [6]uint32{0xa1b2c3d4, 2 | 4<<16, 0, 0, 65535, 101})
	}
	const clientISN, serverISN = 1000, 5000
	w.packet(port, 443, clientISN, 0, 0x02, nil)             // SYN
	w.packet(443, port, serverISN, clientISN+1, 0x12, nil)   // SYN-ACK
	w.packet(port, 443, clientISN+1, serverISN+1, 0x10, nil) // ACK
	seq := uint32(clientISN + 1)
	for len(data) > 0 {
		n := min(len(data), 1448)
		w.packet(port, 443, seq, serverISN+1, 0x18, data[:n]) // PSH|ACK
		seq += uint32(n)
		data = data[n:]
	}
}

func (w *pcapWriter) packet(src, dst uint16, seq, ack uint32, flags byte, payload []byte) {
	w.t++
	ip := make([]byte, 40, 40+len(payload))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(40+len(payload)))
	ip[6] = 0x40 // don't fragment
	ip[8] = 64   // TTL
	ip[9] = 6    // TCP
	copy(ip[12:16], []byte{127, 0, 0, 1})
	copy(ip[16:20], []byte{127, 0, 0, 1})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], src)
	binary.BigEndian.PutUint16(tcp[2:], dst)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	ip = append(ip, payload...)
	binary.Write(&w.buf, binary.LittleEndian, [4]uint32{w.t, 0, uint32(len(ip)), uint32(len(ip))})
	w.buf.Write(ip)
}
