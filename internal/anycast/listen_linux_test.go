package anycast

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/birdtest"
)

// TestFreeBind binds a service address that is on no interface yet, in a
// namespace of its own, then adds the address to lo and checks a client
// reaches the listener: pqedge's start order with anycast (listen, become
// ready, then the address appears and is announced).
func TestFreeBind(t *testing.T) {
	ns := birdtest.NewNetNS(t, "freebind")
	for _, tc := range []struct {
		name    string
		network string
		addr    netip.Addr
	}{
		{"tcp4", "tcp", netip.MustParseAddr("192.0.2.80")},
		{"tcp6", "tcp", netip.MustParseAddr("2001:db8::80")},
		{"udp4", "udp", netip.MustParseAddr("192.0.2.81")},
		{"udp6", "udp", netip.MustParseAddr("2001:db8::81")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			address := netip.AddrPortFrom(tc.addr, 0).String()
			// Without FreeBind the kernel refuses: the test can fail.
			err := ns.Do(func() error {
				if tc.network == "tcp" {
					l, err := net.Listen(tc.network, address)
					if err == nil {
						l.Close()
					}
					return err
				}
				c, err := net.ListenPacket(tc.network, address)
				if err == nil {
					c.Close()
				}
				return err
			})
			if !errors.Is(err, syscall.EADDRNOTAVAIL) {
				t.Fatalf("plain bind of %s = %v, want EADDRNOTAVAIL", address, err)
			}

			lc := net.ListenConfig{Control: FreeBind}
			if tc.network == "tcp" {
				testFreeBindTCP(t, ns, lc, address, tc.addr)
			} else {
				testFreeBindUDP(t, ns, lc, address, tc.addr)
			}
		})
	}
}

// addToLo adds a to lo and waits until the kernel routes it locally: an
// IPv6 address gets its local route from a work queue, even without
// duplicate address detection, so a busy machine can take a while.
func addToLo(t *testing.T, ns *birdtest.NetNS, a netip.Addr) {
	t.Helper()
	if a.Is4() {
		ns.IP(t, "addr", "add", a.String()+"/32", "dev", "lo")
	} else {
		ns.IP(t, "addr", "add", a.String()+"/128", "dev", "lo", "nodad")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("ip", "-n", ns.Name, "route", "get", a.String()).CombinedOutput()
		if err == nil && strings.HasPrefix(string(out), "local ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not routed locally 10s after adding it to lo: %v: %s", a, err, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testFreeBindTCP(t *testing.T, ns *birdtest.NetNS, lc net.ListenConfig, address string, a netip.Addr) {
	var ln net.Listener
	err := ns.Do(func() (err error) {
		ln, err = lc.Listen(context.Background(), "tcp", address)
		return err
	})
	if err != nil {
		t.Fatalf("FreeBind listen on %s: %v", address, err)
	}
	defer ln.Close()
	addToLo(t, ns, a)

	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial %s after adding the address: %v", ln.Addr(), err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Errorf("server read %q, %v; want ping", buf, err)
	}
}

func testFreeBindUDP(t *testing.T, ns *birdtest.NetNS, lc net.ListenConfig, address string, a netip.Addr) {
	var pc net.PacketConn
	err := ns.Do(func() (err error) {
		pc, err = lc.ListenPacket(context.Background(), "udp", address)
		return err
	})
	if err != nil {
		t.Fatalf("FreeBind listen on %s: %v", address, err)
	}
	defer pc.Close()
	addToLo(t, ns, a)

	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.Dial("udp", pc.LocalAddr().String())
		return err
	}); err != nil {
		t.Fatalf("dial %s after adding the address: %v", pc.LocalAddr(), err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, from, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("server read %q, %v; want ping", buf[:n], err)
	}
	if got := from.(*net.UDPAddr).AddrPort().Addr().Unmap(); got != a {
		t.Errorf("datagram came from %v, want the service address %v (it is on lo now)", got, a)
	}
}
