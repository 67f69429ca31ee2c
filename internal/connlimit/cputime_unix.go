//go:build linux || darwin || freebsd || openbsd

package connlimit

import (
	"time"

	"golang.org/x/sys/unix"
)

// processCPUTime is the CPU time the process used so far, all its threads
// together (CLOCK_PROCESS_CPUTIME_ID, POSIX.1-2001): a system call, read
// once per relay hop while the gate paces.
func processCPUTime() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
