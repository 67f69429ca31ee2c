package anycast

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/birdtest"
	"github.com/pqedge/pqedge/internal/peers"
)

// TestMain turns the test binary into the holder process of the dead-man
// tests when PQEDGE_ANYCAST_HOLDER names a device.
func TestMain(m *testing.M) {
	if name := os.Getenv(holderEnv); name != "" {
		os.Exit(runHolder(name, os.Getenv(holderPrefixesEnv)))
	}
	os.Exit(m.Run())
}

const (
	holderEnv         = "PQEDGE_ANYCAST_HOLDER"
	holderPrefixesEnv = "PQEDGE_ANYCAST_HOLDER_PREFIXES"
)

// runHolder opens the device, announces the space-separated prefixes,
// prints "ready" and waits for stdin to close: a stand-in for a pqedge
// process that a test can kill -9.
func runHolder(name, prefixes string) int {
	dev, err := OpenDevice(name)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer dev.Close()
	for _, s := range strings.Fields(prefixes) {
		if err := dev.Announce(netip.MustParsePrefix(s)); err != nil {
			fmt.Println(err)
			return 1
		}
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// startHolder runs the holder in ns and waits until it has announced.
func startHolder(t *testing.T, ns *birdtest.NetNS, name string, prefixes ...netip.Prefix) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var list []string
	for _, p := range prefixes {
		list = append(list, p.String())
	}
	cmd := ns.Command(context.Background(), exe)
	cmd.Env = append(os.Environ(), holderEnv+"="+name, holderPrefixesEnv+"="+strings.Join(list, " "))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("failed to start the holder: %v", err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		if s != "ready" {
			t.Fatalf("holder: %s", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("holder did not get ready in 10s")
	}
	return cmd
}

// linkExists asks ip, not the code under test, whether the device exists.
func linkExists(t *testing.T, ns *birdtest.NetNS, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns.Name, "-o", "link", "show", "dev", name).CombinedOutput()
	switch {
	case err == nil:
		return true
	case strings.Contains(string(out), "does not exist"):
		return false
	}
	t.Fatalf("ip link show %s: %v: %s", name, err, out)
	return false
}

// addrsOf lists the addresses ip shows on a device.
func addrsOf(t *testing.T, ns *birdtest.NetNS, dev string) []string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns.Name, "-o", "addr", "show", "dev", dev).CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr show %s: %v: %s", dev, err, out)
	}
	var addrs []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if i := slices.IndexFunc(f, func(s string) bool { return s == "inet" || s == "inet6" }); i >= 0 && i+1 < len(f) {
			addrs = append(addrs, f[i+1])
		}
	}
	return addrs
}

// openIn opens a device inside ns.
func openIn(t *testing.T, ns *birdtest.NetNS, name string) (*Device, error) {
	t.Helper()
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		peers.Missing(t, "/dev/net/tun (the tun kernel module)")
	}
	var dev *Device
	err := ns.Do(func() error {
		var err error
		dev, err = OpenDevice(name)
		return err
	})
	if dev != nil {
		t.Cleanup(func() { dev.Close() })
	}
	return dev, err
}

// waitGone polls until the device is gone, and fails t after within.
func waitGone(t *testing.T, ns *birdtest.NetNS, name string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for linkExists(t, ns, name) {
		if time.Now().After(deadline) {
			t.Fatalf("device %s still exists %v later", name, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDevice(t *testing.T) {
	ns := birdtest.NewNetNS(t, "device")
	dev, err := openIn(t, ns, "pqedge-any0")
	if err != nil {
		t.Fatalf("OpenDevice: %v", err)
	}
	if !linkExists(t, ns, "pqedge-any0") {
		t.Fatal("OpenDevice succeeded but ip shows no pqedge-any0")
	}
	out, _ := exec.Command("ip", "-n", ns.Name, "-o", "link", "show", "dev", "pqedge-any0").CombinedOutput()
	if !strings.Contains(string(out), ",UP") {
		t.Errorf("device is not up: %s", out)
	}
	if got := addrsOf(t, ns, "pqedge-any0"); len(got) != 0 {
		t.Errorf("a new device has addresses %v, want none (no IPv6 link-local either)", got)
	}

	// Announce is idempotent, and each prefix is one address on the device.
	for _, p := range []netip.Prefix{svc4, svc6, svc4} {
		if err := dev.Announce(p); err != nil {
			t.Fatalf("Announce(%s): %v", p, err)
		}
	}
	want := []string{"192.0.2.53/32", "2001:db8::53/128"}
	if got := addrsOf(t, ns, "pqedge-any0"); !slices.Equal(got, want) {
		t.Errorf("ip shows %v on the device, want %v", got, want)
	}
	if got, err := dev.Announced(); err != nil || !slices.Equal(got, []netip.Prefix{svc4, svc6}) {
		t.Errorf("Announced = %v, %v; want [%s %s]", got, err, svc4, svc6)
	}
	if err := dev.Announce(netip.MustParsePrefix("192.0.2.0/24")); err == nil {
		t.Error("Announce of a /24 succeeded")
	}

	// Withdraw is idempotent too.
	for range 2 {
		if err := dev.Withdraw(svc4); err != nil {
			t.Fatalf("Withdraw(%s): %v", svc4, err)
		}
	}
	if got := addrsOf(t, ns, "pqedge-any0"); !slices.Equal(got, want[1:]) {
		t.Errorf("after withdrawing %s ip shows %v, want %v", svc4, got, want[1:])
	}

	// The service address goes on lo once, and stays there.
	for i, wantAdded := range []bool{true, false} {
		added, err := dev.EnsureLoopback(svc4)
		if err != nil || added != wantAdded {
			t.Errorf("EnsureLoopback call %d = %v, %v; want %v", i+1, added, err, wantAdded)
		}
	}
	if got := addrsOf(t, ns, "lo"); !slices.Contains(got, "192.0.2.53/32") {
		t.Errorf("lo has %v, want 192.0.2.53/32 among them", got)
	}

	// Closing deletes the device and its announcements; lo keeps its copy.
	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitGone(t, ns, "pqedge-any0", 5*time.Second)
	if got := addrsOf(t, ns, "lo"); !slices.Contains(got, "192.0.2.53/32") {
		t.Errorf("closing the device took the service address off lo: %v", got)
	}
	if err := dev.Withdraw(svc6); err != nil {
		t.Errorf("Withdraw after Close = %v, want nil (nothing is announced)", err)
	}
	if err := dev.Announce(svc6); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Announce after Close = %v, want a closed-device error", err)
	}
}

// TestDeviceNeverAdopted checks that OpenDevice refuses a name in use,
// whether another Device holds it or a persistent device (which would
// outlive pqedge and keep announcing) sits there.
func TestDeviceNeverAdopted(t *testing.T) {
	ns := birdtest.NewNetNS(t, "adopt")
	first, err := openIn(t, ns, "pqedge-any0")
	if err != nil {
		t.Fatalf("OpenDevice: %v", err)
	}
	if _, err := openIn(t, ns, "pqedge-any0"); err == nil || !strings.Contains(err.Error(), "a device of that name exists") {
		t.Errorf("second OpenDevice = %v, want an exists error", err)
	}
	if err := first.Announce(svc4); err != nil {
		t.Errorf("the first device broke after a refused second open: %v", err)
	}

	ns.IP(t, "tuntap", "add", "dev", "stale0", "mode", "tun")
	if _, err := openIn(t, ns, "stale0"); err == nil || !strings.Contains(err.Error(), "ip link del stale0") {
		t.Errorf("OpenDevice over a persistent device = %v, want an exists error with a hint", err)
	}
	if _, err := openIn(t, ns, "bad/name"); err == nil {
		t.Error("OpenDevice accepted bad/name")
	}
}

// TestDeviceDeadMan kills the process holding the device with SIGKILL:
// the kernel must delete the device, and so every announcement.
func TestDeviceDeadMan(t *testing.T) {
	ns := birdtest.NewNetNS(t, "deadman")
	holder := startHolder(t, ns, "pqedge-any0", svc4, svc6)
	if got := addrsOf(t, ns, "pqedge-any0"); len(got) != 2 {
		t.Fatalf("holder announced %v, want two addresses", got)
	}
	if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := holder.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("holder ended with %v, want killed by SIGKILL", err)
	}
	waitGone(t, ns, "pqedge-any0", 5*time.Second)
}
