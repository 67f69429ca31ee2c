package server

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestHTTP3ConcurrentLargeHeaderBlocks: an ordinary client sending many
// requests at once, each with a header block just under
// limits.request_header (64 KiB), is served in full. pqedge peeks at a
// request's HEADERS frame without reading it, and unread bytes hold QUIC
// flow-control credit (RFC 9000 Section 4.1): with quic-go's default
// windows (768 KiB a connection) a client that interleaves its streams
// filled the connection's window with parts of header blocks, none
// whole, and every request waited out read_header and was reset.
func TestHTTP3ConcurrentLargeHeaderBlocks(t *testing.T) {
	up := newCountingUpstream(t)
	ts := startServer(t, h3ReadHeaderConfig(up.addr))
	c, _ := ts.h3Client()
	c.Timeout = 20 * time.Second
	// Random bytes in base64: QPACK's Huffman code shortens them by a
	// quarter at most, so each block is ~36-48 KiB on the wire.
	value := func() string {
		b := make([]byte, 6<<10)
		rand.Read(b)
		return base64.StdEncoding.EncodeToString(b) // 8 KiB
	}
	tests := []struct {
		name     string
		requests int
	}{
		{"one", 1},
		{"forty at once", 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, tt.requests)
			for i := range tt.requests {
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodGet, ts.h3URL("https")+fmt.Sprintf("/r%d", i), nil)
					for j := range 6 { // 48 KiB of fields
						req.Header.Set(fmt.Sprintf("x-big-%d", j), value())
					}
					resp, err := c.Do(req)
					if err != nil {
						errs <- fmt.Errorf("request %d: %w", i, err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						errs <- fmt.Errorf("request %d: status %d", i, resp.StatusCode)
					}
				})
			}
			wg.Wait()
			close(errs)
			n := 0
			for err := range errs {
				if n++; n <= 3 {
					t.Error(err)
				}
			}
			if n > 0 {
				t.Errorf("%d of %d requests failed", n, tt.requests)
			}
		})
	}
	if n := ts.metricSum("pqedge_http3_abuse_total"); n != 0 {
		t.Errorf("pqedge_http3_abuse_total is %v for an ordinary client", n)
	}
}
