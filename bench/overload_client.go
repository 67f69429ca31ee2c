package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// keepAlive is the established traffic of `bench overload`: HTTP/1.1
// connections opened before the flood, each with its own goroutine sending
// requests one at a time, open loop. Over TLS to the front, or in clear
// text straight to the upstream (the control, cfg nil).
type keepAlive struct {
	addr    string
	cfg     *tls.Config // nil: plain TCP
	timeout time.Duration
	conns   []*kaConn // each used by one goroutine at a time
}

// kaConn is one keep-alive connection; nil c means it must be dialed again.
type kaConn struct {
	c  net.Conn
	br *bufio.Reader
}

// kaRequest is the request every keep-alive connection sends.
var kaRequest = []byte("GET " + BenchPath + " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: pqedge-bench-overload\r\n\r\n")

// maxKABody caps what one answer may make the client read.
const maxKABody = 1 << 20

// frontTLS is the keep-alive clients' TLS configuration: HTTP/1.1 over
// group.
func frontTLS(group tls.CurveID) *tls.Config {
	cfg := clientTLS([]tls.CurveID{group})
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}

// openKeepAlive opens n connections to addr, over TLS with cfg (nil: in
// clear text), each with one request answered, so they are established
// (handshake done, upstream connection warm) before anything is measured.
func openKeepAlive(ctx context.Context, addr string, cfg *tls.Config, n int, timeout time.Duration) (*keepAlive, error) {
	ka := &keepAlive{addr: addr, cfg: cfg, timeout: timeout}
	for range n {
		c := &kaConn{}
		ka.conns = append(ka.conns, c)
		if err := ka.request(ctx, c); err != nil {
			ka.Close()
			return nil, err
		}
	}
	return ka, nil
}

func (ka *keepAlive) Close() {
	for _, c := range ka.conns {
		if c.c != nil {
			c.c.Close()
		}
	}
}

// dial opens c's connection again.
func (ka *keepAlive) dial(ctx context.Context, c *kaConn) error {
	ctx, cancel := context.WithTimeout(ctx, ka.timeout)
	defer cancel()
	nd := &net.Dialer{Timeout: ka.timeout}
	var conn net.Conn
	var err error
	if ka.cfg == nil {
		conn, err = nd.DialContext(ctx, "tcp", ka.addr)
	} else {
		conn, err = (&tls.Dialer{NetDialer: nd, Config: ka.cfg}).DialContext(ctx, "tcp", ka.addr)
	}
	if err != nil {
		return err
	}
	c.c = conn
	c.br = bufio.NewReaderSize(conn, 16<<10)
	return nil
}

// request sends one request on c and reads its whole answer, within the
// timeout; c is dialed first if it has no connection, and dropped on any
// failure (the next request dials again).
func (ka *keepAlive) request(ctx context.Context, c *kaConn) error {
	if c.c == nil {
		if err := ka.dial(ctx, c); err != nil {
			return err
		}
	}
	err := ka.roundTrip(c)
	if err != nil {
		c.c.Close()
		c.c, c.br = nil, nil
	}
	return err
}

func (ka *keepAlive) roundTrip(c *kaConn) error {
	c.c.SetDeadline(time.Now().Add(ka.timeout))
	if _, err := c.c.Write(kaRequest); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxKABody))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{code: resp.StatusCode}
	}
	if resp.Close {
		return fmt.Errorf("the front closed a keep-alive connection (status %d, Connection: close)", resp.StatusCode)
	}
	return nil
}

// phase sends requests at rate per second in all for d: connection i of n
// sends its k-th request at start + (i + k*n)/rate, so the requests are
// spread evenly. A request still running when its successor is due
// delays it, and the successor's latency runs from when it was due (no
// coordinated omission). Requests due after d are not sent; those in
// flight at d complete and count.
func (ka *keepAlive) phase(ctx context.Context, rate float64, d time.Duration) OverloadPhase {
	n := len(ka.conns)
	interval := time.Duration(float64(time.Second) * float64(n) / rate)
	start := time.Now()
	end := start.Add(d)
	var (
		mu   sync.Mutex // guards lats and errs
		lats []time.Duration
		errs errorTally
		wg   sync.WaitGroup
	)
	for i, c := range ka.conns {
		offset := time.Duration(float64(time.Second) * float64(i) / rate)
		wg.Go(func() {
			var local []time.Duration
			t := time.NewTimer(0)
			defer t.Stop()
			for due := start.Add(offset); due.Before(end) && ctx.Err() == nil; due = due.Add(interval) {
				if wait := time.Until(due); wait > 0 {
					t.Reset(wait)
					select {
					case <-t.C:
					case <-ctx.Done():
						return
					}
				}
				if err := ka.request(ctx, c); err != nil {
					errs.add(httpErrorKind(err), err)
					continue
				}
				local = append(local, time.Since(due))
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	p := OverloadPhase{Requests: int64(len(lats)), Errors: errs.list()}
	for _, e := range p.Errors {
		p.Failed += int64(e.Count)
	}
	p.Rate = float64(p.Requests) / elapsed.Seconds()
	p.Latency = summarize(lats)
	return p
}
