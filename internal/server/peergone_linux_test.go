package server

import (
	"net"
	"testing"
	"time"
)

// TestClientSilent: a connection whose client has sent nothing is silent;
// once one byte has reached the kernel, read by the server or not, it is
// not, for good (connlimit.Watcher's contract).
func TestClientSilent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rc := socketOf(srv)
	if rc == nil {
		t.Fatal("no socket under the accepted connection")
	}
	if !clientSilent(rc) {
		t.Fatal("a client that sent nothing: not silent, want silent")
	}
	if _, err := client.Write([]byte{0x16}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client's byte to count (unread)", func() bool { return !clientSilent(rc) })
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := srv.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if clientSilent(rc) {
		t.Error("after the byte was read: silent, want not silent")
	}
}
