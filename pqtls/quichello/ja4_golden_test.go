package quichello

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/peers"
)

// ja4GoldenFile holds JA4 and JA4_r of every capture as Wireshark's tshark
// 4.4 computes them: it decrypts the Initial packets itself, an
// implementation independent of this package's.
var ja4GoldenFile = filepath.Join(captureDir, "ja4.tsv")

func readJA4Golden(t testing.TB) map[string][2]string {
	t.Helper()
	b, err := os.ReadFile(ja4GoldenFile)
	if err != nil {
		t.Fatalf("failed to read the JA4 golden values: %v", err)
	}
	out := map[string][2]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		if sc.Text() == "" || strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 {
			t.Fatalf("%s:%d: want name, ja4 and ja4_r separated by tabs", ja4GoldenFile, line)
		}
		out[f[0]] = [2]string{f[1], f[2]}
	}
	return out
}

// TestUpdateJA4Golden writes every capture into one pcap, each client as
// its own UDP source port sending to port 443, and records what tshark
// (in the trixie peer root) says their JA4 and JA4_r are.
func TestUpdateJA4Golden(t *testing.T) {
	if !*update {
		t.Skip("regenerates testdata/captures/ja4.tsv with tshark; run with -update")
	}
	root := peers.Trixie(t)
	if _, err := os.Stat(filepath.Join(root.Root, "usr/bin/tshark")); err != nil {
		peers.Missing(t, "tshark in the trixie root (chroot ROOT apt-get install tshark)")
	}
	idx := readCaptureIndex(t)
	var pcap bytes.Buffer
	binary.Write(&pcap, binary.LittleEndian, [6]uint32{0xa1b2c3d4, 2 | 4<<16, 0, 0, 65535, 101}) // LINKTYPE_RAW
	byPort := map[string]string{}
	ts := uint32(0)
	for i, e := range idx {
		port := uint16(40000 + i)
		byPort[fmt.Sprint(port)] = e.Name
		for _, d := range readCaptureDatagrams(t, e.Name) {
			ts++
			pkt := udpPacket(port, 443, d)
			binary.Write(&pcap, binary.LittleEndian, [4]uint32{ts, 0, uint32(len(pkt)), uint32(len(pkt))})
			pcap.Write(pkt)
		}
	}
	host, inside := root.TempDir(t)
	if err := os.WriteFile(filepath.Join(host, "hellos.pcap"), pcap.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"-r", inside + "/hellos.pcap", "-Y", "tls.handshake.type == 1", "-T", "fields",
		"-e", "udp.srcport", "-e", "tls.handshake.ja4", "-e", "tls.handshake.ja4_r"}
	out, err := root.Command(ctx, "tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", strings.Join(args, " "), err)
	}
	var golden strings.Builder
	golden.WriteString("# name\tja4\tja4_r, computed by tshark 4.4 (see ../README.md)\n")
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 || byPort[f[0]] == "" {
			t.Fatalf("unexpected tshark line %q", line)
		}
		if seen[f[0]] {
			continue // a ClientHello in several packets is reported once per packet
		}
		seen[f[0]] = true
		fmt.Fprintf(&golden, "%s\t%s\t%s\n", byPort[f[0]], f[1], f[2])
	}
	if len(seen) != len(idx) {
		t.Fatalf("tshark found ClientHellos from %d of %d clients:\n%s", len(seen), len(idx), out)
	}
	if err := os.WriteFile(ja4GoldenFile, []byte(golden.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// udpPacket wraps payload in IPv4 and UDP headers, 127.0.0.1 to itself
// (the UDP checksum is left 0: "not computed", RFC 768).
func udpPacket(src, dst uint16, payload []byte) []byte {
	ip := make([]byte, 28, 28+len(payload))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(28+len(payload)))
	ip[8], ip[9] = 64, 17 // TTL, UDP
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
	binary.BigEndian.PutUint16(ip[20:], src)
	binary.BigEndian.PutUint16(ip[22:], dst)
	binary.BigEndian.PutUint16(ip[24:], uint16(8+len(payload)))
	return append(ip, payload...)
}
