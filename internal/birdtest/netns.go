//go:build linux

package birdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/pqedge/pqedge/internal/peers"
)

// nsPrefix starts the name of every namespace this package makes:
// pqedge-bt-PID-SEQ-ROLE. The PID lets a later run delete what a test
// binary killed mid-test (a -timeout panic runs no Cleanup) left behind.
const nsPrefix = "pqedge-bt-"

var (
	nsSeq     atomic.Uint64
	sweepOnce sync.Once
)

// NetNS is a network namespace made for one test, with lo up. When the test
// ends, every process left in it is killed and it is deleted, with the
// interfaces in it (a veth goes with either end's namespace).
type NetNS struct {
	Name string // as `ip netns` knows it

	mu   sync.Mutex  // guards cmds
	cmds []*exec.Cmd // made by Command: killed first at the end, even if still entering the namespace
}

// RequireNetNS skips t (or fails it under PQEDGE_REQUIRE_PEERS=1) unless
// network namespaces can be made: root and the ip command.
func RequireNetNS(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		peers.Missing(t, "root privileges for network namespaces")
	}
	peers.Binary(t, "ip")
}

// NewNetNS makes a namespace; role (letters and digits) ends its name.
func NewNetNS(t testing.TB, role string) *NetNS {
	t.Helper()
	RequireNetNS(t)
	sweepOnce.Do(sweepStale)
	n := &NetNS{Name: fmt.Sprintf("%s%d-%d-%s", nsPrefix, os.Getpid(), nsSeq.Add(1), role)}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("failed to create network namespace %s: %v: %s", n.Name, err, out)
	}
	t.Cleanup(func() {
		n.mu.Lock()
		for _, c := range n.cmds {
			if c.Process != nil {
				_ = c.Process.Kill()
			}
		}
		n.mu.Unlock()
		if err := removeNetNS(n.Name); err != nil {
			t.Errorf("failed to clean up: %v", err)
		}
	})
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// IP runs `ip -n NAME args...` and fails t if it fails.
func (n *NetNS) IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
}

// Command is name run inside the namespace (`ip netns exec`). The process
// is killed if the test binary dies first, and in any case when the
// namespace is removed.
func (n *NetNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cmds = append(n.cmds, cmd)
	return cmd
}

// Do runs f on an OS thread that is inside the namespace, and returns its
// error. Sockets, netlink handles and TUN devices f creates belong to the
// namespace and stay there when used from other goroutines later;
// goroutines f starts do not run inside it. The caller's thread is never
// moved.
func (n *NetNS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("failed to open the current network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(n.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("failed to open network namespace %s: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("failed to enter network namespace %s: %w", n.Name, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked: the runtime ends it with this
			// goroutine instead of reusing it in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("failed to leave network namespace %s: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// removeNetNS kills every process in the namespace (including those not
// started by Command, such as a test binary's helpers), waits for them to be
// gone (a namespace lives on while a process holds it), and deletes it.
func removeNetNS(name string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := nsPIDs(name)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in network namespace %s did not exit", pids, name)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("failed to delete network namespace %s: %v: %s", name, err, out)
	}
	return nil
}

// nsPIDs lists the live processes in a namespace.
func nsPIDs(name string) ([]int, error) {
	out, err := exec.Command("ip", "netns", "pids", name).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("failed to list processes in network namespace %s: %v: %s", name, err, out)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("ip netns pids %s: unexpected %q", name, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// sweepStale removes the namespaces of test binaries that died without
// cleaning up; a live binary's namespaces are left alone.
func sweepStale() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		_ = removeNetNS(e.Name())
	}
}
