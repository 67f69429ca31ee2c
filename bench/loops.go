package bench

import (
	"bufio"
	"context"
	"sync"
	"time"

	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// The two load shapes of Run: closed loop (Concurrency workers, each
// starting its next attempt when its last one ends) and open loop
// (attempts due at a fixed rate whatever the server does).

// take reserves the next attempt, or reports that Count is reached.
func (s *runState) take() bool {
	if s.opts.Count <= 0 {
		return true
	}
	return s.started.Add(1) <= int64(s.opts.Count)
}

// worker is what one of the Concurrency handshake slots keeps between
// handshakes; it is used by one goroutine at a time.
type worker struct {
	session *leanclient.Session // with Resume: the ticket to offer
	br      *bufio.Reader       // with Replay: reads the server's flight
}

// closedLoop runs Concurrency workers, each starting its next handshake
// when the previous one ends.
func (s *runState) closedLoop(ctx context.Context) {
	var wg sync.WaitGroup
	for range s.opts.Concurrency {
		wg.Go(func() {
			var local []time.Duration
			w := &worker{}
			// Each worker starts at least once, so that a short run on a
			// starved machine still measures something.
			for first := true; (first || ctx.Err() == nil) && s.take(); first = false {
				t0 := time.Now()
				if s.one(ctx, w, t0) {
					local = append(local, time.Since(t0))
				}
			}
			s.mu.Lock()
			s.samples = append(s.samples, local...)
			s.mu.Unlock()
		})
	}
	wg.Wait()
}

// openLoop starts handshake i at start + i/Rate. A handshake that finds all
// Concurrency slots busy waits for one, and its latency still runs from its
// intended start: the wait is what a real client would have seen.
//
// A slot is a worker goroutine that lives for the whole run (so a session
// ticket stays with the slot that got it, as in the closed loop), fed the
// intended start times by this loop. A goroutine per attempt, parked until
// a slot freed, cost the client more than a replayed attempt itself: tens
// of thousands of them piled up behind a saturated server, each a new
// stack grown by the dial.
func (s *runState) openLoop(ctx context.Context, start time.Time) {
	interval := time.Duration(float64(time.Second) / s.opts.Rate)
	due := make(chan time.Time) // unbuffered: a send waits for a free slot
	var wg sync.WaitGroup
	for range s.opts.Concurrency {
		wg.Go(func() {
			var local []time.Duration
			w := &worker{}
			for intended := range due {
				if s.one(ctx, w, intended) {
					local = append(local, time.Since(intended))
				}
			}
			s.mu.Lock()
			s.samples = append(s.samples, local...)
			s.mu.Unlock()
		})
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 0; ctx.Err() == nil && s.take(); i++ {
		intended := start.Add(time.Duration(i) * interval)
		if d := time.Until(intended); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			if ctx.Err() != nil {
				break
			}
		}
		select {
		case due <- intended:
		case <-ctx.Done(): // the run ended before a slot freed: not attempted
		}
	}
	close(due)
	wg.Wait()
}
