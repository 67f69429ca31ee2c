package h2guard

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// floodKinds are the floods TestMeasureFloods sends, one connection each:
// frames(id) is one round with a new client stream ID.
var floodKinds = []struct {
	name   string
	frames func(id uint32) []byte
}{
	{"ping", func(uint32) []byte { return ping() }},
	{"settings", func(uint32) []byte { return settings() }},
	{"priority", func(id uint32) []byte { return priority(id, 0) }},
	{"priority_update", func(id uint32) []byte { return priorityUpdate(id) }},
	{"window_update", func(uint32) []byte { return windowUpdate(0, 1) }},
	{"unknown", func(uint32) []byte { return frame(0xde, 0, 0, []byte("grease")) }},
	{"made_you_reset", func(id uint32) []byte { return concat(headers(id, flagEndHeaders), windowUpdate(id, 0)) }},
}

// TestMeasureFloods measures what one flood connection of each kind costs
// a running pqedge (any build): its RSS growth (VmRSS sampled every 10 ms,
// from before the connection), the CPU it spent (utime+stime from
// /proc/PID/stat) while the connection lived, and how long until it closed
// the connection (at most 10 s). It runs only when asked:
//
//	PQEDGE_H2_TARGET=127.0.0.1:8443 PQEDGE_H2_PID=$(pidof pqedge) \
//	  go test -count=1 -run TestMeasureFloods -v ./internal/h2guard
func TestMeasureFloods(t *testing.T) {
	target, pid := measureTarget(t)
	for _, kind := range floodKinds {
		if !measureKind(kind.name) {
			continue
		}
		time.Sleep(time.Second) // let the previous connection's garbage go
		rss0, cpu0 := procKiB(t, pid, "VmRSS"), cpuTicks(t, pid)
		c, err := tls.Dial("tcp", target, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		closed := make(chan struct{})
		go func() { io.Copy(io.Discard, c); close(closed) }()
		var sent atomic.Int64
		stop := make(chan struct{})
		go func() {
			w := bufio.NewWriterSize(c, 64<<10)
			c.SetWriteDeadline(time.Now().Add(attackFor + 5*time.Second))
			w.Write(concat(prefaceAndSettings, frame(frameSettings, 1, 0, nil)))
			for id := uint32(1); id < 1<<31-2; id += 2 {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := w.Write(kind.frames(id)); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
		peak, cpu, lived, _ := attackCost(t, pid, time.Now(), rss0, cpu0, closed)
		close(stop)
		c.Close()
		t.Logf("%-16s RSS +%.1f MiB, CPU %v, %d rounds written, closed after %s",
			kind.name, float64(peak-rss0)/1024, cpu, sent.Load(), lived)
	}
}

// attackCost samples what an abusive connection costs the server pid
// from start, when its RSS was rss0 (KiB) and its CPU cpu0 (clock ticks):
// the peak RSS (VmRSS every 10 ms, KiB) until ended yields or attackFor
// has passed, the CPU spent meanwhile, and how long the connection lived
// ("open at 10 s" when it outlived the attack), with what ended yielded.
func attackCost[T any](t *testing.T, pid int, start time.Time, rss0, cpu0 int64, ended <-chan T) (peak int64, cpu time.Duration, lived string, got T) {
	peak, lived = rss0, "open at 10 s"
sample:
	for {
		select {
		case got = <-ended:
			lived = time.Since(start).Round(time.Millisecond).String()
			break sample
		case <-time.After(attackFor - time.Since(start)):
			break sample
		case <-time.After(10 * time.Millisecond):
			peak = max(peak, procKiB(t, pid, "VmRSS"))
		}
	}
	cpu = time.Duration(cpuTicks(t, pid)-cpu0) * 10 * time.Millisecond // USER_HZ 100
	return peak, cpu, lived, got
}

// cpuTicks is utime+stime of /proc/PID/stat, in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}
