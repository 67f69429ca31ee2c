// Package redistest runs a real redis-server (Debian's, the Redis line
// Valkey forked from) on a unix socket for tests of pqedge's fleet mode.
//
// It is test support only: nothing outside _test.go files may import it.
// The server keeps nothing on disk (no RDB, no AOF), listens on no TCP
// port, and is stopped when the test ends. Stop and Start let a test take
// the store away and bring it back, empty, on the same socket: the outage
// and restart a fleet must survive.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pqedge/pqedge/internal/peers"
)

// startTimeout bounds how long Start waits for the server to answer.
const startTimeout = 10 * time.Second

// Server is a redis-server the test controls.
type Server struct {
	// Socket is the unix socket path; URL is unix://Socket.
	Socket, URL string

	t      testing.TB
	bin    string
	dir    string
	log    logBuffer
	mu     sync.Mutex // guards cmd and exited
	cmd    *exec.Cmd
	exited chan struct{}
}

// logBuffer collects the server's output; exec copies into it from its
// own goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start runs redis-server until the test ends, or skips the test (fails
// it under PQEDGE_REQUIRE_PEERS=1) when redis-server is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := peers.Binary(t, "redis-server", "valkey-server")
	// Unix socket paths are limited to 108 bytes: t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "redis")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, dir: dir, Socket: filepath.Join(dir, "redis.sock")}
	s.URL = "unix://" + s.Socket
	t.Cleanup(func() {
		s.Stop()
		os.RemoveAll(dir)
	})
	s.Start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("redis-server log:\n%s", s.log.String())
		}
	})
	return s
}

// Start (re)starts a stopped server, empty, and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		s.t.Fatal("redistest: Start on a running server")
	}
	cmd := exec.Command(s.bin,
		"--port", "0", "--unixsocket", s.Socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = &s.log, &s.log
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		s.t.Fatalf("failed to start %s: %v", s.bin, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(s.exited)
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		if err := s.ping(); err == nil {
			return
		} else if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not answer on %s within %s: %v", s.Socket, startTimeout, err)
		}
		select {
		case <-s.exited:
			s.t.Fatalf("redis-server exited at start:\n%s", s.log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop kills the server (SIGKILL: a crash, not a shutdown) and waits for
// it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
	os.Remove(s.Socket)
}

// ping sends an inline PING and expects +PONG, without a client library.
func (s *Server) ping() error {
	c, err := net.DialTimeout("unix", s.Socket, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "+PONG\r\n" {
		return fmt.Errorf("unexpected reply %q", buf[:n])
	}
	return nil
}

// Values returns every value the server holds, to check what a store
// leaks to whoever reads it: a string's value under its key, a hash
// field's under "KEY FIELD", a sorted set's members under "KEY member", and
// every key name under "key name KEY". Other types fail the test.
func (s *Server) Values(t testing.TB) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.Socket, DialTimeout: startTimeout, ReadTimeout: startTimeout})
	defer c.Close()
	out := map[string][]byte{}
	iter := c.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		out["key name "+key] = []byte(key)
		switch typ, err := c.Type(ctx, key).Result(); {
		case err != nil:
			t.Fatalf("redistest: TYPE %s: %v", key, err)
		case typ == "none":
			// Gone since SCAN listed it (an expired or released lock).
		case typ == "string":
			v, err := c.Get(ctx, key).Bytes()
			if errors.Is(err, redis.Nil) {
				continue // gone since TYPE (a lock released meanwhile)
			}
			if err != nil {
				t.Fatalf("redistest: GET %s: %v", key, err)
			}
			out[key] = v
		case typ == "hash":
			fields, err := c.HGetAll(ctx, key).Result()
			if err != nil {
				t.Fatalf("redistest: HGETALL %s: %v", key, err)
			}
			for f, v := range fields {
				out[key+" "+f] = []byte(v)
			}
		case typ == "zset":
			members, err := c.ZRange(ctx, key, 0, -1).Result()
			if err != nil {
				t.Fatalf("redistest: ZRANGE %s: %v", key, err)
			}
			for _, m := range members {
				out[key+" member "+m] = []byte(m)
			}
		default:
			t.Fatalf("redistest: %s is a %s, which Values does not read", key, typ)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("redistest: SCAN: %v", err)
	}
	return out
}
