package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The Go clients of `bench proxy`: TLS streams, handshakes with one
// request, and idle connections, which h2load cannot make.

// errorTally counts failures by kind, keeping one example of each.
type errorTally struct {
	mu   sync.Mutex // guards errs
	errs map[string]*ErrorCount
}

func (t *errorTally) add(kind string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.errs == nil {
		t.errs = map[string]*ErrorCount{}
	}
	ec := t.errs[kind]
	if ec == nil {
		ec = &ErrorCount{Kind: kind, Example: err.Error()}
		t.errs[kind] = ec
	}
	ec.Count++
}

func (t *errorTally) addCount(kind string, n int64, example string) {
	if n <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.errs == nil {
		t.errs = map[string]*ErrorCount{}
	}
	ec := t.errs[kind]
	if ec == nil {
		ec = &ErrorCount{Kind: kind, Example: example}
		t.errs[kind] = ec
	}
	ec.Count += int(n)
}

// list returns the counts sorted by kind.
func (t *errorTally) list() []ErrorCount {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []ErrorCount
	for _, k := range slices.Sorted(maps.Keys(t.errs)) {
		out = append(out, *t.errs[k])
	}
	return out
}

// netErrorKind names a client-side failure for the error table.
func netErrorKind(err error) string {
	var ne net.Error
	var rhe tls.RecordHeaderError
	var ae tls.AlertError
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &rhe):
		return "not_tls"
	case errors.As(err, &ae):
		return "alert:" + strings.TrimPrefix(ae.Error(), "tls: ")
	}
	return "other"
}

// clientTLS is the TLS config of the Go clients: TLS 1.3 with the run's
// groups (a key share for the first), no session cache (every connection
// is a new visitor) and no chain verification (the harness measures the
// front, not its certificate).
func clientTLS(groups []tls.CurveID) *tls.Config {
	return &tls.Config{
		ServerName:         "localhost",
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   groups,
	}
}

// httpConnector makes single HTTP connections, each with its own TLS
// handshake, through net/http's Transport.NewClientConn.
type httpConnector struct {
	addr      string
	transport *http.Transport
	timeout   time.Duration
}

func newHTTPConnector(addr string, groups []tls.CurveID, h2 bool, timeout time.Duration) *httpConnector {
	var p http.Protocols
	p.SetHTTP1(!h2)
	p.SetHTTP2(h2)
	return &httpConnector{
		addr:    addr,
		timeout: timeout,
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
			TLSClientConfig:     clientTLS(groups),
			TLSHandshakeTimeout: timeout,
			Protocols:           &p,
			DisableCompression:  true,
		},
	}
}

// open makes a connection and one request for BenchPath on it, reads the
// whole answer and returns the open connection. Every step is bounded by
// the connector's timeout.
func (h *httpConnector) open(ctx context.Context) (*http.ClientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	cc, err := h.transport.NewClientConn(ctx, "https", h.addr)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://localhost"+BenchPath, nil)
	if err != nil {
		cc.Close()
		return nil, err
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		cc.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = &statusError{code: resp.StatusCode}
	}
	if err != nil {
		cc.Close()
		return nil, err
	}
	return cc, nil
}

// statusError is an answer other than 200 OK.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("status %d", e.code) }

func httpErrorKind(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return fmt.Sprintf("status:%d", se.code)
	}
	return netErrorKind(err)
}

// connLoad is the outcome of a Go client load: connections (handshake
// mode) and their latencies.
type connLoad struct {
	completed int64
	latencies []time.Duration
	errs      errorTally
}

// handshakeLoad makes connections against addr from concurrency workers
// for d, each doing what a browser's first visit does: TCP and TLS
// handshakes, one request, the answer read, close_notify and close.
func handshakeLoad(ctx context.Context, hc *httpConnector, concurrency int, d time.Duration) *connLoad {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	load := &connLoad{}
	var mu sync.Mutex // guards load.latencies
	var wg sync.WaitGroup
	for range max(1, concurrency) {
		wg.Go(func() {
			var local []time.Duration
			// Each worker connects at least once, so that a short run on
			// a starved machine still measures something.
			for first := true; first || ctx.Err() == nil; first = false {
				t0 := time.Now()
				// Not bound to ctx: a connection in flight when the run
				// ends completes instead of counting as a failure.
				cc, err := hc.open(context.WithoutCancel(ctx))
				if err != nil {
					load.errs.add(httpErrorKind(err), err)
					continue
				}
				cc.Close()
				local = append(local, time.Since(t0))
				atomic.AddInt64(&load.completed, 1)
			}
			mu.Lock()
			load.latencies = append(load.latencies, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return load
}

// streamLoad is what runStreamLoad measured.
type streamLoad struct {
	echoed atomic.Int64 // bytes read back by the clients within the run
	errs   errorTally
}

// streamChunk is the size of each client write: a full TLS record.
const streamChunk = 16 << 10

// runStreamLoad pumps bytes through a front's stream listener to the echo
// upstream and back, over conns TLS connections made before the
// measurement: started is called once they are all up, the pumping lasts
// d from then, and stopped is called at its end, before the bytes still in
// the pipe are drained. Only bytes read back within d count.
func runStreamLoad(ctx context.Context, addr string, groups []tls.CurveID, conns int, d, timeout time.Duration, started, stopped func() error) (*streamLoad, error) {
	load := &streamLoad{}
	var tcs []*tls.Conn
	defer func() {
		for _, c := range tcs {
			c.Close()
		}
	}()
	cfg := clientTLS(groups)
	for range max(1, conns) {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		c, err := (&tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}).DialContext(dctx, "tcp", addr)
		cancel()
		if err != nil {
			load.errs.add(netErrorKind(err), err)
			return load, nil
		}
		tcs = append(tcs, c.(*tls.Conn))
	}
	payload := make([]byte, streamChunk)
	rand.Read(payload)
	if err := started(); err != nil {
		return nil, err
	}
	start := time.Now()
	end := start.Add(d)
	var writers, readers sync.WaitGroup
	for _, c := range tcs {
		c.SetDeadline(end.Add(timeout))
		writers.Go(func() {
			for time.Now().Before(end) {
				if _, err := c.Write(payload); err != nil {
					load.errs.add(netErrorKind(err), err)
					return
				}
			}
		})
		readers.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if time.Now().After(end) {
					// Drain without counting until the close below, so
					// the writers' last writes never wait on a full pipe.
					if err != nil {
						return
					}
					continue
				}
				load.echoed.Add(int64(n))
				if err != nil {
					load.errs.add(netErrorKind(err), err)
					return
				}
			}
		})
	}
	time.Sleep(time.Until(end))
	stopErr := stopped()
	writers.Wait()
	for _, c := range tcs {
		c.Close() // ends the readers, whose errors past the end do not count
	}
	readers.Wait()
	tcs = nil
	return load, stopErr
}

// idleConns holds connections open for the memory modes.
type idleConns struct {
	closers []io.Closer
	errs    errorTally
}

func (ic *idleConns) Close() {
	for _, c := range ic.closers {
		c.Close()
	}
	ic.closers = nil
}

// openIdle opens n connections that each made one request and now sit
// idle (keep-alive), 16 at a time.
func openIdle(ctx context.Context, hc *httpConnector, n int) *idleConns {
	ic := &idleConns{}
	var mu sync.Mutex // guards ic.closers
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	var wg sync.WaitGroup
	for range min(16, n) {
		wg.Go(func() {
			for range work {
				cc, err := hc.open(ctx)
				if err != nil {
					ic.errs.add(httpErrorKind(err), err)
					continue
				}
				mu.Lock()
				ic.closers = append(ic.closers, cc)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ic
}

// openTCP opens n TCP connections that send nothing: clients before their
// ClientHello.
func openTCP(ctx context.Context, addr string, n int, timeout time.Duration) *idleConns {
	ic := &idleConns{}
	d := &net.Dialer{Timeout: timeout}
	for range n {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			ic.errs.add(netErrorKind(err), err)
			continue
		}
		ic.closers = append(ic.closers, c)
	}
	return ic
}
