package pqtls

import (
	"errors"
	"io"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"weak"

	"golang.org/x/crypto/cryptobyte"
)

// TestCaptureConnRelease checks that Release keeps every parsed field of
// the ClientHello but Raw and PSKIdentity, and that the capture buffer is
// no longer reachable from the connection or the ClientHello it returns.
func TestCaptureConnRelease(t *testing.T) {
	streams := map[string][]byte{}
	for _, e := range readCaptureIndex(t) {
		streams[e.Name] = readCapture(t, e.Name)
	}
	// A hello with the two fields that alias the message: distinguished
	// names and a session ticket.
	var caList cryptobyte.Builder
	caList.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte{0x30, 0x03, 0x31, 0x01, 0x00}) })
	})
	streams["certificate_authorities and psk"] = frameRecords(buildHello([]helloExt{
		{extSupportedGroups, u16list(uint16(0x11ec))},
		{extCertificateAuthorities, caList.BytesOrPanic()},
		{extPreSharedKey, append([]byte{0, 7, 0, 1, 'x', 0, 0, 0, 0, 0, 33, 32}, make([]byte, 32)...)},
	}), 1<<14)

	for name, recs := range streams {
		for _, parsedFirst := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "/release only", true: "/parsed, then released"}[parsedFirst], func(t *testing.T) {
				want, err := ParseClientHelloRecords(recs)
				if err != nil {
					t.Fatal(err)
				}
				cc := NewCaptureConn(&chunkConn{data: slices.Clone(recs), chunk: 512}, 0)
				if _, err := io.ReadAll(cc); err != nil {
					t.Fatal(err)
				}
				if parsedFirst {
					if _, err := cc.ClientHello(); err != nil {
						t.Fatal(err)
					}
				}
				buf := weak.Make(&cc.buf[0])

				got, err := cc.Release()
				if err != nil {
					t.Fatalf("Release: %v", err)
				}
				if got.Raw != nil || got.PSKIdentity != nil {
					t.Errorf("Release kept Raw (%d bytes) or PSKIdentity (%d bytes)", len(got.Raw), len(got.PSKIdentity))
				}
				if got.Wire.Size != len(want.Raw) || got.Wire.Records != want.Wire.Records || got.Wire.Reads == 0 {
					t.Errorf("wire %+v, want size %d in %d records", got.Wire, len(want.Raw), want.Wire.Records)
				}
				want.Raw, want.PSKIdentity, want.Wire = nil, nil, got.Wire
				if !reflect.DeepEqual(got, want) {
					t.Errorf("released hello\n%+v\nwant\n%+v", got, want)
				}
				if again, err := cc.ClientHello(); again != got || err != nil {
					t.Errorf("ClientHello after Release: %p, %v; want the released %p", again, err, got)
				}
				if cc.RawRecords() != nil {
					t.Error("RawRecords after Release is not nil")
				}
				if again, _ := cc.Release(); again != got {
					t.Error("a second Release returned another hello")
				}

				runtime.GC()
				if buf.Value() != nil {
					t.Error("the capture buffer is still reachable after Release")
				}
				runtime.KeepAlive(cc)
				runtime.KeepAlive(got)
			})
		}
	}
}

// TestCaptureConnReleaseIncomplete checks that a capture released before
// the ClientHello is complete stops with an error and passes the rest of
// the bytes through without recording them.
func TestCaptureConnReleaseIncomplete(t *testing.T) {
	recs := readCapture(t, "chromium")
	cc := NewCaptureConn(&chunkConn{data: slices.Clone(recs), chunk: 600}, 0)
	first := make([]byte, 600)
	if _, err := io.ReadFull(cc, first); err != nil {
		t.Fatal(err)
	}
	ch, err := cc.Release()
	if ch != nil || err == nil || !strings.Contains(err.Error(), "released before it was complete") {
		t.Fatalf("Release of a partial capture: %v, %v; want an error saying so", ch, err)
	}
	rest, err := io.ReadAll(cc)
	if err != nil || !slices.Equal(slices.Concat(first, rest), recs) {
		t.Fatalf("read %d of %d bytes (%v): bytes must pass through", len(first)+len(rest), len(recs), err)
	}
	if cc.buf != nil {
		t.Errorf("the capture kept %d bytes read after Release", len(cc.buf))
	}
	if _, again := cc.ClientHello(); !errors.Is(again, errReleased) {
		t.Errorf("ClientHello after Release: %v, want the release error", again)
	}
}

// FuzzCaptureConn reads arbitrary bytes through a CaptureConn in reads of
// arbitrary size, under an arbitrary limit: the bytes pass through
// untouched, the capture never holds more than the limit, a captured
// ClientHello is what ParseClientHelloRecords makes of the recorded
// records (a prefix of the stream), and Release keeps it without the
// bytes.
func FuzzCaptureConn(f *testing.F) {
	for _, e := range readCaptureIndex(f) {
		recs := readCapture(f, e.Name)
		f.Add(recs, uint16(512), uint16(0))
		f.Add(recs, uint16(1), uint16(300))
	}
	f.Add([]byte{recordTypeHandshake, 3, 1, 0, 100, handshakeTypeClientHello, 0, 0xea, 0x5c}, uint16(3), uint16(0))
	f.Fuzz(func(t *testing.T, stream []byte, chunk, limit uint16) {
		cc := NewCaptureConn(&chunkConn{data: slices.Clone(stream), chunk: max(1, int(chunk))}, int(limit))
		got, err := readAllChunks(cc)
		if err != nil || !slices.Equal(got, stream) {
			t.Fatalf("read %d of %d bytes (%v): bytes must pass through", len(got), len(stream), err)
		}
		if len(cc.buf) > cc.limit {
			t.Fatalf("the capture holds %d bytes, over its limit of %d", len(cc.buf), cc.limit)
		}
		ch, err := cc.ClientHello()
		if err != nil {
			if released, rerr := cc.Release(); released != nil || rerr == nil {
				t.Fatalf("Release after a failed capture: %v, %v", released, rerr)
			}
			return
		}
		recs := cc.RawRecords()
		if !slices.Equal(recs, stream[:len(recs)]) {
			t.Fatal("the recorded records are not the start of the stream")
		}
		want, err := ParseClientHelloRecords(recs)
		if err == nil {
			want.Wire.Reads = ch.Wire.Reads // bytes alone do not tell how they were read
		}
		if err != nil || !equalHello(ch, want) {
			t.Fatalf("the capture's ClientHello differs from its records' (%v)", err)
		}
		released, err := cc.Release()
		if err != nil || released.Raw != nil || released.PSKIdentity != nil || released.Wire != ch.Wire || released.JA4() != ch.JA4() {
			t.Fatalf("Release: %v; the released ClientHello must keep every parsed field and no bytes", err)
		}
	})
}
