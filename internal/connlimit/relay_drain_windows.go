package connlimit

import "syscall"

// drainPipe reads once from the relay's pipe, fd: Windows pipes are not
// non-blocking, so a second read would wait for the next note. pqedge's
// proxy runs on Linux; this keeps the package building elsewhere.
func drainPipe(fd uintptr, buf []byte) (n int, eof bool) {
	m, err := syscall.Read(syscall.Handle(fd), buf)
	return max(m, 0), m == 0 && err == nil
}
