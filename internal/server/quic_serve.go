package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
)

// pqedge accepts an HTTP/3 connection's streams itself, where
// http3.Server.ServeQUICConn would, and hands each to quic-go's
// RawServerConn only once it is worth serving:
//
//	request stream  its first HEADERS frame must arrive whole within
//	                timeouts.read_header (awaitHeaders), as net/http
//	                bounds an HTTP/1.1 request's header section; one that
//	                does not, or that ends before it, is reset with
//	                H3_REQUEST_INCOMPLETE and counted in the connection's
//	                h3Budget. Its field section must pass
//	                checkH3RequestFields (what HTTP/2 refuses and quic-go
//	                does not), else H3_MESSAGE_ERROR, counted. The
//	                handler lifts the deadline (quicIdleHandler) before
//	                the proxy sets the body's.
//	uni stream      its type must arrive within timeouts.read_header; a
//	                reserved or unknown type (RFC 9114 Section 6.2.3),
//	                or none, is counted in the budget.
//	drain           GOAWAY with the largest stream ID, then, after
//	                h3DrainLinger, with the first request stream not
//	                served (RFC 9114 Section 5.2), later ones reset with
//	                H3_REQUEST_REJECTED, the connection left to its client
//	                or closed at the drain's deadline.
//
// quic-go keeps the parts of HTTP/3 this does not: SETTINGS on the
// control stream, QPACK, the requests themselves.

// Reasons of pqedge_http3_abuse_total counted before a request exists.
const (
	// h3AbuseHeaderTimeout: request streams whose HEADERS frame was not
	// whole within timeouts.read_header (a trickled header block).
	h3AbuseHeaderTimeout = "header_timeouts"
	// h3AbuseNoRequest: request streams the client reset or ended
	// before their HEADERS frame was whole: no request, all cost.
	h3AbuseNoRequest = "streams_without_request"
	// h3AbuseUnknownUni: unidirectional streams of a reserved or unknown
	// type, or that ended or stalled before their type (RFC 9114
	// Section 6.2: the receiver ignores them; each still costs a stream).
	h3AbuseUnknownUni = "unknown_uni_streams"
)

// HTTP/3 stream and frame types pqedge reads before quic-go does (RFC
// 9114 Sections 6.2 and 7.2).
const (
	h3FrameHeaders = 0x01
	h3FrameGoAway  = 0x07
	h3UniKnownMax  = 0x03 // control, push, QPACK encoder, QPACK decoder
)

// h3Conn is one HTTP/3 connection in pqedge's accept loops.
type h3Conn struct {
	q          *quicListener
	conn       *quic.Conn
	raw        *http3.RawServerConn
	ctrl       *quic.SendStream // the control stream (GOAWAY); nil if not found
	budget     *h3Budget
	readHeader time.Duration
	wg         sync.WaitGroup // the uni loop and every stream's goroutine
}

// serve runs conn's HTTP/3 until it ends and its streams' handlers have
// returned.
func (q *quicListener) serve(conn *quic.Conn) {
	// NewRawServerConn runs ConnContext and opens the control stream
	// with the SETTINGS frame (RFC 9114 Section 6.2.1).
	raw, err := q.h3.NewRawServerConn(conn)
	if err != nil {
		conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeInternalError), "")
		return
	}
	c := &h3Conn{q: q, conn: conn, raw: raw, ctrl: controlStreamOf(conn), readHeader: q.readHeader}
	if qc := quicConnFrom(conn.Context()); qc != nil {
		c.budget = qc.budget
	}
	c.wg.Go(c.acceptUni)
	c.acceptRequests()
	c.wg.Wait()
}

// acceptUni hands the client's unidirectional streams on once their type
// is known.
func (c *h3Conn) acceptUni() {
	for {
		str, err := c.conn.AcceptUniStream(context.Background())
		if err != nil {
			return // the connection ended
		}
		c.wg.Go(func() {
			if c.uniType(str) {
				c.raw.HandleUnidirectionalStream(str)
			}
		})
	}
}

// uniType waits up to readHeader for str's type and reports whether
// quic-go is to have the stream. One of a reserved or unknown type is
// counted in the budget and handed on (quic-go refuses it with
// H3_STREAM_CREATION_ERROR); one that ends or stalls before its type is
// counted and refused here.
func (c *h3Conn) uniType(str *quic.ReceiveStream) bool {
	str.SetReadDeadline(time.Now().Add(c.readHeader))
	defer str.SetReadDeadline(time.Time{}) // the control stream lives as long as the connection
	p := framePeeker{str: str}
	t, _, err := p.varint(0)
	if err != nil {
		str.ReleaseStreamCredit()
		str.CancelRead(quic.StreamErrorCode(http3.ErrCodeStreamCreationError))
		if c.conn.Context().Err() == nil {
			c.budget.count(h3AbuseUnknownUni, time.Now())
		}
		return false
	}
	if t > h3UniKnownMax {
		c.budget.count(h3AbuseUnknownUni, time.Now())
	}
	return true
}

// acceptRequests accepts request streams until the connection ends, and
// once a drain began rejects them, in two steps as RFC 9114 Section 5.2
// suggests: a GOAWAY naming the largest stream ID first, so the client
// opens no more requests, while those it sent before it heard are still
// served for h3DrainLinger; then a GOAWAY with the first request stream
// not served, and later ones reset with H3_REQUEST_REJECTED. With one
// step a request the client sent as the GOAWAY was on its way was
// rejected, and curl 8.14 reports that as an error instead of retrying
// it ("HTTP/3 stream 36 reset by server", 1 run in ~4 of 22 curl runs
// across 8 reloads).
func (c *h3Conn) acceptRequests() {
	var next quic.StreamID // the first stream not served: GOAWAY's
	goAway := make(chan quic.StreamID, 2)
	defer close(goAway)
	if c.ctrl != nil {
		// Writes may wait for the client's flow-control credit; they
		// return once the connection ends. One goroutine keeps the
		// frames in order.
		c.wg.Go(func() {
			for id := range goAway {
				c.ctrl.Write(goAwayFrame(id))
			}
		})
	}
	ctx, phase := c.q.grace, 0 // 0 serving, 1 lingering, 2 rejecting
	for {
		str, err := c.conn.AcceptStream(ctx)
		if err != nil {
			if c.conn.Context().Err() != nil || phase == 2 || c.q.grace.Err() == nil {
				return
			}
			phase++
			if phase == 1 {
				goAway <- h3GoAwayMax
				linger := max(2*c.conn.ConnectionStats().SmoothedRTT, h3DrainLinger)
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(c.conn.Context(), linger)
				defer cancel()
				continue
			}
			goAway <- next
			ctx = c.conn.Context()
			continue
		}
		if phase == 2 {
			str.ReleaseStreamCredit()
			str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestRejected))
			str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestRejected))
			continue
		}
		next = str.StreamID() + 4
		c.wg.Go(func() { c.request(str) })
	}
}

// h3GoAwayMax is the largest client-initiated bidirectional stream ID,
// the first GOAWAY of a drain (RFC 9114 Section 5.2: 2^62-4).
const h3GoAwayMax quic.StreamID = 1<<62 - 4

// h3DrainLinger is the least time a draining connection still serves
// requests after its first GOAWAY, for those in flight towards it; two
// smoothed round trips if that is longer.
const h3DrainLinger = 100 * time.Millisecond

// request serves one request stream once its header block is in.
func (c *h3Conn) request(str *quic.Stream) {
	// Lifted by the handler (quicIdleHandler); until then it bounds
	// quic-go's reading of the header block as well.
	str.SetReadDeadline(time.Now().Add(c.readHeader))
	maxHeader := c.q.h3.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = http.DefaultMaxHeaderBytes // as quic-go
	}
	block, err := awaitHeaders(str, maxHeader)
	if err != nil {
		// H3_REQUEST_INCOMPLETE (RFC 9114 Section 8.1): the stream
		// ended, or is cut, without a complete request; quic-go resets
		// a stream whose header block ends early with the same code.
		// Past the caps on unknown frames, H3_EXCESSIVE_LOAD (Section
		// 10.5): quic-go would read on, and serve a header block
		// checkH3RequestFields never saw.
		code := http3.ErrCodeRequestIncomplete
		if errors.Is(err, errH3SkipLimit) {
			code = http3.ErrCodeExcessiveLoad
		}
		str.ReleaseStreamCredit()
		str.CancelRead(quic.StreamErrorCode(code))
		str.CancelWrite(quic.StreamErrorCode(code))
		if c.conn.Context().Err() != nil {
			return
		}
		reason := h3AbuseNoRequest
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			reason = h3AbuseHeaderTimeout
		}
		c.budget.count(reason, time.Now())
		return
	}
	if err := checkH3RequestFields(block); err != nil {
		// Malformed (RFC 9114 Section 4.1.2): a stream error of type
		// H3_MESSAGE_ERROR, as quic-go answers what it refuses itself.
		str.ReleaseStreamCredit()
		str.CancelRead(quic.StreamErrorCode(http3.ErrCodeMessageError))
		str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeMessageError))
		c.budget.count(h3AbuseRefused, time.Now())
		return
	}
	c.raw.HandleRequestStream(str)
}

// h3SkipMax bounds the bytes of frames of reserved or unknown types
// (RFC 9114 Section 9: ignored) awaitHeaders looks past before a HEADERS
// frame, and h3SkipFramesMax their number; beyond either quic-go reads
// on, under the same deadline. Each frame looked past costs a peek of
// every byte before it (Peek starts at the stream's read offset), so the
// cap on frames keeps that to 5 x 16 peeks of at most 16 KiB: without it
// 16 KiB of 2-byte frames cost ~33,000 peeks and ~270 MB copied.
const (
	h3SkipMax       = 16 << 10
	h3SkipFramesMax = 16
)

// h3PeekStep is the first buffer awaitHeaders peeks a header block
// into; it doubles as the block arrives (quic-go reads a header block
// the same way), so a HEADERS frame's length field alone does not make
// pqedge allocate up to limits.request_header.
const h3PeekStep = 8 << 10

// peeker is what awaitHeaders and uniType read: a QUIC receive stream's
// Peek, which fills all of b from the stream's unread data, waiting for
// it, or returns what there is with io.EOF, or the stream's error.
type peeker interface {
	Peek(b []byte) (int, error)
}

// errH3SkipLimit: frames of unknown types before a request's HEADERS
// frame went past h3SkipMax bytes or h3SkipFramesMax frames.
var errH3SkipLimit = errors.New("http3: too many unknown frames before HEADERS")

// awaitHeaders waits, without consuming anything, until str holds its
// first HEADERS frame whole, skipping frames of unknown types before it
// (up to h3SkipMax bytes and h3SkipFramesMax frames, else
// errH3SkipLimit), and returns the frame's payload, the QPACK field
// section. It never waits for a byte past the end of the HEADERS frame,
// and its buffer grows with the bytes that arrived (h3PeekStep). It
// returns a nil block and no error when the first known frame is not
// HEADERS or is longer than maxHeader: quic-go refuses those itself. The
// other errors are the stream's: io.EOF or io.ErrUnexpectedEOF (FIN
// before the frame), a *quic.StreamError (reset), a deadline (a
// net.Error whose Timeout is true), or the connection's.
func awaitHeaders(str peeker, maxHeader int) ([]byte, error) {
	p := framePeeker{str: str}
	off := 0
	for frames := 1; ; frames++ {
		t, n1, err := p.varint(off)
		if err != nil {
			return nil, err
		}
		l, n2, err := p.varint(off + n1)
		if err != nil {
			return nil, err
		}
		switch {
		case t == h3FrameHeaders && l <= uint64(maxHeader):
			start := off + n1 + n2
			if err := p.await(start + int(l)); err != nil {
				return nil, err
			}
			return p.buf[start : start+int(l)], nil
		case t == h3FrameHeaders, isKnownFrame(t):
			return nil, nil
		}
		if l > h3SkipMax || off+n1+n2+int(l) > h3SkipMax || frames >= h3SkipFramesMax {
			return nil, errH3SkipLimit
		}
		// In steps as well: a frame's length alone does not make pqedge
		// allocate up to h3SkipMax.
		off += n1 + n2 + int(l)
		if err := p.await(off); err != nil {
			return nil, err
		}
	}
}

// framePeeker peeks at a stream's unread bytes through one buffer that
// grows as more of them are needed.
type framePeeker struct {
	str  peeker
	buf  []byte // buf[:have] holds the stream's first have unread bytes
	have int
}

// peek waits until the stream's first n unread bytes are in p.buf,
// asking for exactly n: the client may send nothing more.
func (p *framePeeker) peek(n int) error {
	if n <= p.have {
		return nil
	}
	if n > len(p.buf) {
		p.buf = make([]byte, max(n, 2*len(p.buf), 16))
	}
	got, err := p.str.Peek(p.buf[:n])
	if err != nil {
		if err == io.EOF && got > 0 {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	p.have = n
	return nil
}

// await waits until the stream's first n unread bytes have arrived,
// peeking in steps that double from h3PeekStep.
func (p *framePeeker) await(n int) error {
	for step := max(h3PeekStep, p.have); ; step *= 2 {
		if err := p.peek(min(n, step)); err != nil || step >= n {
			return err
		}
	}
}

// varint returns the QUIC variable-length integer (RFC 9000 Section 16)
// at offset off of the stream's unread data and its length, waiting for
// its bytes and no more.
func (p *framePeeker) varint(off int) (uint64, int, error) {
	if err := p.peek(off + 1); err != nil {
		return 0, 0, err
	}
	if err := p.peek(off + 1<<(p.buf[off]>>6)); err != nil {
		return 0, 0, err
	}
	v, n, err := quicvarint.Parse(p.buf[off:p.have])
	return v, n, err
}

// h3MaxStreamWindow and h3MaxConnWindow are quic-go's default largest
// stream and connection receive windows, which its auto-tuning grows
// them to for a fast reader.
const (
	h3MaxStreamWindow = 6 << 20
	h3MaxConnWindow   = 15 << 20
)

// h3ReceiveWindows is the initial stream and connection flow-control
// windows, in bytes, that let every request stream of a connection
// (quicMaxStreams) hold a whole header block of up to maxHeader bytes,
// after h3SkipMax bytes of unknown frames, unread at once: at least
// quic-go's defaults (512 KiB and 768 KiB). With smaller ones a client
// that interleaves its streams, as quic-go's does, fills the
// connection's window with parts of header blocks, none whole, and
// awaitHeaders waits on every stream until read_header (RFC 9000 Section
// 4.1: credit returns only as the bytes are read). The memory this lets
// a client fill is what quic-go's own loop read into header buffers:
// quicMaxStreams x maxHeader (16 MiB a connection at 64 KiB).
func h3ReceiveWindows(maxHeader int) (stream, conn uint64) {
	if maxHeader <= 0 {
		maxHeader = http.DefaultMaxHeaderBytes // as quic-go
	}
	perStream := uint64(h3SkipMax + maxHeader + 2*8) // two frame headers' varints at most
	return max(perStream, 512<<10), max(quicMaxStreams*perStream, 768<<10)
}

// isKnownFrame reports the frame types RFC 9114 Section 7.2 defines (and
// quic-go's PRIORITY_UPDATE, RFC 9218): anything else is ignored.
func isKnownFrame(t uint64) bool {
	return t <= 0x0d || t == 0xf0700 || t == 0xf0701
}

// goAwayFrame is a GOAWAY frame naming id (RFC 9114 Section 7.2.6).
func goAwayFrame(id quic.StreamID) []byte {
	b := quicvarint.Append(nil, h3FrameGoAway)
	b = quicvarint.Append(b, uint64(quicvarint.Len(uint64(id))))
	return quicvarint.Append(b, uint64(id))
}

// h3ControlStreamID is the server's control stream: the first
// server-initiated unidirectional stream (RFC 9000 Section 2.1), the
// first NewRawServerConn opens.
const h3ControlStreamID quic.StreamID = 3

// controlStreamOf finds the control stream NewRawServerConn opened on
// conn, or nil. quic-go v0.65 keeps it to itself (ServeQUICConn's loop
// sends its GOAWAY on it, RawServerConn has no way to), and only the
// control stream may carry GOAWAY (RFC 9114 Section 7.2.6); a second
// one is a connection error. So it is read from conn's stream map
// (streamsMap.outgoingUniStreams.streams) under that map's lock. A
// quic-go whose fields differ gives nil: the drain then goes without
// GOAWAY (TestHTTP3DrainSendsGoAway fails first).
func controlStreamOf(conn *quic.Conn) (str *quic.SendStream) {
	defer func() {
		if recover() != nil {
			str = nil
		}
	}()
	sm := reflect.ValueOf(conn).Elem().FieldByName("streamsMap")
	if sm.Kind() != reflect.Pointer || sm.IsNil() {
		return nil
	}
	uni := sm.Elem().FieldByName("outgoingUniStreams")
	if uni.Kind() != reflect.Pointer || uni.IsNil() {
		return nil
	}
	m := uni.Elem()
	mu, streams := m.FieldByName("mutex"), m.FieldByName("streams")
	if mu.Type() != reflect.TypeFor[sync.RWMutex]() || streams.Kind() != reflect.Map ||
		streams.Type().Key() != reflect.TypeFor[quic.StreamID]() || streams.Type().Elem() != reflect.TypeFor[*quic.SendStream]() {
		return nil
	}
	lock := (*sync.RWMutex)(mu.Addr().UnsafePointer())
	lock.RLock()
	v := streams.MapIndex(reflect.ValueOf(h3ControlStreamID))
	lock.RUnlock()
	if !v.IsValid() || v.IsNil() {
		return nil
	}
	return (*quic.SendStream)(v.UnsafePointer())
}
