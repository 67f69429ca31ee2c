package server

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// TestHTTP3ReloadUnderLoad: reloads while clients keep requests in
// flight over HTTP/3 lose none: each request is answered 200, or
// refused with H3_REQUEST_REJECTED (RFC 9114 section 8.1: not
// processed, safe to retry) and answered 200 on a retry; GOAWAY sends
// the clients to new connections.
func TestHTTP3ReloadUnderLoad(t *testing.T) {
	up := newCountingUpstream(t)
	cfg := h3FloodConfig(up.addr)
	ts := startServer(t, cfg)
	c, _ := ts.h3Client()
	var ok, rejected atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				for try := 0; try < 5; try++ {
					var resp *http.Response
					resp, err = c.Get(ts.h3URL("https") + fmt.Sprintf("/w%d/%d", w, i))
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
						break
					}
					if !rejectedErr(err) {
						break
					}
					rejected.Add(1)
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d request %d: %w", w, i, err)
					return
				}
				ok.Add(1)
			}
		})
	}
	for range 5 {
		time.Sleep(200 * time.Millisecond)
		if err := ts.srv.Reload(t.Context(), loadConfig(t, ts.dir, cfg)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d requests answered, %d rejected and retried", ok.Load(), rejected.Load())
}

// rejectedErr reports whether err is the server's H3_REQUEST_REJECTED.
func rejectedErr(err error) bool {
	var se *quic.StreamError
	if errors.As(err, &se) && se.ErrorCode == quic.StreamErrorCode(http3.ErrCodeRequestRejected) {
		return true
	}
	var he *http3.Error
	return errors.As(err, &he) && he.ErrorCode == http3.ErrCodeRequestRejected
}
