package server

import (
	"strconv"
	"strings"
	"testing"
)

// diffStreamCases are the request streams HTTP/2 and HTTP/3 share that
// HTTP/1.1 cannot say: field names and pseudo-header fields RFC 9113
// section 8.2 and RFC 9114 section 4.2 and 4.3 rule out, Content-Length
// against the DATA sent (RFC 9114 section 4.1.2), frames out of order and
// trailer sections (RFC 9114 section 4.1), CONNECT and extended CONNECT
// (RFC 9114 section 4.4, RFC 9220), and :authority against Host.
func diffStreamCases() []diffCase {
	var cs []diffCase
	get := func(path string, extra ...[2]string) [][2]string {
		return append([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}}, extra...)
	}
	post := func(path string, extra ...[2]string) [][2]string {
		return append([][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}}, extra...)
	}
	add := func(kind int, name string, frames ...diffFrame) {
		cs = append(cs, diffCase{kind: kind, name: "h2 " + name, h2: true, seq: frames})
	}
	hdr := func(fields [][2]string) diffFrame { return diffFrame{fields: fields} }
	data := func(body string) diffFrame { return diffFrame{data: true, body: body} }

	// Field names: upper case, not a token, empty; connection-specific
	// fields (RFC 9114 section 4.2, RFC 9113 section 8.2.2).
	for _, f := range [][2]string{
		{"X-A", "b"}, {"Host", "localhost"}, {"Content-Length", "0"}, {"X-Forwarded-For", diffForged},
		{"connection", "close"}, {"connection", "keep-alive"}, {"keep-alive", "timeout=5"},
		{"transfer-encoding", "chunked"}, {"transfer-encoding", "identity"}, {"upgrade", "websocket"},
		{"proxy-connection", "close"}, {"te", "trailers"}, {"te", "gzip"}, {"te", "trailers, gzip"},
		{"te", "Trailers"}, {"http2-settings", "AAMAAABkAAQAAP__"}, {"x-a", "b\x00c"}, {"x-a", "b\x7fc"},
		{"x-a", "b\x01c"}, {"x-a", "b "}, {"x-a", "\tb"}, {"x-a", "b\xffc"}, {"x\x00a", "b"}, {"x\ra", "b"},
		{"x-a\xff", "b"}, {"x_a", "b"}, {"x{a}", "b"}, {"x\"a", "b"},
	} {
		add(1, "stream field "+strconv.Quote(f[0]+": "+f[1]), hdr(get("/a", f)))
	}

	// Pseudo-header fields (RFC 9114 section 4.3.1): missing, doubled,
	// out of order, unknown, empty, of a response.
	for _, p := range []struct {
		name   string
		fields [][2]string
	}{
		{"no :method", [][2]string{{":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}}},
		{"no :scheme", [][2]string{{":method", "GET"}, {":authority", "localhost"}, {":path", "/a"}}},
		{"no :authority, a host", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/a"}, {"host", "localhost"}}},
		{"no :authority, no host", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/a"}}},
		{"two :method", get("/a", [2]string{":method", "POST"})},
		{"two :scheme", get("/a", [2]string{":scheme", "http"})},
		{"two :authority", get("/a", [2]string{":authority", "other.test"})},
		{"two :path, the second /app", get("/a", [2]string{":path", "/app/x"})},
		{"two :path, the first /app", get("/app/x", [2]string{":path", "/a"})},
		{"two identical :path", get("/app/x", [2]string{":path", "/app/x"})},
		{":path after a field", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {"x-a", "b"}, {":path", "/app/x"}}},
		{":status in a request", get("/a", [2]string{":status", "200"})},
		{"an unknown pseudo-header", get("/a", [2]string{":foo", "bar"})},
		{":protocol without CONNECT", get("/a", [2]string{":protocol", "websocket"})},
		{"an empty :path", get("")},
		{"an empty :method", [][2]string{{":method", ""}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}}},
		{"an empty :scheme", [][2]string{{":method", "GET"}, {":scheme", ""}, {":authority", "localhost"}, {":path", "/a"}}},
		{":scheme HTTPS", [][2]string{{":method", "GET"}, {":scheme", "HTTPS"}, {":authority", "localhost"}, {":path", "/a"}}},
		{":scheme foo", [][2]string{{":method", "GET"}, {":scheme", "foo"}, {":authority", "localhost"}, {":path", "/a"}}},
		{":method with a space", [][2]string{{":method", "GET /x"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}}},
		{":method TRACE", [][2]string{{":method", "TRACE"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}}},
		{":path *, OPTIONS", [][2]string{{":method", "OPTIONS"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "*"}}},
		{":path *, GET", get("*")},
		{":path absolute", get("https://localhost/app/x")},
		{":path absolute of another host", get("https://other.test/app/x")},
		{":path with a fragment", get("/app/x#/../../secret")},
		{":path of one #", get("#")},
		{":path with a query only", get("?x=1")},
		{":path with DEL", get("/app/x\x7f")},
		{":path with a control byte", get("/app/x\x01")},
		{":path with CR", get("/app/x\r")},
		{":path with LF and a request", get("/app/x\nGET /smuggled HTTP/1.1")},
		{":path with a space and a version", get("/app/x HTTP/1.1\r\nHost: other.test")},
		{":authority with a path", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost/app"}, {":path", "/a"}}},
		{":authority with a space", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "local host"}, {":path", "/a"}}},
		{":authority of another host", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "other.test"}, {":path", "/a"}}},
		{":authority with a bad port", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost:x"}, {":path", "/a"}}},
		{"host equal to :authority", get("/a", [2]string{"host", "localhost"})},
		{"host with a port beside :authority", get("/a", [2]string{"host", "localhost:443"})},
		{"two hosts", get("/a", [2]string{"host", "localhost"}, [2]string{"host", "other.test"})},
		{"two hosts, no :authority", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/a"}, {"host", "localhost"}, {"host", "other.test"}}},
	} {
		add(1, "pseudo "+p.name, hdr(p.fields))
	}

	// Content-Length against the DATA sent (RFC 9114 section 4.1.2,
	// RFC 9113 section 8.1.1: malformed either way).
	for _, b := range []struct {
		name   string
		length string
		parts  []string
	}{
		{"5 with 5", "5", []string{"hello"}},
		{"5 with 3", "5", []string{"hel"}},
		{"5 with 7", "5", []string{"hello!!"}},
		{"5 with 3 then 4", "5", []string{"hel", "lo!!"}},
		{"5 with none", "5", nil},
		{"0 with 5", "0", []string{"hello"}},
		{"5 with 5 in five frames", "5", []string{"h", "e", "l", "l", "o"}},
		{"5 with 5 and an empty frame", "5", []string{"hello", ""}},
		{"05", "05", []string{"hello"}},
		{"5 and 5", "5\x005", []string{"hello"}}, // two fields, below
		{"5 and 6", "5\x006", []string{"hello"}},
		{"-1", "-1", []string{"hello"}},
		{"an empty one", "", []string{"hello"}},
	} {
		fields := post("/a")
		for _, v := range strings.Split(b.length, "\x00") {
			fields = append(fields, [2]string{"content-length", v})
		}
		frames := []diffFrame{hdr(fields)}
		for _, p := range b.parts {
			frames = append(frames, data(p))
		}
		add(1, "content-length "+b.name, frames...)
	}
	add(1, "GET with content-length and a body", hdr(get("/a", [2]string{"content-length", "5"})), data("hello"))
	add(1, "HEAD with a body", hdr([][2]string{{":method", "HEAD"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}}), data("hello"))

	// Frames out of order and trailer sections (RFC 9114 section 4.1:
	// DATA before HEADERS and frames after the trailers are
	// H3_FRAME_UNEXPECTED; a trailer section with pseudo-header fields
	// is malformed, section 4.3).
	add(1, "DATA before HEADERS", data("hello"), hdr(post("/a")))
	add(1, "DATA alone", data("hello"))
	for _, tr := range [][][2]string{
		{{"x-t", "1"}},
		{{":path", "/app/x"}},
		{{":method", "GET"}},
		{{":status", "200"}},
		{{"x-forwarded-for", diffForged}},
		{{"x_forwarded_for", diffForged}},
		{{"pqedge-tls-pq", diffForged}},
		{{"content-length", "9"}},
		{{"transfer-encoding", "chunked"}},
		{{"host", "other.test"}},
		{{"connection", "close"}},
		{{"X-T", "1"}},
		{{"te", "gzip"}},
		{{"x-t", "a\x00b"}},
	} {
		name := "trailers " + strconv.Quote(tr[0][0]+": "+tr[0][1])
		add(1, name, hdr(post("/a", [2]string{"content-length", "5"})), data("hello"), hdr(tr))
		// Without a length the body goes upstream chunked, and the
		// trailer section with it.
		add(1, name+" without content-length", hdr(post("/a", [2]string{"trailer", tr[0][0]})), data("hello"), hdr(tr))
	}
	add(1, "trailers without a body", hdr(post("/a")), hdr([][2]string{{"x-t", "1"}}))
	add(1, "trailers then DATA", hdr(post("/a")), data("hel"), hdr([][2]string{{"x-t", "1"}}), data("lo"))
	add(1, "trailers twice", hdr(post("/a")), data("hello"), hdr([][2]string{{"x-t", "1"}}), hdr([][2]string{{"x-u", "2"}}))
	add(1, "an empty trailer section", hdr(post("/a")), data("hello"), hdr(nil))

	// CONNECT and extended CONNECT (kind 2): 405 or a stream error, never
	// a tunnel; only websocket is an upgrade pqedge knows.
	for _, c := range []struct {
		name   string
		fields [][2]string
	}{
		{"CONNECT", [][2]string{{":method", "CONNECT"}, {":authority", "localhost:443"}}},
		{"CONNECT to an upstream", [][2]string{{":method", "CONNECT"}, {":authority", "127.0.0.1:1"}}},
		{"CONNECT with :path", [][2]string{{":method", "CONNECT"}, {":authority", "localhost:443"}, {":path", "/app/x"}}},
		{"CONNECT with :scheme and :path", [][2]string{{":method", "CONNECT"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/app/x"}}},
		{"CONNECT without :authority", [][2]string{{":method", "CONNECT"}}},
		{"extended CONNECT connect-udp", [][2]string{{":method", "CONNECT"}, {":protocol", "connect-udp"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/app/.well-known/masque/udp/127.0.0.1/53/"}}},
		{"extended CONNECT h2c", [][2]string{{":method", "CONNECT"}, {":protocol", "h2c"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/app/x"}}},
		{"extended CONNECT foo", [][2]string{{":method", "CONNECT"}, {":protocol", "foo"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/app/x"}}},
		{"extended CONNECT without :path", [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":authority", "localhost"}}},
		{"extended CONNECT websocket to /app", [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/app/x"}, {"sec-websocket-version", "13"}}},
	} {
		add(2, "connect "+c.name, hdr(c.fields))
	}
	return cs
}

// TestDiffCaseNames: every generated case has a name of its own, the
// key PQEDGE_DIFF_CASE, diffAccepted, haproxyAccepted and h3Accepted
// pick it by, and every judged name is one of them.
func TestDiffCaseNames(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range diffCases() {
		if seen[c.name] {
			t.Errorf("two cases named %q", c.name)
		}
		seen[c.name] = true
	}
	for _, list := range []map[string]string{diffAccepted, haproxyAccepted, h3Accepted} {
		for name := range list {
			if !seen[name] {
				t.Errorf("%q is judged, but no case has that name", name)
			}
		}
	}
}
