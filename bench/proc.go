package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// atClkTck is the auxiliary-vector entry in which the kernel tells every
// process the unit of the CPU times in /proc/PID/stat (getauxval(3)).
const atClkTck = 17

var clockTicks = sync.OnceValue(func() int64 {
	if data, err := os.ReadFile("/proc/self/auxv"); err == nil {
		for i := 0; i+16 <= len(data); i += 16 {
			key := binary.NativeEndian.Uint64(data[i:])
			val := binary.NativeEndian.Uint64(data[i+8:])
			if key == atClkTck && val > 0 {
				return int64(val)
			}
		}
	}
	// USER_HZ has been 100 on every Linux architecture Go supports.
	return 100
})

// ClockTicks is the number of /proc/PID/stat CPU-time units per second
// (sysconf(_SC_CLK_TCK)), read once from the auxiliary vector.
func ClockTicks() int64 { return clockTicks() }

// ProcessCPU returns the user plus system CPU time pid has used, read from
// /proc/PID/stat (fields 14 and 15, utime and stime, proc(5)). Its
// resolution is one clock tick, usually 10ms: measure over many handshakes.
func ProcessCPU(pid int) (time.Duration, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return ticks(st.utime + st.stime), nil
}

// TreeCPU is ProcessCPU of pid plus every live descendant: nginx does its
// work in worker processes under the master whose pid the user knows. CPU
// of descendants that already exited is not counted (it is only visible in
// the parent's cutime once reaped).
func TreeCPU(pid int) (time.Duration, error) {
	pids, err := processTree(pid)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, p := range pids {
		d, err := ProcessCPU(p)
		if err != nil {
			if p == pid {
				return 0, err
			}
			continue // a child that exited between the scan and the read
		}
		total += d
	}
	return total, nil
}

// ticks converts n clock ticks (USER_HZ, ClockTicks a second) to a
// duration: whole seconds first, so that a large counter (an aggregate
// CPU line of a many-core machine up for a year holds ~10^11 ticks) does
// not overflow in nanoseconds. A count beyond what a Duration holds
// (~292 years) gives maxTicksDuration; n must not be negative.
func ticks(n int64) time.Duration {
	hz := int64(ClockTicks())
	secs := n / hz
	if secs > int64(maxTicksDuration/time.Second)-1 {
		return maxTicksDuration
	}
	return time.Duration(secs)*time.Second + time.Duration(n%hz)*time.Second/time.Duration(hz)
}

// maxTicksDuration is the longest duration ticks returns.
const maxTicksDuration = time.Duration(math.MaxInt64)

type procStat struct {
	ppid         int
	utime, stime int64
}

// readStat parses /proc/PID/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so fields are
// counted from the last ')'.
func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("failed to read the CPU time of process %d: %w", pid, err)
	}
	return parseStat(data)
}

func parseStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, errors.New("failed to parse /proc stat: no ')' after the command name")
	}
	// Fields after the name start at field 3 (state): ppid is field 4,
	// utime 14 and stime 15.
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("failed to parse /proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var st procStat
	var err error
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("failed to parse /proc stat ppid %q: %w", f[1], err)
	}
	if st.utime, err = strconv.ParseInt(f[11], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("failed to parse /proc stat utime %q: %w", f[11], err)
	}
	if st.stime, err = strconv.ParseInt(f[12], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("failed to parse /proc stat stime %q: %w", f[12], err)
	}
	return st, nil
}

// processTree returns pid and its live descendants, pid first.
func processTree(pid int) ([]int, error) {
	if _, err := readStat(pid); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("failed to list /proc: %w", err)
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(p)
		if err != nil {
			continue
		}
		children[st.ppid] = append(children[st.ppid], p)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree, nil
}

// MachineBusy is the CPU time all CPUs of the machine have spent on
// anything but idle and iowait since boot, from the first line of
// /proc/stat (user, nice, system, irq, softirq, steal; proc(5)). Over a
// run, busy minus the server's and the client's CPU is what other
// processes took: how noisy the machine was.
func MachineBusy() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("failed to read /proc/stat: %w", err)
	}
	return parseMachineBusy(data)
}

func parseMachineBusy(data []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	// The aggregate line is the file's first, "cpu" at its very start
	// (proc_stat(5)); "cpu0" and the like are per-CPU lines.
	if len(f) < 9 || !bytes.HasPrefix(line, []byte("cpu ")) {
		return 0, errors.New("failed to parse /proc/stat: no aggregate cpu line with 8 times")
	}
	var busy int64
	// user nice system idle iowait irq softirq steal: skip idle (4) and iowait (5).
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		// Counters of ticks: unsigned, and small enough that six of them
		// add up without overflowing (2^59 ticks is 1.8e8 years at 100 Hz).
		v, err := strconv.ParseUint(f[i], 10, 59)
		if err != nil {
			return 0, fmt.Errorf("failed to parse /proc/stat field %d %q: %w", i, f[i], err)
		}
		busy += int64(v)
	}
	if d := ticks(busy); d < maxTicksDuration {
		return d, nil
	}
	return 0, fmt.Errorf("failed to parse /proc/stat: %d busy ticks are beyond what a duration holds", busy)
}

// ProcessRSS returns the resident set size of pid in bytes, from the
// second field of /proc/PID/statm (resident pages; proc(5)) times the page
// size. It counts every page the process has in memory, shared ones
// included: what a machine running the server must provide.
func ProcessRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, fmt.Errorf("failed to read the memory of process %d: %w", pid, err)
	}
	pages, err := parseStatmResident(data)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

// parseStatmResident returns the resident pages of a /proc/PID/statm line
// ("size resident shared text lib data dt", in pages).
func parseStatmResident(data []byte) (int64, error) {
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0, fmt.Errorf("failed to parse /proc statm: %d fields, want at least 2", len(f))
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("failed to parse /proc statm resident pages %q", f[1])
	}
	return n, nil
}

// TreeRSS is ProcessRSS summed over pid and its live descendants (nginx:
// master and worker). Pages shared between them are counted once per
// process, as ps(1) does; the deltas the harness reports come from one
// process (the Go servers, nginx's worker) and are not affected.
func TreeRSS(pid int) (int64, error) {
	return sumTree(pid, ProcessRSS)
}

// TreeOpenFiles counts the open file descriptors of pid and its live
// descendants (/proc/PID/fd): the harness waits on it to know a server has
// accepted the connections it opened.
func TreeOpenFiles(pid int) (int64, error) {
	return sumTree(pid, func(p int) (int64, error) {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		if err != nil {
			return 0, fmt.Errorf("failed to list the open files of process %d: %w", p, err)
		}
		return int64(len(entries)), nil
	})
}

// sumTree adds f over pid and its live descendants; a descendant that
// exits between the scan and the read is skipped.
func sumTree(pid int, f func(int) (int64, error)) (int64, error) {
	pids, err := processTree(pid)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, p := range pids {
		v, err := f(p)
		if err != nil {
			if p == pid {
				return 0, err
			}
			continue
		}
		total += v
	}
	return total, nil
}
