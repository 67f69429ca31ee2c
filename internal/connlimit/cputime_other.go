//go:build !(linux || darwin || freebsd || openbsd)

package connlimit

import "time"

// processCPUTime cannot be read here: the crypto gate has no CPU budget
// (Options.CPUShare).
func processCPUTime() (time.Duration, bool) { return 0, false }
