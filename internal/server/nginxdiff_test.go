package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/freeport"
	"github.com/pqedge/pqedge/internal/peers"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The differential trial (issue #12, kinds 1, 2, 5 and 6): generated
// hostile requests (nginxdiff_cases_test.go) go to pqedge, to nginx 1.26
// and to HAProxy 3.0 (haproxydiff_test.go), in front of one diffUpstream
// with the same two pools, and the answers, whether the connection stayed
// open and what the upstream received are compared. The test fails on
// pqedge's side of a fault (diffInvariants) and on a request pqedge
// forwards that a reference refuses and no entry of that reference's list
// explains (diffAcceptedWhy, haproxyAcceptedWhy); every other difference
// is logged with -v.

// diffEnd is the request sent after every HTTP/1.1 case on the same
// connection: its answer (the upstream echoes the target) shows the
// connection stayed open and parsed the case's bytes to their end.
const diffEnd = "GET /__end HTTP/1.1\r\nHost: localhost\r\n\r\n"

// diffSeen is one request an upstream read.
type diffSeen struct {
	caseID int
	pool   string // "app" or "other"
	line   string // the request line
	fields [][2]string
	body   string // after chunked decoding
}

func (s diffSeen) target() string {
	if f := strings.Fields(s.line); len(f) == 3 {
		return f[1]
	}
	return s.line
}

// field returns the values of every field named name (case-insensitively).
func (s diffSeen) field(name string) []string {
	var vs []string
	for _, f := range s.fields {
		if strings.EqualFold(f[0], name) {
			vs = append(vs, f[1])
		}
	}
	return vs
}

// diffUpstream is a raw TCP upstream with one listener a pool: it reads
// each request's head and body by RFC 9112 section 6 (both fronts send it
// well-framed requests), records them under the case under way, and
// answers 200 with the request target as the body.
type diffUpstream struct {
	mu    sync.Mutex
	cur   int
	seen  []diffSeen
	addrs map[string]string // pool name -> address
}

func newDiffUpstream(t *testing.T) *diffUpstream {
	u := &diffUpstream{addrs: map[string]string{}}
	for _, pool := range []string{"app", "other"} {
		u.addrs[pool] = rawUpstream(t, func(c net.Conn) { u.serve(c, pool) })
	}
	return u
}

func (u *diffUpstream) setCase(id int) {
	u.mu.Lock()
	u.cur = id
	u.mu.Unlock()
}

func (u *diffUpstream) forCase(id int) []diffSeen {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []diffSeen
	for _, s := range u.seen {
		if s.caseID == id {
			out = append(out, s)
		}
	}
	return out
}

func (u *diffUpstream) serve(c net.Conn, pool string) {
	defer c.Close()
	br := bufio.NewReader(io.LimitReader(c, 64<<20))
	for {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		s, err := readDiffRequest(br)
		if err != nil {
			return
		}
		s.pool = pool
		u.mu.Lock()
		s.caseID = u.cur
		u.seen = append(u.seen, s)
		u.mu.Unlock()
		body := s.target()
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

// readDiffRequest reads one request as a front sends it upstream.
func readDiffRequest(br *bufio.Reader) (diffSeen, error) {
	var s diffSeen
	line, err := br.ReadString('\n')
	if err != nil {
		return s, err
	}
	s.line = strings.TrimRight(line, "\r\n")
	length, chunked := 0, false
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return s, err
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			break
		}
		name, value, _ := strings.Cut(l, ":")
		value = strings.TrimSpace(value)
		s.fields = append(s.fields, [2]string{name, value})
		switch strings.ToLower(name) {
		case "content-length":
			length, _ = strconv.Atoi(value)
		case "transfer-encoding":
			chunked = strings.Contains(strings.ToLower(value), "chunked")
		}
	}
	var body bytes.Buffer
	if chunked {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return s, err
			}
			size, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(l, ";", 2)[0]), 16, 32)
			if err != nil {
				return s, err
			}
			if size == 0 {
				for { // the trailer section
					l, err := br.ReadString('\n')
					if err != nil {
						return s, err
					}
					if strings.TrimRight(l, "\r\n") == "" {
						break
					}
					s.fields = append(s.fields, [2]string{"trailer", strings.TrimRight(l, "\r\n")})
				}
				break
			}
			if _, err := io.CopyN(&body, br, size); err != nil {
				return s, err
			}
			br.ReadString('\n')
		}
	} else if _, err := io.CopyN(&body, br, int64(length)); err != nil {
		return s, err
	}
	s.body = body.String()
	return s, nil
}

// diffOutcome is what one front did with one case.
type diffOutcome struct {
	statuses []int  // the answers' statuses in order, the end marker's left out; -1 a reset stream, -2 GOAWAY
	open     bool   // the end marker (or HTTP/2's next stream) was answered
	end      string // what ended the reading when not open
	ups      []diffSeen
}

func (o diffOutcome) first() int {
	if len(o.statuses) == 0 {
		return 0
	}
	return o.statuses[0]
}

// forwarded are the case's requests that reached an upstream, the end
// marker left out.
func (o diffOutcome) forwarded() []diffSeen {
	var out []diffSeen
	for _, s := range o.ups {
		if !strings.HasPrefix(s.target(), "/__end") {
			out = append(out, s)
		}
	}
	return out
}

func (o diffOutcome) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "answers %v open=%v", o.statuses, o.open)
	if o.end != "" {
		fmt.Fprintf(&b, " (%s)", o.end)
	}
	for _, s := range o.forwarded() {
		fmt.Fprintf(&b, " | %s: %q", s.pool, s.line)
		if s.body != "" {
			fmt.Fprintf(&b, " body %q", s.body)
		}
	}
	return b.String()
}

// diffEndOf names how a connection's reading ended.
func diffEndOf(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "no answer in 1 s"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	}
	return err.Error()
}

// diffFront is one front (pqedge or nginx) under trial.
type diffFront struct {
	name string
	addr string
	up   *diffUpstream
}

// h1 sends raw and the end marker on one HTTP/1.1 connection and reads
// answers until the end marker's, the connection's end, or 1 s without a
// byte (a front waiting for more of the case).
func (f *diffFront) h1(t *testing.T, id int, raw string) diffOutcome {
	f.up.setCase(id)
	var o diffOutcome
	c, err := tls.Dial("tcp", f.addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("%s: %v", f.name, err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, raw+diffEnd) // a front that closed early fails the write: its answers are still read
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			o.end = diffEndOf(err)
			break
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == 200 && string(body) == "/__end" {
			o.open = true
			break
		}
		o.statuses = append(o.statuses, resp.StatusCode)
		if resp.Close {
			break
		}
	}
	time.Sleep(10 * time.Millisecond) // a request forwarded as the connection ended
	o.ups = f.up.forCase(id)
	return o
}

// h2 sends one HTTP/2 request as frames on stream 1 (HEADERS through
// hpack, any bytes; DATA; the last one ends the stream), then, once
// stream 1 is answered, a GET of /__end on stream 3.
func (f *diffFront) h2(t *testing.T, id int, frames []diffFrame) diffOutcome {
	f.up.setCase(id)
	var o diffOutcome
	c, err := tls.Dial("tcp", f.addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("%s: %v", f.name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(65536, nil)
	fr.WriteSettings()
	headers := func(stream uint32, fields [][2]string, end bool) {
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		for _, f := range fields {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block.Bytes(), EndHeaders: true, EndStream: end})
	}
	for i, df := range frames {
		if df.data {
			fr.WriteData(1, i == len(frames)-1, []byte(df.body))
		} else {
			headers(1, df.fields, i == len(frames)-1)
		}
	}
	sentEnd := false
	for {
		fr0, err := fr.ReadFrame()
		if err != nil {
			break
		}
		switch fr0 := fr0.(type) {
		case *http2.SettingsFrame:
			if !fr0.IsAck() {
				fr.WriteSettingsAck()
			}
			continue
		case *http2.MetaHeadersFrame:
			st, _ := strconv.Atoi(fr0.PseudoValue("status"))
			if st < 200 {
				continue
			}
			if fr0.StreamID == 3 {
				o.open = true
			} else {
				o.statuses = append(o.statuses, st)
			}
		case *http2.RSTStreamFrame:
			if fr0.StreamID == 1 {
				o.statuses = append(o.statuses, -1)
			}
		case *http2.GoAwayFrame:
			o.statuses = append(o.statuses, -2)
		default:
			continue
		}
		if o.open || len(o.statuses) > 0 && o.statuses[len(o.statuses)-1] == -2 {
			break
		}
		if !sentEnd && len(o.statuses) > 0 {
			sentEnd = true
			headers(3, [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/__end"}}, true)
		}
	}
	time.Sleep(10 * time.Millisecond)
	o.ups = f.up.forCase(id)
	return o
}

// diffPQEdgeConfig routes /app/ and / to two pools, as diffNginxConfig.
func diffPQEdgeConfig(up *diffUpstream) string {
	return baseConfig + `
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/app/"
pool = "app"
[[site.route]]
path = "/"
pool = "other"
[[pool]]
name = "app"
upstreams = ["` + up.addrs["app"] + `"]
[pool.health]
eject_after = 2
eject_for = "1h"
[[pool]]
name = "other"
upstreams = ["` + up.addrs["other"] + `"]
[pool.health]
eject_after = 2
eject_for = "1h"
`
}

// diffNginxConfig is nginx's config as an operator would write it in front
// of the same two pools: keep-alive upstreams, Host passed on, defaults
// otherwise (underscores_in_headers off, ignore_invalid_headers on,
// merge_slashes on, no Upgrade passed).
func diffNginxConfig(inside, listen string, up *diffUpstream) string {
	return fmt.Sprintf(`daemon off;
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s;
    proxy_temp_path %[1]s;
    fastcgi_temp_path %[1]s;
    uwsgi_temp_path %[1]s;
    scgi_temp_path %[1]s;
    upstream app { server %[3]s; keepalive 8; }
    upstream other { server %[4]s; keepalive 8; }
    server {
        listen %[2]s ssl;
        http2 on;
        server_name localhost;
        ssl_certificate %[1]s/cert.pem;
        ssl_certificate_key %[1]s/key.pem;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        location /app/ { proxy_pass http://app; }
        location / { proxy_pass http://other; }
    }
}
`, inside, listen, up.addrs["app"], up.addrs["other"])
}

// startDiffNginx runs nginx from the trixie peer root in front of up.
func startDiffNginx(t *testing.T, up *diffUpstream) string {
	root := peers.Trixie(t)
	host, inside := root.TempDir(t)
	certPEM, keyPEM := selfSigned(t)
	os.WriteFile(filepath.Join(host, "cert.pem"), certPEM, 0o600)
	os.WriteFile(filepath.Join(host, "key.pem"), keyPEM, 0o600)
	listen := freeport.MustAddr(t)
	if err := os.WriteFile(filepath.Join(host, "nginx.conf"), []byte(diffNginxConfig(inside, listen, up)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := peers.Start(t, root.Command(ctx, "/usr/sbin/nginx", "-c", inside+"/nginx.conf"), "nginx")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			return listen
		}
		select {
		case err := <-done:
			log, _ := os.ReadFile(filepath.Join(host, "error.log"))
			t.Fatalf("nginx exited: %v: %s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %s", listen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// selfSigned makes an ECDSA certificate for localhost (the client does not
// verify it: the trial is about HTTP).
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// diffRef is a reference front and its judge: why a case it refuses may
// be forwarded by pqedge, or "".
type diffRef struct {
	*diffFront
	why  func(caseName string) string
	list string // where the judged cases are listed
	// counted outcomes
	same, stricter, differ int
}

// send sends c to f, over HTTP/1.1 or HTTP/2.
func (f *diffFront) send(t *testing.T, id int, c diffCase) diffOutcome {
	if c.h2 {
		return f.h2(t, id, c.frames())
	}
	return f.h1(t, id, c.raw)
}

// TestDifferentialAgainstNginx runs every generated case (diffCases)
// through pqedge, nginx and HAProxy 3.0 (the second reference); see the
// comment at the top of this file. A case both references refuse and
// pqedge forwards is the strongest sign of a fault.
// PQEDGE_DIFF_KIND=N runs only the cases of issue #12's kind N,
// PQEDGE_DIFF_CASE=TEXT only those whose name contains TEXT.
func TestDifferentialAgainstNginx(t *testing.T) {
	up := newDiffUpstream(t)
	refs := []*diffRef{
		{diffFront: &diffFront{name: "nginx", addr: startDiffNginx(t, up), up: up}, why: diffAcceptedWhy, list: "diffAccepted"},
		{diffFront: &diffFront{name: "haproxy", addr: startDiffHAProxy(t, up), up: up}, why: haproxyAcceptedWhy, list: "haproxyAccepted"},
	}
	ts := startServer(t, diffPQEdgeConfig(up))
	pq := &diffFront{name: "pqedge", addr: ts.addr("https"), up: up}
	only, named := os.Getenv("PQEDGE_DIFF_KIND"), os.Getenv("PQEDGE_DIFF_CASE")
	cases := diffCases()
	for i, c := range cases {
		if only != "" && only != strconv.Itoa(c.kind) || !strings.Contains(c.name, named) {
			continue
		}
		id := (len(refs)+1)*i + 1
		p := pq.send(t, id, c)
		outs := fmt.Sprintf("\n\tpqedge  %v", p)
		ns := make([]diffOutcome, len(refs))
		var refusing []string
		for j, r := range refs {
			ns[j] = r.send(t, id+1+j, c)
			outs += fmt.Sprintf("\n\t%-7s %v", r.name, ns[j])
			if len(ns[j].forwarded()) == 0 && refused(ns[j].first()) {
				refusing = append(refusing, r.name)
			}
		}
		name := fmt.Sprintf("kind %d %s", c.kind, c.name)
		for _, err := range diffInvariants(c, p) {
			t.Errorf("%s: %v%s", name, err, outs)
		}
		for j, r := range refs {
			n := ns[j]
			switch {
			case diffSame(p, n):
				r.same++
			case len(p.forwarded()) > 0 && len(n.forwarded()) == 0 && refused(n.first()):
				r.differ++
				if why := r.why(c.name); why != "" {
					t.Logf("%s: pqedge forwards what %s refuses (%s)%s", name, r.name, why, outs)
					continue
				}
				both := ""
				if len(refusing) == len(refs) {
					both = " (every reference refuses it)"
				}
				t.Errorf("%s: pqedge forwards what %s refuses%s; judge it by the RFCs and fix it or list it in %s%s", name, r.name, both, r.list, outs)
			case len(p.forwarded()) == 0 && refused(p.first()) && len(n.forwarded()) > 0:
				r.stricter++
				t.Logf("%s: pqedge refuses what %s forwards%s", name, r.name, outs)
			default:
				r.differ++
				t.Logf("%s: differs from %s%s", name, r.name, outs)
			}
		}
	}
	for _, r := range refs {
		t.Logf("%d cases against %s: %d alike, %d refused by pqedge alone, %d otherwise different", len(cases), r.name, r.same, r.stricter, r.differ)
	}
}

func refused(status int) bool { return status >= 400 && status < 500 || status < 0 }

// diffSame: the same first answer, connection state and upstream
// requests (pool, method and decoded path), up to what the fronts add.
func diffSame(p, n diffOutcome) bool {
	if p.first() != n.first() || p.open != n.open || len(p.forwarded()) != len(n.forwarded()) {
		return false
	}
	for i, s := range p.forwarded() {
		m := n.forwarded()[i]
		if s.pool != m.pool || s.body != m.body || strings.Fields(s.line)[0] != strings.Fields(m.line)[0] {
			return false
		}
	}
	return true
}
