//go:build !windows

package connlimit

import "syscall"

// drainPipe reads every byte waiting in the relay's non-blocking pipe,
// fd, into buf (reused), returning how many, and eof when the write end
// is closed.
func drainPipe(fd uintptr, buf []byte) (n int, eof bool) {
	for {
		m, err := syscall.Read(int(fd), buf)
		switch {
		case m > 0:
			n += m
		case err == syscall.EINTR:
		case m == 0 && err == nil:
			return n, true
		default:
			return n, false // EAGAIN: drained
		}
	}
}
