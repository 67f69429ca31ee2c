package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
)

// The HTTP/3 differential trial (issue #12, kinds 1, 2, 5 and 6): every
// HTTP/2 case of the nginx trial (diffCases) goes to one pqedge over
// HTTP/2 and over HTTP/3 as the same frames on a request stream (the
// QPACK field sections encoded here, any bytes), in front of one
// diffUpstream. pqedge's own HTTP/2 is the reference: a case refused
// over HTTP/2 and forwarded over HTTP/3 is a fault unless h3Accepted
// says why the RFCs differ; diffInvariants holds over HTTP/3 as over the
// others. Every other difference is logged with -v.

// h3 sends frames on one request stream of a new HTTP/3 connection to
// addr (its control stream and SETTINGS first, RFC 9114 section 6.2.1),
// ends the stream, and reads the answers; once the stream is answered or
// reset, a GET of /__end on a second stream tells whether the connection
// stayed open.
func (f *diffFront) h3(t *testing.T, addr string, id int, frames []diffFrame) diffOutcome {
	f.up.setCase(id)
	var o diffOutcome
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"h3"}}, &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("%s over HTTP/3: %v", f.name, err)
	}
	defer conn.CloseWithError(0, "")
	ctl, err := conn.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	ctl.Write(append([]byte{0x00}, h3Frame(0x04, nil)...))
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var req []byte
	for _, df := range frames {
		if df.data {
			req = append(req, h3Frame(0x00, []byte(df.body))...)
		} else {
			req = append(req, h3Frame(0x01, qpackBlock(df.fields))...)
		}
	}
	str.SetDeadline(time.Now().Add(3 * time.Second))
	str.Write(req)
	str.Close()
	status, err := readH3Response(str)
	switch {
	case err == nil:
		o.statuses = append(o.statuses, status)
	case errors.As(err, new(*quic.StreamError)):
		o.statuses = append(o.statuses, -1)
		o.end = h3ErrorName(err)
	case conn.Context().Err() != nil:
		o.statuses = append(o.statuses, -2)
		o.end = h3ErrorName(context.Cause(conn.Context()))
	default:
		o.end = diffEndOf(err)
	}
	if conn.Context().Err() == nil {
		if end, err := conn.OpenStreamSync(ctx); err == nil {
			end.SetDeadline(time.Now().Add(3 * time.Second))
			end.Write(h3Frame(0x01, qpackBlock([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/__end"}})))
			end.Close()
			st, err := readH3Response(end)
			o.open = err == nil && st == 200
		}
	}
	time.Sleep(10 * time.Millisecond) // a request forwarded as the stream ended
	o.ups = f.up.forCase(id)
	return o
}

// qpackBlock is a QPACK field section of fields, names and values as
// given (no dynamic table).
func qpackBlock(fields [][2]string) []byte {
	var b bytes.Buffer
	enc := qpack.NewEncoder(&b)
	for _, f := range fields {
		enc.WriteField(qpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return b.Bytes()
}

// readH3Response reads a request stream's frames to its first final
// response's HEADERS and returns the :status; interim responses are
// skipped. The error is the stream's (a *quic.StreamError for a reset).
func readH3Response(str *quic.Stream) (int, error) {
	br := bufio.NewReader(str)
	dec := qpack.NewDecoder()
	for {
		typ, err := quicvarint.Read(br)
		if err != nil {
			return 0, err
		}
		n, err := quicvarint.Read(br)
		if err != nil {
			return 0, err
		}
		if n > 1<<20 {
			return 0, fmt.Errorf("a frame of %d bytes", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return 0, err
		}
		if typ != 0x01 {
			continue
		}
		next := dec.Decode(payload)
		status := 0
		for {
			hf, err := next()
			if err != nil {
				break
			}
			if hf.Name == ":status" {
				status, _ = strconv.Atoi(hf.Value)
			}
		}
		if status >= 200 {
			return status, nil
		}
	}
}

// h3ErrorName names the HTTP/3 error code of a stream reset or a closed
// connection.
func h3ErrorName(err error) string {
	if se, ok := errors.AsType[*quic.StreamError](err); ok {
		return "reset " + http3.ErrCode(se.ErrorCode).String()
	}
	if ae, ok := errors.AsType[*quic.ApplicationError](err); ok {
		return "closed " + http3.ErrCode(ae.ErrorCode).String()
	}
	return err.Error()
}

// h3Accepted are the cases forwarded over HTTP/3 and refused over
// HTTP/2, judged right by the RFCs (the reason given).
var h3Accepted = map[string]string{
	"h2 pseudo :scheme HTTPS": "RFC 3986 section 3.1: a scheme compares without case, and RFC 9114 section 4.3.1 asks no lower case of :scheme's value (Go's HTTP/2 server takes only \"https\" and \"http\")",
}

// TestDifferentialHTTP3 runs every HTTP/2 case of the differential trial
// through pqedge over HTTP/2 and over HTTP/3; see the comment at the top
// of this file. PQEDGE_DIFF_KIND and PQEDGE_DIFF_CASE select cases as in
// TestDifferentialAgainstNginx.
func TestDifferentialHTTP3(t *testing.T) {
	up := newDiffUpstream(t)
	cfg := strings.Replace(diffPQEdgeConfig(up), `address = "127.0.0.1:0"`, "address = \"127.0.0.1:0\"\nhttp3 = true", 1)
	ts := startServer(t, cfg)
	pq := &diffFront{name: "pqedge", addr: ts.addr("https"), up: up}
	h3addr := ts.srv.QUICAddr("https").String()
	only, named := os.Getenv("PQEDGE_DIFF_KIND"), os.Getenv("PQEDGE_DIFF_CASE")
	var n, same, differ, forwarded3 int
	for i, c := range diffCases() {
		if !c.h2 || only != "" && only != strconv.Itoa(c.kind) || !strings.Contains(c.name, named) {
			continue
		}
		n++
		id := 2*i + 1
		p2, p3 := pq.h2(t, id, c.frames()), pq.h3(t, h3addr, id+1, c.frames())
		name := fmt.Sprintf("kind %d %s", c.kind, c.name)
		if len(p3.forwarded()) > 0 {
			forwarded3++
		}
		for _, err := range diffInvariants(c, p3) {
			t.Errorf("%s over HTTP/3: %v\n\tHTTP/2 %v\n\tHTTP/3 %v", name, err, p2, p3)
		}
		switch {
		case diffSame(p2, p3):
			same++
		case len(p3.forwarded()) > 0 && len(p2.forwarded()) == 0 && refused(p2.first()):
			if why, ok := h3Accepted[c.name]; ok {
				t.Logf("%s: forwarded over HTTP/3, refused over HTTP/2 (%s)\n\tHTTP/2 %v\n\tHTTP/3 %v", name, why, p2, p3)
			} else {
				t.Errorf("%s: forwarded over HTTP/3, refused over HTTP/2; judge it by the RFCs and fix it or list it in h3Accepted\n\tHTTP/2 %v\n\tHTTP/3 %v", name, p2, p3)
			}
			differ++
		default:
			differ++
			t.Logf("%s: differ\n\tHTTP/2 %v\n\tHTTP/3 %v", name, p2, p3)
		}
	}
	t.Logf("%d cases: %d alike over HTTP/2 and HTTP/3, %d different; %d forwarded over HTTP/3", n, same, differ, forwarded3)
}
