package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAcceptedConnectionsKeepAlive: a connection pqedge accepted has TCP
// keep-alive on with Go's default period, though Go no longer sets it per
// connection (acceptKeepAlive): the server's side of the socket runs the
// keep-alive timer, which the kernel reports in /proc/net/tcp, due within
// keepAliveIdle.
func TestAcceptedConnectionsKeepAlive(t *testing.T) {
	ts := startServer(t, baseConfig+inspectSite)
	c, err := tls.Dial("tcp", ts.addr("https"), &tls.Config{RootCAs: ts.roots(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	server, client := c.RemoteAddr().(*net.TCPAddr), c.LocalAddr().(*net.TCPAddr)
	var timer, due int
	waitFor(t, "the server's side to be idle with a timer", func() bool {
		timer, due = tcpTimer(t, server.Port, client.Port)
		return timer == procTimerKeepAlive
	})
	// Clock ticks: /proc/net/tcp prints them at USER_HZ, 100 a second.
	if max := int(keepAliveIdle/time.Second) * 100; due <= 0 || due > max {
		t.Errorf("keep-alive timer due in %d ticks, want 1-%d (keepAliveIdle %v)", due, max, keepAliveIdle)
	}
}

// procTimerKeepAlive is the "tr" field of /proc/net/tcp for a socket whose
// keep-alive timer runs (net/ipv4/tcp_ipv4.c get_tcp4_sock).
const procTimerKeepAlive = 2

// tcpTimer reads the timer of the IPv4 loopback socket from local port to
// remote port in /proc/net/tcp: which one runs and in how many clock
// ticks it is due; -1 when no such socket is listed.
func tcpTimer(t *testing.T, local, remote int) (timer, due int) {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp to read the socket's timer from: %v", err)
	}
	want := fmt.Sprintf("0100007F:%04X 0100007F:%04X", local, remote)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1]+" "+f[2] != want {
			continue
		}
		tr, when, ok := strings.Cut(f[5], ":")
		if !ok {
			t.Fatalf("/proc/net/tcp: timer field %q", f[5])
		}
		a, err1 := strconv.ParseInt(tr, 16, 32)
		b, err2 := strconv.ParseInt(when, 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("/proc/net/tcp: timer field %q", f[5])
		}
		return int(a), int(b)
	}
	return -1, -1
}

// TestListenerKeepAliveInherited: a socket accepted from a listener opened
// as openTCP opens it carries the listener's four keep-alive options, and
// only from the listener: without keepAliveOnListener the same
// ListenConfig accepts sockets with keep-alive off, so Go sets nothing per
// connection.
func TestListenerKeepAliveInherited(t *testing.T) {
	without := acceptedSocket(t, net.ListenConfig{KeepAlive: acceptKeepAlive})
	var on int
	without.Control(func(fd uintptr) { on, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE) })
	if on != 0 {
		t.Errorf("SO_KEEPALIVE = %d on a socket accepted without keepAliveOnListener: Go still sets it per connection", on)
	}
	rc := acceptedSocket(t, net.ListenConfig{Control: socketWant{}.control(), KeepAlive: acceptKeepAlive})
	tests := []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(keepAliveIdle / time.Second)},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(keepAliveInterval / time.Second)},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
	}
	for _, tt := range tests {
		var got int
		var gerr error
		rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), tt.level, tt.opt) })
		if gerr != nil || got != tt.want {
			t.Errorf("%s on the accepted socket = %d, %v; want %d", tt.name, got, gerr, tt.want)
		}
	}
}

// acceptedSocket is the server side of a loopback connection accepted from
// a listener lc opens.
func acceptedSocket(t *testing.T, lc net.ListenConfig) syscall.RawConn {
	t.Helper()
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}
