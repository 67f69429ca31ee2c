package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/freeport"
	"github.com/pqedge/pqedge/internal/peers"
)

// diffHAProxyConfig is HAProxy 3.0's config as an operator would write
// it in front of the same two pools as diffNginxConfig: TLS with h2 and
// http/1.1, /app/ to one backend, the rest to the other, defaults
// otherwise (header names preserved, no X-Forwarded-For added,
// keep-alive and connection reuse to the servers).
func diffHAProxyConfig(inside, listen string, up *diffUpstream) string {
	return fmt.Sprintf(`global
  log stderr format raw local0 warning
defaults
  mode http
  log global
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
frontend edge
  bind %[2]s ssl crt %[1]s/site.pem alpn h2,http/1.1
  use_backend app if { path_beg /app/ }
  default_backend other
backend app
  server app %[3]s
backend other
  server other %[4]s
`, inside, listen, up.addrs["app"], up.addrs["other"])
}

// startDiffHAProxy runs HAProxy from the trixie peer root in front of up
// and returns its address; a root without HAProxy skips t, or fails it
// under PQEDGE_REQUIRE_PEERS=1.
func startDiffHAProxy(t *testing.T, up *diffUpstream) string {
	root := peers.Trixie(t)
	if _, err := os.Stat(filepath.Join(root.Root, "usr/sbin/haproxy")); err != nil {
		peers.Missing(t, "haproxy in the trixie root")
	}
	host, inside := root.TempDir(t)
	certPEM, keyPEM := selfSigned(t)
	os.WriteFile(filepath.Join(host, "site.pem"), append(certPEM, keyPEM...), 0o600)
	listen := freeport.MustAddr(t)
	if err := os.WriteFile(filepath.Join(host, "haproxy.cfg"), []byte(diffHAProxyConfig(inside, listen, up)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var out strings.Builder
	cmd := root.Command(ctx, "/usr/sbin/haproxy", "-db", "-f", inside+"/haproxy.cfg")
	cmd.Stdout, cmd.Stderr = &out, &out
	done := peers.Start(t, cmd, "haproxy")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			return listen
		}
		select {
		case err := <-done:
			t.Fatalf("haproxy exited: %v: %s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not listen on %s", listen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// haproxyAccepted are the cases where pqedge forwards a request HAProxy
// refuses, judged right by the RFCs (the reason given).
var haproxyAccepted = map[string]string{
	"line absolute-form of another host, CRLF": "RFC 9112 section 3.2.2: a server takes the authority of an absolute-form target and ignores Host; HAProxy 3.0 refuses one that differs from Host (nginx forwards it)",
	`path "/app/x#frag"`:                       hashInPath,
	`h2 path "/app/x#frag"`:                    hashInPath,
	`path "/app/#/../../secret"`:               hashInPath,
	`h2 path "/app/#/../../secret"`:            hashInPath,
	"h2 pseudo :path with a fragment":          hashInPath,
	`path "/app/\xffx"`:                        "RFC 9112 section 3: an invalid request-target may be answered 400 or taken properly encoded; pqedge percent-encodes the byte (%FF) and routes and forwards that one path (nginx forwards the raw byte)",
	`h2 path "/app/ x"`:                        diffAccepted[`h2 path "/app/ x"`],
	"h2 an empty trailer section":              "RFC 9113 section 8.1 allows a trailer section, and RFC 7541 an empty field block; nothing reaches the upstream but the body",
}

// The reasons haproxyAccepted gives more than once.
const (
	hashInPath          = "RFC 9112 section 3 (RFC 9113 section 8.3.1 over HTTP/2): a '#' is no part of a request target, which may be answered 400 or taken properly encoded; pqedge percent-encodes it (%23) before removing dot-segments, and routes and forwards that one path, so no upstream reads it as a fragment (nginx forwards it raw)"
	unannouncedTrailers = "RFC 9113 section 8.1 allows a trailer section. Go's HTTP/2 server resets a stream whose announced trailer fields RFC 9110 section 6.5.1 rules out, and drops, unread, a section whose fields the request did not announce (Content-Length and Transfer-Encoding are never announced), so none of it reaches the upstream, which gets a well-framed body; RFC 9113 section 8.2.2 would reset a transfer-encoding there, which pqedge cannot see without decoding every HPACK block ahead of Go's server"
)

// haproxyAcceptedWhy is why a case HAProxy refuses may be forwarded, or "".
// A trailer section HAProxy refuses (framing or routing fields in it) it
// refuses before or after it forwarded the body, as the frames' timing
// falls, so every trailer case is judged by one reason.
func haproxyAcceptedWhy(name string) string {
	if strings.HasPrefix(name, "h2 trailers ") {
		return unannouncedTrailers
	}
	return haproxyAccepted[name]
}
