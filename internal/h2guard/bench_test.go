package h2guard

import (
	"net"
	"testing"
)

// discardConn is a connection whose writes go nowhere, so that a
// benchmark measures the guard alone.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }
func (discardConn) Close() error                { return nil }

// BenchmarkServerWrite is what following the server's frames adds to
// each Write on the response path: net/http writes a DATA frame (here
// 16 KiB of payload, and 1 KiB) per Write at most.
func BenchmarkServerWrite(b *testing.B) {
	for _, size := range []int{16 << 10, 1 << 10} {
		frame := make([]byte, 9+size)
		frame[0], frame[1], frame[2] = byte(size>>16), byte(size>>8), byte(size)
		frame[3] = frameData
		for _, guarded := range []bool{false, true} {
			name := "plain"
			var c net.Conn = discardConn{}
			if guarded {
				name = "guarded"
				c = Wrap(c, Options{})
			}
			b.Run(name+"/"+map[int]string{16 << 10: "16KiB", 1 << 10: "1KiB"}[size], func(b *testing.B) {
				b.SetBytes(int64(len(frame)))
				for b.Loop() {
					c.Write(frame)
				}
			})
		}
	}
}
