package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The harness's hold on CPUs and scheduling classes, through Linux's
// system calls and /proc (sched_other.go elsewhere).

// SelfCPU is the user plus system CPU this process has used
// (getrusage(RUSAGE_SELF)): the client's share of a benchmark.
func SelfCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// PinTree restricts pid, every thread of it and of its live descendants to
// cpu. Threads and processes created later inherit the mask from the
// thread that creates them, so pinning a running server once is enough.
func PinTree(pid, cpu int) error { return eachThreadOfTree(pid, pinTo(cpu)) }

// PinSelf restricts every thread of this process to cpu; new Go runtime
// threads are cloned from pinned ones and inherit the mask.
func PinSelf(cpu int) error { return eachThread(os.Getpid(), pinTo(cpu)) }

// pinTo is what PinTree and PinSelf do to each thread.
func pinTo(cpu int) func(tid int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return func(tid int) error {
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("failed to pin it to CPU %d: %w", cpu, err)
		}
		return nil
	}
}

// NormalTree moves pid, every thread of it and of its live descendants,
// to the normal time-sharing class (SCHED_OTHER, sched(7)) at nice. As
// with PinTree, what they create later inherits it.
func NormalTree(pid, nice int) error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL, Nice: int32(nice)}
	return eachThreadOfTree(pid, func(tid int) error {
		if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
			return fmt.Errorf("failed to move it to SCHED_OTHER at nice %d: %w", nice, err)
		}
		return nil
	})
}

// eachThreadOfTree calls do for every thread of pid and of its live
// descendants.
func eachThreadOfTree(pid int, do func(tid int) error) error {
	pids, err := processTree(pid)
	if err != nil {
		return err
	}
	for _, p := range pids {
		if err := eachThread(p, do); err != nil {
			return err
		}
	}
	return nil
}

// eachThread calls do for every thread of pid; a thread that exited
// meanwhile (ESRCH) is skipped, any other error names the thread.
func eachThread(pid int, do func(tid int) error) error {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		return fmt.Errorf("failed to list the threads of process %d", pid)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(filepath.Base(t))
		if err != nil {
			continue
		}
		if err := do(tid); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("thread %d of process %d: %w", tid, pid, err)
		}
	}
	return nil
}
