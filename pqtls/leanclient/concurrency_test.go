package leanclient

import (
	"crypto/tls"
	"sync"
	"testing"
)

// TestShareCacheConcurrent: many handshakes at once share one cache (the
// benchmark harness's use); run with -race.
func TestShareCacheConcurrent(t *testing.T) {
	chain := newTestChain(t, "ecdsa")
	addr, results := startGoServer(t, &tls.Config{Certificates: []tls.Certificate{chain.cert}})
	cache := NewShareCache()
	groups := []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768}
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			cfg := &Config{Groups: groups, KeyShares: groups[i%2 : i%2+1], Precomputed: cache, CloseNotify: true}
			if _, err := Dial(testContext(t), addr, cfg); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for range n {
		if r := <-results; r.err != nil {
			t.Errorf("server: %v", r.err)
		}
	}
	if len(cache.shares) != 2 {
		t.Errorf("cache holds %d shares, want one per group (2)", len(cache.shares))
	}
}
