package leanclient

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// startFakeService listens on loopback and runs serve on every connection,
// which it closes afterwards.
func startFakeService(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				// Bounds a client that never leaves.
				c.SetDeadline(time.Now().Add(10 * time.Second))
				serve(c)
			})
		}
	})
	return ln.Addr().String()
}

// banner greets like a server that speaks first (SSH, SMTP, FTP, POP3,
// IMAP), then reads what the client sends until it leaves.
func banner(text string) func(net.Conn) {
	return func(c net.Conn) {
		io.WriteString(c, text)
		io.Copy(io.Discard, c)
	}
}

// reply waits for the client's first bytes and answers like a server that
// cannot parse them (Redis, a line protocol).
func reply(text string) func(net.Conn) {
	return func(c net.Conn) {
		if _, err := bufio.NewReader(c).Peek(1); err == nil {
			io.WriteString(c, text)
		}
		io.Copy(io.Discard, c)
	}
}

// TestProbeNotTLS probes services that do not speak TLS: each is named
// when its answer shows what it is, and the probe ends at the first
// handshake instead of filling a table with malformed results.
func TestProbeNotTLS(t *testing.T) {
	// A real plain HTTP server: Go's net/http answers bytes that are not
	// HTTP with a 400.
	httpSrv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go httpSrv.Serve(ln)
	t.Cleanup(func() { httpSrv.Close() })

	tests := []struct {
		name, addr   string
		protocol     string
		excerpt      string
		wantContains string
	}{
		{"plain HTTP (net/http)", ln.Addr().String(), "HTTP", `"HTTP/1.1 400 Bad Request"`, "not a TLS server (it answered with HTTP); its first line: \"HTTP/1.1 400 Bad Request\""},
		{"SSH", startFakeService(t, banner("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")), "SSH", `"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"`, "it answered with SSH"},
		{"SMTP", startFakeService(t, banner("220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n")), "SMTP", `"220 mail.example.com ESMTP Postfix (Debian/GNU)"`, "it answered with SMTP"},
		{"FTP", startFakeService(t, banner("220 (vsFTPd 3.0.3)\r\n")), "FTP", `"220 (vsFTPd 3.0.3)"`, "it answered with FTP"},
		{"POP3", startFakeService(t, banner("+OK Dovecot ready.\r\n")), "POP3", `"+OK Dovecot ready."`, "it answered with POP3"},
		{"IMAP", startFakeService(t, banner("* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n")), "IMAP", `"* OK [CAPABILITY IMAP4rev1] Dovecot ready."`, "it answered with IMAP"},
		{"Redis", startFakeService(t, reply("-ERR unknown command '\\x16\\x03\\x01', with args beginning with:\r\n")), "Redis", `"-ERR unknown command`, "it answered with Redis"},
		{"short unknown answer", startFakeService(t, reply("OK\n")), "", `"OK"`, "not a TLS server (its answer is not a TLS record); it began with \"OK\""},
		{"binary", startFakeService(t, reply("\x00\x01\x02\xff")), "", `"\x00\x01\x02\xff"`, "its answer is not a TLS record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Probe(testContext(t), tt.addr, ProbeConfig{ServerName: "localhost", Timeout: 5 * time.Second})
			if KindOf(err) != KindNotTLS {
				t.Fatalf("Probe error %v (kind %v), want KindNotTLS; report %+v", err, KindOf(err), r)
			}
			var nt *NotTLSError
			if !errors.As(err, &nt) {
				t.Fatalf("error %v carries no *NotTLSError", err)
			}
			if nt.Protocol != tt.protocol || !strings.HasPrefix(nt.Excerpt, strings.TrimSuffix(tt.excerpt, `"`)) {
				t.Errorf("NotTLSError %+v, want protocol %q, excerpt %s", nt, tt.protocol, tt.excerpt)
			}
			if !strings.Contains(err.Error(), tt.wantContains) {
				t.Errorf("error %q lacks %q", err, tt.wantContains)
			}
			if len(r.Groups) != 0 {
				t.Errorf("probe went on after the first answer: %d group rows", len(r.Groups))
			}
		})
	}
}

// TestProbeSilentServer: a server that accepts and never answers ends the
// probe after two unanswered ClientHellos, not two timeouts per group.
func TestProbeSilentServer(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	addr := startFakeService(t, func(c net.Conn) {
		mu.Lock()
		conns++
		mu.Unlock()
		io.Copy(io.Discard, c)
	})
	_, err := Probe(testContext(t), addr, ProbeConfig{ServerName: "localhost", Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrNoAnswer) || KindOf(err) != KindTimeout {
		t.Fatalf("Probe error %v, want ErrNoAnswer of KindTimeout", err)
	}
	if !strings.Contains(err.Error(), "X25519MLKEM768 ClientHello, then a small x25519 one, waited 200ms each") {
		t.Errorf("error %q does not say what was tried", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 2 {
		t.Errorf("%d connections, want 2 (one post-quantum, one classical ClientHello)", conns)
	}
}

// TestIdentifyProtocol: TLS records are never taken for another protocol;
// the banners of common services are named.
func TestIdentifyProtocol(t *testing.T) {
	for _, tt := range []struct {
		answer, want string
		tls          bool
	}{
		{"\x16\x03\x03\x00\x7a\x02", "", true},     // ServerHello record
		{"\x15\x03\x03\x00\x02\x02\x28", "", true}, // alert record
		{"\x16", "", true},                         // too short to judge
		{"", "", true},
		{"\x16\x00", "", false}, // handshake type, but not version 3.x
		{"HTTP/1.0 400 Bad Request\r\n", "HTTP", false},
		{"220-smtp.example.com ESMTP\r\n", "SMTP", false},
		{"220 example.com FTP server ready\r\n", "FTP", false},
		{"220 welcome\r\n", "SMTP or FTP", false},
		{"RFB 003.008\n", "VNC", false},
		{"AMQP\x00\x00\x09\x01", "AMQP", false},
		{"-NOAUTH Authentication required.\r\n", "Redis", false},
		{"hello", "", false},
	} {
		if got := looksLikeTLS([]byte(tt.answer)); got != tt.tls {
			t.Errorf("looksLikeTLS(%q) = %v, want %v", tt.answer, got, tt.tls)
		}
		if tt.tls {
			continue
		}
		if got := identifyProtocol([]byte(tt.answer)); got != tt.want {
			t.Errorf("identifyProtocol(%q) = %q, want %q", tt.answer, got, tt.want)
		}
	}
}

// FuzzNotTLS: any answer is described without panicking, and the excerpt
// stays within its cap.
func FuzzNotTLS(f *testing.F) {
	for _, s := range []string{"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n400 Bad Request", "SSH-2.0-OpenSSH_9.2p1\r\n", "220 mail ESMTP\r\n", "\x00\xff", "\x16\x03\x03"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		if looksLikeTLS(answer) {
			return
		}
		e := notTLS(answer)
		if len(e.Excerpt) > 2+4*maxExcerpt { // quoted: at most \xNN per byte
			t.Errorf("excerpt of %d bytes", len(e.Excerpt))
		}
		_ = e.Error()
	})
}
