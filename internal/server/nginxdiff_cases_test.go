package server

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// diffCase is one generated request of the differential trial.
type diffCase struct {
	kind int    // issue #12's kind of fault
	name string // unique
	raw  string // HTTP/1.1: the bytes sent
	// HTTP/2 (h2): the header block's fields, pseudo-header fields
	// included, and the body (one DATA frame ending the stream); or seq,
	// the request stream's frames in order (a HEADERS frame after the
	// first is a trailer section). HTTP/3's trial sends the same frames.
	h2     bool
	fields [][2]string
	body   string
	seq    []diffFrame
}

// diffFrame is one frame of a request stream: HEADERS of fields, or DATA
// of body.
type diffFrame struct {
	data   bool
	fields [][2]string
	body   string
}

// frames are c's request stream's frames, over HTTP/2 or HTTP/3.
func (c diffCase) frames() []diffFrame {
	if c.seq != nil {
		return c.seq
	}
	fs := []diffFrame{{fields: c.fields}}
	if c.body != "" {
		fs = append(fs, diffFrame{data: true, body: c.body})
	}
	return fs
}

// diffSmuggled is the request hidden in ambiguous bodies: no upstream may
// ever receive it (issue #12, kind 1).
const diffSmuggled = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"

// diffForged is the value of every client copy of a trusted header.
const diffForged = "forged"

// diffCases generates the trial's requests: combinations of request-line
// shapes, line endings, framing headers and bodies (kind 1), connection
// options and upgrades (kind 2), header names spelling trusted ones
// (kind 5) and paths (kind 6), over HTTP/1.1 and, where a header block can
// say it, HTTP/2.
func diffCases() []diffCase {
	var cs []diffCase
	add := func(kind int, name, raw string) { cs = append(cs, diffCase{kind: kind, name: name, raw: raw}) }
	add2 := func(kind int, name string, fields [][2]string, body string) {
		cs = append(cs, diffCase{kind: kind, name: "h2 " + name, h2: true, fields: fields, body: body})
	}
	h2get := func(path string, extra ...[2]string) [][2]string {
		return append([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}}, extra...)
	}

	// Kind 1: request lines, each with a Content-Length body, after an
	// optional empty line (RFC 9112 section 2.2), in three line endings.
	lines := []struct{ name, line string }{
		{"plain", "POST /a HTTP/1.1"},
		{"two spaces after the method", "POST  /a HTTP/1.1"},
		{"two spaces before the version", "POST /a  HTTP/1.1"},
		{"a tab after the method", "POST\t/a HTTP/1.1"},
		{"a trailing space", "POST /a HTTP/1.1 "},
		{"a leading space", " POST /a HTTP/1.1"},
		{"lowercase method", "post /a HTTP/1.1"},
		{"absolute-form", "POST https://localhost/a HTTP/1.1"},
		{"absolute-form of another host", "POST https://other.test/app/a HTTP/1.1"},
		{"absolute-form with http", "POST http://localhost/a HTTP/1.1"},
		{"absolute-form with userinfo", "POST https://u@localhost/a HTTP/1.1"},
		{"HTTP/1.0", "POST /a HTTP/1.0"},
		{"lowercase version", "POST /a http/1.1"},
		{"HTTP/1.2", "POST /a HTTP/1.2"},
		{"HTTP/2.0", "POST /a HTTP/2.0"},
		{"HTTP/01.1", "POST /a HTTP/01.1"},
		{"no version", "POST /a"},
		{"a 6 KiB path", "POST /a/" + strings.Repeat("x", 6<<10) + " HTTP/1.1"},
		{"a 70 KiB path", "POST /a/" + strings.Repeat("x", 70<<10) + " HTTP/1.1"},
	}
	endings := []struct{ name, eol string }{{"CRLF", "\r\n"}, {"bare LF", "\n"}, {"bare CR", "\r"}}
	for _, l := range lines {
		for _, e := range endings {
			for _, lead := range []string{"", e.eol} {
				name := fmt.Sprintf("line %s, %s", l.name, e.name)
				if lead != "" {
					name += ", after an empty line"
				}
				msg := lead + l.line + e.eol + "Host: localhost" + e.eol + "Content-Length: 5" + e.eol + e.eol + "hello"
				add(1, name, msg)
			}
		}
	}

	// Kind 1: Content-Length spellings, the body "hello".
	const post = "POST /a HTTP/1.1\r\nHost: localhost\r\n"
	for _, cl := range []string{
		"Content-Length: 5", "Content-Length: 5\r\nContent-Length: 5", "Content-Length: 5, 5",
		"Content-Length: 5,5", "Content-Length: 5\r\nContent-Length: 50", "Content-Length: 50\r\nContent-Length: 5",
		"Content-Length: +5", "Content-Length: 005", "Content-Length:5", "Content-Length:\t5\t",
		"Content-Length: 5 ", "Content-Length: 5 0", "Content-Length: -5", "Content-Length: 0x5",
		"Content-Length: 5.0", "Content-Length: 5e0", "Content-Length: ", "Content-Length: 99999999999999999999",
		"Content-Length: 18446744073709551621", "Content_Length: 5", "Content-Length : 5", "content-length: 5",
		"Content-Length: 5\r\n\tfolded", "Content-Length: \u0665",
	} {
		add(1, "framing "+strconv.Quote(cl), post+cl+"\r\n\r\nhello")
	}

	// Kind 1: Transfer-Encoding spellings, alone (a chunked "hello") and
	// with a Content-Length covering a last chunk and the smuggled
	// request (whoever reads it as chunked must close after it).
	for _, te := range []string{
		"chunked", "chunked ", " chunked", "\tchunked", "Chunked", "CHUNKED", "identity, chunked",
		"chunked, identity", "chunked;q=1", "chunked ; a=b", "chunked,", ",chunked", ", chunked", "gzip, chunked",
		"chunked, chunked", "x-chunked", "chunked\x0b", "\"chunked\"", "chunked\r\nTransfer-Encoding: identity",
		"identity\r\nTransfer-Encoding: chunked", "\r\n chunked",
	} {
		add(1, "framing TE "+strconv.Quote(te), post+"Transfer-Encoding: "+te+"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		body := "0\r\n\r\n" + diffSmuggled
		add(1, "framing TE "+strconv.Quote(te)+" with Content-Length", post+"Transfer-Encoding: "+te+"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		add(1, "framing Content-Length then TE "+strconv.Quote(te), post+"Content-Length: "+strconv.Itoa(len(body))+"\r\nTransfer-Encoding: "+te+"\r\n\r\n"+body)
	}
	for _, name := range []string{"Transfer_Encoding", "Transfer-Encoding ", "transfer-encoding", "TRANSFER-ENCODING", "Transfer-Encoding\t"} {
		body := "0\r\n\r\n" + diffSmuggled
		add(1, "framing "+strconv.Quote(name)+": chunked with Content-Length", post+name+": chunked\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	}
	add(1, "framing TE in HTTP/1.0", "POST /a HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

	// Kind 1: chunked bodies.
	const chunked = post + "Transfer-Encoding: chunked\r\n\r\n"
	for _, body := range []string{
		"5\r\nhello\r\n0\r\n\r\n", "5;ext=1\r\nhello\r\n0\r\n\r\n", "5;ext=\"a b\"\r\nhello\r\n0\r\n\r\n",
		"5 ;ext\r\nhello\r\n0\r\n\r\n", "5\t;ext\r\nhello\r\n0\r\n\r\n", "5;\r\nhello\r\n0\r\n\r\n", "5;=\r\nhello\r\n0\r\n\r\n",
		"005\r\nhello\r\n0\r\n\r\n", "0000000000000000000000005\r\nhello\r\n0\r\n\r\n", "0x5\r\nhello\r\n0\r\n\r\n",
		"+5\r\nhello\r\n0\r\n\r\n", "-5\r\nhello\r\n0\r\n\r\n", " 5\r\nhello\r\n0\r\n\r\n", "5 \r\nhello\r\n0\r\n\r\n",
		"ffffffffffffffff5\r\nhello\r\n0\r\n\r\n", "10000000000000005\r\nhello\r\n0\r\n\r\n", "A\r\nhellohello\r\n0\r\n\r\n",
		"a\r\nhellohello\r\n0\r\n\r\n", "5\nhello\n0\n\n", "5\r\nhello\n0\r\n\r\n", "5\rhello\r\n0\r\n\r\n",
		"5\r\nhelloXX\r\n0\r\n\r\n", "3\r\nhello\r\n0\r\n\r\n", "5\r\nhello\r\n0;x=y\r\n\r\n", "5\r\nhello\r\n00\r\n\r\n",
		"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\nhello\r\n0\r\nContent-Length: 40\r\n\r\n",
		"5\r\nhello\r\n0\r\nX-Forwarded-For: " + diffForged + "\r\n\r\n", "5\r\nhello\r\n0\r\nHost: other.test\r\n\r\n",
		"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n", "5\r\nhello\r\n0\r\n", "5\r\nhello\r\n0\r\n\n",
		"5\r\nhello\r\n\r\n0\r\n\r\n", "5\r\nhello", "5\r\nhello\r\n0\r\n\r\n" + diffSmuggled,
		"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", "5;" + strings.Repeat("e", 8<<10) + "\r\nhello\r\n0\r\n\r\n",
	} {
		add(1, "chunked "+strconv.Quote(body), chunked+body)
	}

	// Kind 1: other field lines around the framing.
	for _, f := range []struct{ name, head string }{
		{"obs-fold", "X-A: b\r\n c"}, {"obs-fold with a tab", "X-A: b\r\n\tc"}, {"a field line starting with a space", " X-A: b"},
		{"two Hosts", "Host: other.test"}, {"NUL in a value", "X-A: b\x00c"}, {"a bare CR in a value", "X-A: b\rc"},
		{"no colon", "X-A b"}, {"an empty name", ": b"}, {"a space in a name", "X A: b"}, {"DEL in a value", "X-A: b\x7fc"},
		{"a high byte in a value", "X-A: b\xffc"}, {"a 70 KiB field", "X-A: " + strings.Repeat("b", 70<<10)},
		{"Expect: 100-continue", "Expect: 100-continue"}, {"Expect: nonsense", "Expect: nonsense"},
	} {
		add(1, "field "+f.name, "POST /a HTTP/1.1\r\nHost: localhost\r\n"+f.head+"\r\nContent-Length: 5\r\n\r\nhello")
	}
	add(1, "no Host in HTTP/1.1", "GET /a HTTP/1.1\r\n\r\n")
	add(1, "no Host in HTTP/1.0", "GET /a HTTP/1.0\r\n\r\n")
	add(1, "an empty Host", "GET /a HTTP/1.1\r\nHost:\r\n\r\n")
	add(1, "GET with a body", "GET /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
	add(1, "HEAD with a chunked body", "HEAD /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	for _, te := range []string{"chunked", "chunked, gzip", "gzip"} {
		add2(1, "transfer-encoding: "+te, h2get("/a", [2]string{"transfer-encoding", te}), "")
	}
	add2(1, "content-length 5 with 7 bytes", [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}, {"content-length", "5"}}, "hello!!")
	add2(1, "content-length 5, 5", [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}, {"content-length", "5, 5"}}, "hello")
	add2(1, "content-length +5", [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}, {"content-length", "+5"}}, "hello")
	add2(1, "a value with CRLF", h2get("/a", [2]string{"x-a", "b\r\nx-forwarded-for: " + diffForged}), "")
	add2(1, "a value with a leading space", h2get("/a", [2]string{"x-a", " b"}), "")
	add2(1, "no :path", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}}, "")
	add2(1, "two :path", h2get("/a", [2]string{":path", "/app/b"}), "")
	add2(1, "a pseudo-header after a field", [][2]string{{":method", "GET"}, {":scheme", "https"}, {"x-a", "b"}, {":authority", "localhost"}, {":path", "/a"}}, "")
	add2(1, "host differing from :authority", h2get("/a", [2]string{"host", "other.test"}), "")
	for _, a := range []string{"u@localhost", "u:p@localhost", "localhost@other.test", "localhost:443", "LOCALHOST", "localhost.", ""} {
		add2(1, ":authority "+strconv.Quote(a), [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", a}, {":path", "/a"}}, "")
	}
	for _, f := range [][2]string{{":scheme", "http"}, {":scheme", "javascript"}, {":method", "GET /smuggled HTTP/1.1\r\nX:"}, {":method", "get"}, {"x a", "b"}, {"x:a", "b"}, {"x-a", "b\nc"}, {"", "b"}} {
		fields := [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}}
		replaced := false
		for i := range fields {
			if fields[i][0] == f[0] {
				fields[i][1], replaced = f[1], true
			}
		}
		if !replaced {
			fields = append(fields, f)
		}
		add2(1, "field "+strconv.Quote(f[0]+": "+f[1]), fields, "")
	}

	// Kind 2: connection options and protocol switches.
	const get = "GET /a HTTP/1.1\r\nHost: localhost\r\n"
	ws := "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for _, u := range []struct{ name, head string }{
		{"h2c", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"},
		{"h2c without HTTP2-Settings", "Connection: Upgrade\r\nUpgrade: h2c\r\n"},
		{"H2C", "Connection: Upgrade\r\nUpgrade: H2C\r\n"},
		{"websocket", "Connection: Upgrade\r\nUpgrade: websocket\r\n" + ws},
		{"WebSocket, lowercase upgrade", "Connection: upgrade\r\nUpgrade: WebSocket\r\n" + ws},
		{"websocket then h2c", "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n" + ws},
		{"h2c then websocket", "Connection: Upgrade\r\nUpgrade: h2c, websocket\r\n" + ws},
		{"websocket/13", "Connection: Upgrade\r\nUpgrade: websocket/13\r\n" + ws},
		{"an unknown token", "Connection: Upgrade\r\nUpgrade: foo/1\r\n"},
		{"TLS/1.2", "Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n"},
		{"Upgrade without Connection", "Upgrade: h2c\r\n"},
		{"Connection: keep-alive, Upgrade", "Connection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n"},
		{"Connection in two lines", "Connection: keep-alive\r\nConnection: Upgrade\r\nUpgrade: foo\r\n"},
		{"Connection naming a field", "Connection: X-Secret\r\nX-Secret: 1\r\n"},
		{"Connection naming X-Forwarded-For", "Connection: X-Forwarded-For\r\n"},
		{"Connection naming Host", "Connection: Host\r\n"},
		{"Connection naming Content-Length", "Connection: Content-Length\r\n"},
		{"Connection: close", "Connection: close\r\n"},
		{"Keep-Alive", "Keep-Alive: timeout=999\r\n"},
		{"Proxy-Connection", "Proxy-Connection: keep-alive\r\n"},
		{"TE: trailers", "TE: trailers\r\n"},
		{"TE: gzip", "TE: gzip\r\n"},
		{"Upgrade in HTTP/1.0", ""}, // below
	} {
		if u.name == "Upgrade in HTTP/1.0" {
			add(2, "upgrade "+u.name, "GET /a HTTP/1.0\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
			continue
		}
		add(2, "upgrade "+u.name, get+u.head+"\r\n")
	}
	add(2, "CONNECT", "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n")
	add(2, "CONNECT to an origin-form", "CONNECT /a HTTP/1.1\r\nHost: localhost\r\n\r\n")
	add(2, "PRI", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	for _, f := range [][2]string{{"connection", "upgrade"}, {"upgrade", "h2c"}, {"te", "trailers"}, {"te", "gzip"}, {"keep-alive", "1"}, {"proxy-connection", "x"}, {"http2-settings", "AAMAAABkAAQAAP__"}} {
		add2(2, f[0]+": "+f[1], h2get("/a", f), "")
	}
	add2(2, "CONNECT", [][2]string{{":method", "CONNECT"}, {":authority", "localhost:443"}}, "")
	add2(2, "extended CONNECT websocket", [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}}, "")

	// Kind 5: client copies of trusted headers in every spelling.
	for _, n := range []string{
		"X-Forwarded-For", "x-forwarded-for", "X-FORWARDED-FOR", "X_Forwarded_For", "X-Forwarded_For",
		"X.Forwarded.For", "X~Forwarded~For", "X+Forwarded+For", "X[Forwarded]For", "X-Forwarded-For\t",
		"X-Forwarded-For ", "X-Forwarded-For\x00", "X-Forwarded-For\xff", "X-Real-IP", "X_Real_IP", "x-real_ip",
		"Forwarded", "FORWARDED", "X-Forwarded-Host", "X_Forwarded_Host", "X-Forwarded-Proto", "X_Forwarded_Proto",
		"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Original-URL", "X_Original_URL",
		"X-Rewrite-URL", "PQEdge-TLS-PQ", "PQEdge_TLS_PQ", "pqedge_tls_signature", "PQEDGE-TLS-GROUP",
		"PQEdge-Anything", "PQEdge.TLS.PQ", "PQEdge-TLS-PQ\x7f",
	} {
		add(5, "header "+strconv.Quote(n), get+n+": "+diffForged+"\r\n\r\n")
	}
	add(5, "header X-Forwarded-For twice", get+"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: "+diffForged+"\r\n\r\n")
	add(5, "header X-Forwarded-For folded onto another", get+"X-A: b\r\n X-Forwarded-For: "+diffForged+"\r\n\r\n")
	add(5, "header X-Forwarded-For as the first line folded", "GET /a HTTP/1.1\r\n X-Forwarded-For: "+diffForged+"\r\nHost: localhost\r\n\r\n")
	for _, n := range []string{"x-forwarded-for", "x_forwarded_for", "x.forwarded.for", "x-real-ip", "x_real_ip", "forwarded", "pqedge-tls-pq", "pqedge_tls_pq", "x-original-url", "X-Forwarded-For", "x-forwarded-for ", "x-forwarded-for\x00"} {
		add2(5, "header "+strconv.Quote(n), h2get("/a", [2]string{n, diffForged}), "")
	}

	// Kind 6: paths, over HTTP/1.1 and HTTP/2.
	for _, p := range []string{
		"/app/x", "/app/../secret", "/app/%2e%2e/secret", "/app/%2E%2E/secret", "/app/..%2fsecret", "/app/..%2Fsecret",
		"/app/.%2e/secret", "/app/%2e./secret", "/app/./x", "/app/%2e/x", "/x/../app/y", "/x/%2e%2e/app/y", "/x/..%2fapp/y",
		"/%61pp/x", "/ap%70/x", "/%61%70%70/x", "/app%2fx", "/app%2Fx", "/app%2f..%2fx", "/app\\x", "/app/..\\secret",
		"/x\\..\\app\\y", "/app;/x", "/app/..;/secret", "/app/x;jsessionid=1", "/app/%00", "/app/%2500",
		"/app/%252e%252e/secret", "/app/%c0%ae%c0%ae/secret", "/app/%c0%af", "/app/%e0%80%ae%e0%80%ae/x", "/app/x#frag",
		"/app/#/../../secret", "//app/x", "/./app/x", "/app//../x", "/app/x?q=../../secret", "/app/x?/../..", "/..",
		"/../app/x", "/app/...", "/app/.../x", "/app/%2e%2e", "/app/..", "/app/.", "/app", "/app/x/..", "/app/x/../..",
		"app/x", "%2fapp/x", "/app/%zz", "/app/%", "/app/%2", "/app/%e2%80%ae", "/APP/x", "/app.x", "/app%20/x",
		"/app/x%3f/../../secret", "/app/x%23/../../secret", "/%2e%2e/app/x", "/x/./../app/y", "/x/.%2e/app/y",
		"/x/%2e%2e%2fapp/y", "/app/%u002e%u002e/secret", "/app/..%00/secret", "/app/..%5csecret", "/app/..%5Csecret",
	} {
		add(6, "path "+strconv.Quote(p), "GET "+p+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
		add2(6, "path "+strconv.Quote(p), h2get(p), "")
	}
	for _, p := range []string{"/app/\xffx", "/app/ x", "/app/\tx", "/app/x\x00"} {
		add(6, "path "+strconv.Quote(p), "GET "+p+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
		add2(6, "path "+strconv.Quote(p), h2get(p), "")
	}
	return append(cs, diffStreamCases()...)
}

// diffAccepted are the cases where pqedge forwards a request nginx
// refuses, judged right by the RFCs (the reason given).
var diffAccepted = map[string]string{
	"line lowercase method, CRLF":                      "RFC 9110 section 9.1: a method is any token, case-sensitive; \"post\" is another method than POST, and goes upstream as it came (nginx takes only upper-case letters)",
	`framing "Content-Length: 5\r\nContent-Length: 5"`: "RFC 9110 section 8.6: identical Content-Length lines may be taken as one",
	`framing "Content-Length:\t5\t"`:                   "RFC 9110 section 5.6.3: a tab is OWS around a field value",
	`h2 field ":method: get"`:                          "RFC 9110 section 9.1, as over HTTP/1.1: \"get\" is a method of its own",
	`h2 path "/app/ x"`:                                "a :path is one field value (RFC 9113 section 8.2.1 allows an inner space); the space is percent-encoded before routing, and the route and the upstream see one path, /app/%20x",
	"h2 pseudo host equal to :authority":               "RFC 9113 section 8.3.1 rules out only a host that differs from :authority (nginx takes any host beside it for a second Host)",
	"h2 pseudo host with a port beside :authority":     "RFC 9110 section 4.2.3: https's default port is no port, the same authority (nginx compares nothing, as above)",
	"h2 content-length 5 and 5":                        "RFC 9110 section 8.6: identical Content-Length values may be taken as one, as over HTTP/1.1",
}

// diffAcceptedPrefix judges, as diffAccepted, every case whose name
// starts with a key.
var diffAcceptedPrefix = map[string]string{
	"h2 trailers ":                "RFC 9113 section 8.1: a request may end with a trailer section; nginx 1.26 closes the connection on any (GOAWAY). Go's HTTP/2 server keeps only announced trailer fields (RFC 9110 section 6.5.1 rules, else a reset); the upstream sees a well-framed body and no forged field (diffInvariants)",
	"h2 an empty trailer section": "RFC 9113 section 8.1, as above",
}

// diffAcceptedWhy is why a case nginx refuses may be forwarded, or "".
func diffAcceptedWhy(name string) string {
	if why, ok := diffAccepted[name]; ok {
		return why
	}
	for prefix, why := range diffAcceptedPrefix {
		if strings.HasPrefix(name, prefix) {
			return why
		}
	}
	return ""
}

// diffInvariants checks pqedge's outcome against what issue #12 requires,
// whatever nginx did.
func diffInvariants(c diffCase, o diffOutcome) []error {
	var errs []error
	for _, st := range o.statuses {
		if st == 502 || st == 503 || st == 504 {
			// The upstream always answers: a client's error blamed
			// on it (kind 3).
			errs = append(errs, fmt.Errorf("answered %d", st))
		}
	}
	for _, s := range o.ups {
		if strings.Contains(s.target(), "smuggled") {
			errs = append(errs, fmt.Errorf("the smuggled request reached the upstream (kind 1)"))
		}
		if strings.HasPrefix(s.line, "CONNECT ") || strings.HasPrefix(s.line, "PRI ") {
			errs = append(errs, fmt.Errorf("forwarded %q (kind 2)", s.line))
		}
		for _, v := range s.field("Upgrade") {
			for _, tok := range strings.Split(v, ",") {
				if !strings.EqualFold(strings.TrimSpace(tok), "websocket") {
					errs = append(errs, fmt.Errorf("forwarded Upgrade: %s (kind 2)", v))
				}
			}
		}
		if len(s.field("HTTP2-Settings")) > 0 {
			errs = append(errs, fmt.Errorf("forwarded HTTP2-Settings (kind 2)"))
		}
		for _, f := range s.fields {
			name := f[0]
			if name == "trailer" { // a trailer line, as readDiffRequest keeps it
				name, _, _ = strings.Cut(f[1], ":")
			}
			if strings.Contains(f[1], diffForged) && trustedSpelling(name) {
				errs = append(errs, fmt.Errorf("forwarded the client's %q: %q (kind 5)", f[0], f[1]))
			}
		}
		if xff := s.field("X-Forwarded-For"); len(xff) != 1 || xff[0] != "127.0.0.1" {
			errs = append(errs, fmt.Errorf("X-Forwarded-For %q, want only the client's address (kind 5)", xff))
		}
		if err := routedAsForwarded(s); err != nil {
			errs = append(errs, err)
		}
	}
	if c.kind == 1 && !c.h2 && o.open && refused(o.first()) {
		errs = append(errs, fmt.Errorf("the connection stayed open after %d (kind 1: RFC 9112 section 6.3 leaves the rest unframed)", o.first()))
	}
	return errs
}

// trustedSpelling reports whether a field name reaches a CGI, WSGI, PHP or
// Rack application as one of the names pqedge sets (every byte other than
// a letter or digit folds to "_" in PHP's $_SERVER).
func trustedSpelling(name string) bool {
	var b strings.Builder
	for _, c := range strings.ToLower(strings.TrimSpace(name)) {
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	n := b.String()
	return strings.HasPrefix(n, "x-forwarded-") || strings.HasPrefix(n, "pqedge-") ||
		n == "x-real-ip" || n == "forwarded" || n == "x-original-url" || n == "x-rewrite-url"
}

// routedAsForwarded: the path an upstream sees, once it percent-decodes it
// and removes dot-segments (RFC 3986 section 5.2.4), falls under the route
// the request went through (kind 6); a dot-segment left in it is one the
// upstream may resolve differently.
func routedAsForwarded(s diffSeen) error {
	target, _, _ := strings.Cut(s.target(), "?")
	if strings.HasPrefix(target, "/__end") {
		return nil
	}
	decoded, err := url.PathUnescape(target)
	if err != nil {
		return fmt.Errorf("forwarded %q, not a valid path (kind 6)", target)
	}
	for _, seg := range strings.Split(strings.ReplaceAll(decoded, "\\", "/"), "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("forwarded %q, with a dot-segment once decoded (kind 6)", target)
		}
	}
	// Slashes are not merged: "//app/x" is not "/app/x" (RFC 3986
	// section 3.3), though nginx's merge_slashes makes it so.
	if strings.HasPrefix(decoded, "/app/") != (s.pool == "app") {
		return fmt.Errorf("forwarded %q (%q once decoded) to pool %s (kind 6)", target, decoded, s.pool)
	}
	return nil
}
