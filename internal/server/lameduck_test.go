package server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// lameDuckUpstream serves /ws (a WebSocket echo), /slow (answers once
// released) and everything else at once.
type lameDuckUpstream struct {
	*httptest.Server
	entered chan struct{} // a /slow request arrived
	release chan struct{} // close to let /slow answer
}

func newLameDuckUpstream(t *testing.T) *lameDuckUpstream {
	u := &lameDuckUpstream{entered: make(chan struct{}, 1), release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }))
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		u.entered <- struct{}{}
		<-u.release
		io.WriteString(w, "slow done")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	u.Server = httptest.NewServer(mux)
	t.Cleanup(u.Close)
	return u
}

// dialWebSocket opens a WebSocket through pqedge (HTTP/1.1: RFC 6455 over
// TLS) and checks one echo.
func (ts *testServer) dialWebSocket(t *testing.T, addr string) *websocket.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	cfg, err := websocket.NewConfig("wss://localhost/ws", "https://localhost")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, c)
	if err != nil {
		c.Close()
		t.Fatalf("WebSocket handshake through pqedge: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	echo(t, ws, "before shutdown")
	return ws
}

// echo sends msg and reads it back within a deadline.
func echo(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	ws.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := ws.Write([]byte(msg)); err != nil {
		t.Fatalf("WebSocket write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(ws, buf); err != nil || string(buf) != msg {
		t.Fatalf("WebSocket echo of %q: %q, %v", msg, buf, err)
	}
}

// TestLameDuckShutdown follows Shutdown step by step: /readyz turns 503 at
// once while new connections are still served during the withdraw grace;
// once the grace ends the listener refuses new connections, and an open
// WebSocket and an in-flight request both finish before Shutdown returns.
// The grace is long and ended by EndGrace, so no step depends on timing.
func TestLameDuckShutdown(t *testing.T) {
	up := newLameDuckUpstream(t)
	ts := startServer(t, baseConfig+`
[timeouts]
withdraw_grace = "1m"
shutdown = "2m"
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/"
pool = "app"
[[pool]]
name = "app"
upstreams = ["`+up.Listener.Addr().String()+`"]
`)
	addr := ts.addr("https")
	url := "https://" + addr
	ws := ts.dialWebSocket(t, addr)

	type result struct {
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := ts.client().Get(url + "/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- result{string(b), err}
	}()
	select {
	case <-up.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()

	// Withdraw: not ready, but still accepting.
	waitFor(t, "/readyz to answer 503", func() bool {
		code, _ := ts.readyzJSON()
		return code == http.StatusServiceUnavailable
	})
	_, text := ts.readyzText()
	if !strings.HasPrefix(text, "not ready: shutdown: shutting down since ") || !strings.Contains(text, "still accepting") {
		t.Errorf("/readyz during the grace:\n%s", text)
	}
	fresh := ts.client()
	fresh.Transport.(*http.Transport).DisableKeepAlives = true
	for i := range 3 {
		resp, err := fresh.Get(url + "/hello")
		if err != nil {
			t.Fatalf("new connection %d during the withdraw grace: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "hello" {
			t.Fatalf("new connection %d during the withdraw grace: %s %q", i, resp.Status, b)
		}
	}

	// Grace over: the listener closes; what is in flight goes on.
	ts.srv.EndGrace()
	waitFor(t, "the listener to refuse new connections", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if _, text := ts.readyzText(); !strings.Contains(text, "not accepting, draining until") {
		t.Errorf("/readyz while draining:\n%s", text)
	}
	echo(t, ws, "after the listener closed")
	close(up.release)
	if r := <-slow; r.err != nil || r.body != "slow done" {
		t.Fatalf("in-flight request: %q, %v", r.body, r.err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a WebSocket was open", err)
	default:
	}
	ws.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return once the WebSocket closed")
	}
}
