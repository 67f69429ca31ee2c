package server

import (
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// TestClientSilent: a connection whose client has sent nothing is silent;
// once one byte has reached the kernel, read by the server or not, it is
// not, for good (connlimit.Watcher's contract).
func TestClientSilent(t *testing.T) {
	client, srv := loopbackPair(t)
	rc := socketOf(srv)
	if rc == nil {
		t.Fatal("no socket under the accepted connection")
	}
	if silent, _ := clientSilent(rc, true); !silent {
		t.Fatal("a client that sent nothing: not silent, want silent")
	}
	if _, err := client.Write([]byte{0x16}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client's byte to count (unread)", func() bool { silent, _ := clientSilent(rc, true); return !silent })
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := srv.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if silent, _ := clientSilent(rc, false); silent {
		t.Error("after the byte was read: silent, want not silent")
	}
}

// TestClientPartial: what waits unread in a socket is judged a partial
// ClientHello only when it is the start of a handshake record that has
// not arrived whole, and only while nothing was read from the socket.
func TestClientPartial(t *testing.T) {
	whole := append([]byte{0x16, 0x03, 0x01, 0x00, 0x04}, 1, 0, 0, 0)
	for _, tt := range []struct {
		name    string
		send    []byte
		read    bool // the server read from the socket before
		partial bool
	}{
		{name: "one byte of a record header", send: whole[:1], partial: true},
		{name: "a record header", send: whole[:5], partial: true},
		{name: "a record without its last byte", send: whole[:len(whole)-1], partial: true},
		{name: "a whole record", send: whole},
		{name: "a whole record and the next one's start", send: append(slices.Clone(whole), 0x16)},
		{name: "plain HTTP", send: []byte("GET")},
		{name: "read from before", send: whole[:len(whole)-1], read: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, srv := loopbackPair(t)
			rc := socketOf(srv)
			if _, err := client.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the client's bytes to arrive", func() bool { silent, _ := clientSilent(rc, true); return !silent })
			// tcpi_last_data_recv counts milliseconds.
			waitFor(t, "a millisecond", func() bool {
				time.Sleep(time.Millisecond)
				_, p := clientSilent(rc, true)
				return p > 0 || !tt.partial
			})
			_, partialFor := clientSilent(rc, !tt.read)
			if got := partialFor > 0; got != tt.partial {
				t.Errorf("partial %v (%v ago), want %v", got, partialFor, tt.partial)
			}
			// A peek, not a read: the bytes are all still there.
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, len(tt.send))
			if _, err := io.ReadFull(srv, b); err != nil || string(b) != string(tt.send) {
				t.Errorf("read %x, %v; want %x", b, err, tt.send)
			}
		})
	}
}

// loopbackPair is a TCP connection over loopback: its client end and the
// accepted server end, both closed when t ends.
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}
