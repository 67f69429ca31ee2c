//go:build !linux

package bench

import (
	"errors"
	"time"
)

// Elsewhere than on Linux the harness can neither pin processes to CPUs
// nor change their scheduling class: the measurements that need it
// (-pin, bench overload) report errNoScheduling; the rest run unpinned.

var errNoScheduling = errors.New("pinning to CPUs and scheduling classes need Linux (sched_setaffinity, sched_setattr)")

// SelfCPU is not measured here: 0, which the reports show as no client CPU.
func SelfCPU() time.Duration { return 0 }

// PinTree fails here: errNoScheduling.
func PinTree(pid, cpu int) error { return errNoScheduling }

// PinSelf fails here: errNoScheduling.
func PinSelf(cpu int) error { return errNoScheduling }

// NormalTree fails here: errNoScheduling.
func NormalTree(pid, nice int) error { return errNoScheduling }
