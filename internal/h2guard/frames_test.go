package h2guard

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// frame encodes one HTTP/2 frame (RFC 9113 Section 4.1).
func frame(typ, flags byte, stream uint32, payload []byte) []byte {
	b := make([]byte, 9, 9+len(payload))
	b[0], b[1], b[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	b[3], b[4] = typ, flags
	binary.BigEndian.PutUint32(b[5:], stream&0x7fffffff)
	return append(b, payload...)
}

// getBlock is a request header block in HPACK (RFC 7541 Appendix A static
// table): GET, https, /, and ":authority: localhost" without indexing.
var getBlock = []byte{0x82, 0x87, 0x84, 0x01, 0x09, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't'}

func headers(stream uint32, flags byte) []byte {
	return frame(frameHeaders, flags, stream, getBlock)
}

func rst(stream uint32) []byte { return frame(frameRSTStream, 0, stream, []byte{0, 0, 0, 8}) } // CANCEL

var prefaceAndSettings = append([]byte(clientPreface), frame(0x4, 0, 0, nil)...)

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestFrameReader(t *testing.T) {
	tests := []struct {
		name             string
		in               []byte
		resets, empties  int
		waiting          bool
		waitingSinceByte int // the byte whose arrival time the wait counts from
	}{
		{name: "preface and settings", in: prefaceAndSettings},
		{name: "a request", in: concat(prefaceAndSettings, headers(1, flagEndHeaders|flagEndStream))},
		{name: "rapid reset", in: concat(prefaceAndSettings, headers(1, 5), rst(1), headers(3, 5), rst(3)), resets: 2},
		// A HEADERS frame of 14 bytes that does not end its block is a
		// fragment under MinHeaderFragment: it counts like an empty one.
		{name: "open header block", in: concat(prefaceAndSettings, headers(1, 0)), empties: 1, waiting: true, waitingSinceByte: len(prefaceAndSettings)},
		{name: "empty continuations", in: concat(prefaceAndSettings, headers(1, 0), frame(frameContinuation, 0, 1, nil), frame(frameContinuation, 0, 1, nil)),
			empties: 3, waiting: true, waitingSinceByte: len(prefaceAndSettings)},
		{name: "block closed by continuation", in: concat(prefaceAndSettings, headers(1, 0), frame(frameContinuation, flagEndHeaders, 1, []byte{0x40})), empties: 1, waiting: false},
		{name: "block in full-size fragments", in: concat(prefaceAndSettings, frame(frameHeaders, 0, 1, make([]byte, 16384)), frame(frameContinuation, flagEndHeaders, 1, []byte{0x40})), waiting: false},
		{name: "headers payload cut short", in: concat(prefaceAndSettings, headers(1, flagEndHeaders))[:len(prefaceAndSettings)+12],
			waiting: true, waitingSinceByte: len(prefaceAndSettings)},
		{name: "frame header cut short", in: concat(prefaceAndSettings, rst(1))[:len(prefaceAndSettings)+4], waiting: true, waitingSinceByte: len(prefaceAndSettings)},
		{name: "empty data not ending its stream", in: concat(prefaceAndSettings, headers(1, flagEndHeaders), frame(frameData, 0, 1, nil), frame(frameData, flagEndStream, 1, nil)), empties: 1},
		{name: "padding-only data", in: concat(prefaceAndSettings, headers(1, flagEndHeaders), frame(frameData, flagPadded, 1, []byte{3, 0, 0, 0}), frame(frameData, flagPadded, 1, []byte{0})), empties: 2},
		{name: "padded data with data", in: concat(prefaceAndSettings, headers(1, flagEndHeaders), frame(frameData, flagPadded, 1, []byte{2, 'x', 0, 0}), frame(frameData, flagPadded|flagEndStream, 1, []byte{0}))},
		{name: "data with payload", in: concat(prefaceAndSettings, headers(1, flagEndHeaders), frame(frameData, 0, 1, []byte("hello")), frame(frameData, flagEndStream, 1, []byte("!")))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, step := range []int{len(tt.in), 1, 5} {
				r := newFrameReader()
				base := time.Unix(1000, 0)
				for i := 0; i < len(tt.in); i += step {
					end := min(i+step, len(tt.in))
					// Each read arrives one second after the previous byte
					// run, so the wait's start says which byte began it.
					r.feed(tt.in[i:end], base.Add(time.Duration(i)*time.Second))
				}
				got := r.take()
				resets, empties := got.resets, got.empties
				since, waiting := r.waitingSince()
				if resets != tt.resets || empties != tt.empties || waiting != tt.waiting {
					t.Fatalf("in pieces of %d: resets %d empties %d waiting %v; want %d %d %v", step, resets, empties, waiting, tt.resets, tt.empties, tt.waiting)
				}
				if waiting {
					start := tt.waitingSinceByte / step * step
					if want := base.Add(time.Duration(start) * time.Second); !since.Equal(want) {
						t.Fatalf("in pieces of %d: waiting since byte %v, want %d", step, since.Sub(base)/time.Second, start)
					}
				}
			}
		})
	}
}

// FuzzFrameReader: no panic on any byte stream, and the same verdict
// however the stream is split into reads.
func FuzzFrameReader(f *testing.F) {
	f.Add(concat(prefaceAndSettings, headers(1, 5), rst(1)), uint8(1))
	f.Add(concat(prefaceAndSettings, headers(1, 0), frame(frameContinuation, 0, 1, nil), frame(frameContinuation, 4, 1, []byte{1})), uint8(3))
	files, _ := filepath.Glob("testdata/*.h2")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		now := time.Unix(0, 0)
		whole := newFrameReader()
		whole.feed(in, now)
		split := newFrameReader()
		s := max(int(step), 1)
		for i := 0; i < len(in); i += s {
			split.feed(in[i:min(i+s, len(in))], now)
		}
		t1, t2 := whole.take(), split.take()
		_, w1 := whole.waitingSince()
		_, w2 := split.waitingSince()
		if t1 != t2 || w1 != w2 {
			t.Fatalf("whole: %+v %v; in pieces of %d: %+v %v", t1, w1, s, t2, w2)
		}
		fw, sw := newFrameWriter(), newFrameWriter()
		fw.feed(in)
		for i := 0; i < len(in); i += s {
			sw.feed(in[i:min(i+s, len(in))])
		}
		if a, b := fw.take(), sw.take(); a != b {
			t.Fatalf("writer whole: %+v; in pieces of %d: %+v", a, s, b)
		}
	})
}
