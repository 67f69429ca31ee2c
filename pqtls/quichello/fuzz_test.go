package quichello

import (
	"bytes"
	"errors"
	"testing"
)

// seedDatagrams are real protected datagrams: the RFC examples and the
// recorded captures.
func seedDatagrams(f *testing.F) [][]byte {
	f.Helper()
	ds := [][]byte{readHex(f, "rfc9001-client-initial.hex"), readHex(f, "rfc9369-client-initial.hex")}
	for _, e := range readCaptureIndex(f) {
		ds = append(ds, readCaptureDatagrams(f, e.Name)...)
	}
	return ds
}

// FuzzParseHeader checks that no input makes the header parser panic or
// return slices outside its input.
func FuzzParseHeader(f *testing.F) {
	for _, d := range seedDatagrams(f) {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		if h.Len > len(b) || h.PNOffset > h.Len {
			t.Fatalf("header %+v outside the %d-byte input", h, len(b))
		}
		if IsInitial(b) != h.Initial {
			t.Fatalf("IsInitial %v, header says Initial %v", IsInitial(b), h.Initial)
		}
	})
}

// FuzzRecorder feeds two datagrams, and again with the first one
// duplicated (as a network may): no panic, the input is never modified,
// and the duplicate changes nothing but the counts.
func FuzzRecorder(f *testing.F) {
	ds := seedDatagrams(f)
	for i := range ds {
		f.Add(ds[i], ds[(i+1)%len(ds)])
	}
	f.Fuzz(func(t *testing.T, d1, d2 []byte) {
		in1, in2 := bytes.Clone(d1), bytes.Clone(d2)
		var hellos [2][]byte
		var errs [2]error
		for i, order := range [][][]byte{{d1, d2}, {d1, d1, d2}} {
			r := NewRecorder(4096)
			for _, d := range order {
				if err := r.Datagram(d); err != nil && !errors.Is(err, ErrSkipped) && !r.Done() {
					t.Fatalf("fatal error %v but not done", err)
				}
			}
			ch, err := r.ClientHello()
			errs[i] = err
			if err == nil {
				hellos[i] = ch.Raw
				if w := ch.Wire; w.Size != len(ch.Raw) || w.Datagrams < 1 || w.Datagrams > len(order) || w.Packets < w.Datagrams {
					t.Fatalf("wire %+v of a %d-byte ClientHello from %d datagrams", w, len(ch.Raw), len(order))
				}
			}
		}
		if !bytes.Equal(d1, in1) || !bytes.Equal(d2, in2) {
			t.Fatal("Datagram modified its input")
		}
		if (errs[0] == nil) != (errs[1] == nil) || !bytes.Equal(hellos[0], hellos[1]) {
			t.Fatalf("a duplicated datagram changed the outcome: %v / %v", errs[0], errs[1])
		}
	})
}

// FuzzCryptoFrames fuzzes what authentication keeps the fuzzer from
// reaching through FuzzRecorder: the frames of two decrypted Initial
// payloads and the reassembly of their CRYPTO data.
func FuzzCryptoFrames(f *testing.F) {
	hello := readHex(f, "rfc9001-client-hello.hex")
	f.Add(cryptoFrame(0, hello[:100]), cryptoFrame(100, hello[100:]))
	f.Add(append([]byte{framePing, frameACK, 0, 0, 0, 0}, cryptoFrame(120, hello[120:])...), cryptoFrame(0, hello[:130]))
	f.Add(cryptoFrame(0, hello), []byte{frameConnectionClose, 0, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, p1, p2 []byte) {
		a := assembler{limit: 4096}
		for _, p := range [][]byte{p1, p2} {
			if err := walkFrames(p, func(off uint64, data []byte) error { return a.add(off, data) }); err != nil {
				return
			}
		}
		if cap(a.buf) > a.limit {
			t.Fatalf("buffer of %d bytes beyond the %d limit", cap(a.buf), a.limit)
		}
		if len(a.have) > maxFragments {
			t.Fatalf("%d fragments kept", len(a.have))
		}
		if a.complete() && len(a.message()) != a.need {
			t.Fatalf("complete message of %d bytes, need %d", len(a.message()), a.need)
		}
	})
}
