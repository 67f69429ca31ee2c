package server

import (
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/peers"
)

// hrrRelay relays one client connection to the server and, when the
// server's first bytes (its HelloRetryRequest) pass, takes every crypto
// slot before handing them on, so that the second ClientHello waits for a
// slot. up is the relay's connection to the server.
type hrrRelay struct {
	addr    string
	up      chan *net.TCPConn
	held    chan struct{} // closed once the slots are held
	release func()
}

func startHRRRelay(t *testing.T, ts *testServer) *hrrRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &hrrRelay{addr: ln.Addr().String(), up: make(chan *net.TCPConn, 1), held: make(chan struct{})}
	n := runtime.GOMAXPROCS(0)
	taken := 0
	r.release = func() {
		for ; taken > 0; taken-- {
			ts.srv.limiter.ReleaseCrypto()
		}
	}
	go func() {
		down, err := ln.Accept()
		if err != nil {
			return
		}
		defer down.Close()
		c, err := net.DialTimeout("tcp", ts.addr("https"), 5*time.Second)
		if err != nil {
			return
		}
		up := c.(*net.TCPConn)
		defer up.Close()
		r.up <- up
		go io.Copy(up, down)
		buf := make([]byte, 16<<10)
		first := true
		for {
			k, err := up.Read(buf)
			if k > 0 && first {
				first = false
				for ; taken < n; taken++ {
					if ts.srv.limiter.AcquireCrypto(time.Now().Add(time.Minute)) != nil {
						break
					}
				}
				close(r.held)
			}
			if k > 0 {
				if _, werr := down.Write(buf[:k]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

// TestDepartedClientAfterHelloRetryRequest: after a HelloRetryRequest, a
// client's second ClientHello waits for a crypto slot of its own; a client
// that resets meanwhile has its handshake ended as client_left before the
// signature (GetCertificate's check, checkPeer), and one that waits it out
// gets a whole handshake counted with hello_retry="true". OpenSSL's
// s_client offers X25519MLKEM768 but sends a P-256 key share only
// (-groups P-256:X25519MLKEM768), which a pq-only site does not take; Go's
// client always sends an X25519MLKEM768 share and is never asked to retry.
func TestDepartedClientAfterHelloRetryRequest(t *testing.T) {
	trixie := peers.Trixie(t)
	ts := startServer(t, baseConfig+pqOnlyInspectSite)
	retried := func() float64 {
		return ts.metricSum("pqedge_handshakes_total", `hello_retry="true"`, `group="X25519MLKEM768"`)
	}
	for _, tt := range []struct {
		name  string
		leave bool
	}{{"reset while the second ClientHello waits", true}, {"client stays", false}} {
		t.Run(tt.name, func(t *testing.T) {
			left := ts.metricSum("pqedge_handshake_failures_total", `reason="client_left"`)
			before := retried()
			r := startHRRRelay(t, ts)
			defer r.release()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := trixie.Command(ctx, "openssl", "s_client", "-connect", r.addr, "-servername", "localhost",
				"-groups", "P-256:X25519MLKEM768", "-ign_eof")
			cmd.Stdin = strings.NewReader("GET /?format=json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
			out := make(chan string, 1)
			go func() {
				b, _ := cmd.CombinedOutput()
				out <- string(b)
			}()
			up := <-r.up
			select {
			case <-r.held:
			case <-time.After(10 * time.Second):
				t.Fatalf("the server sent nothing; s_client:\n%s", <-out)
			}
			waitFor(t, "the second ClientHello to wait for a crypto slot", func() bool {
				return ts.srv.limiter.Stats().Crypto.Waiting == 1
			})
			if tt.leave {
				up.SetLinger(0)
				up.Close()
			}
			r.release()
			text := <-out
			if !tt.leave {
				if !strings.Contains(text, `"group": "X25519MLKEM768"`) {
					t.Fatalf("s_client got no page over X25519MLKEM768:\n%s", text)
				}
				waitFor(t, "a handshake counted with hello_retry", func() bool { return retried() == before+1 })
				return
			}
			waitFor(t, "the handshake to fail as client_left", func() bool {
				return ts.metricSum("pqedge_handshake_failures_total", `reason="client_left"`) == left+1
			})
			if retried() != before {
				t.Error("a handshake whose client left was counted as whole")
			}
		})
	}
}
