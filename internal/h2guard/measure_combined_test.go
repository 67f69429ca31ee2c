package h2guard

import (
	"cmp"
	"crypto/tls"
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// combinedWindows is how many guard windows (DefaultGlitchWindow, with a
// margin) a combined connection abuses.
const combinedWindows = 3

// combined is one connection that, in every guard window, goes just under
// each of the guard's budgets at once: glitches (HEADERS then RST_STREAM,
// empty DATA frames on an open request body, empty CONTINUATION frames
// inside a header block), requests pqedge refuses itself (404s), and
// control frames (PINGs, within the fixed allowance and what its streams
// earn). It reads everything the server sends and returns the credit, so
// only a budget can close it.
type combined struct {
	only string // "": every kind; "glitches", "refused" or "control": that one alone
	c    *tls.Conn
	fr   *http2.Framer
	mu   sync.Mutex // serialises writes: the reader acknowledges SETTINGS and returns credit

	answers  atomic.Int64 // streams the server ended (a response's end or RST_STREAM)
	glitches atomic.Int64 // resets, empty DATA and empty CONTINUATION frames written
	refused  atomic.Int64 // requests written that pqedge answers itself
	control  atomic.Int64 // PINGs written
}

// Per window, just under the defaults: 200 glitches, 200 refused requests,
// 1,000 control frames plus ControlPerStream for each header block.
const (
	combinedResets     = 130
	combinedEmptyData  = 30
	combinedEmptyConts = 30 // 190 glitches
	combinedRefused    = 190
	combinedPings      = 990
)

func (cb *combined) write(f func() error) error {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return f()
}

func (cb *combined) readLoop() error {
	for {
		f, err := cb.fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				cb.write(cb.fr.WriteSettingsAck)
			}
		case *http2.DataFrame:
			if n := uint32(len(f.Data())); n > 0 {
				cb.write(func() error { return cb.fr.WriteWindowUpdate(0, n) })
			}
			if f.StreamEnded() {
				cb.answers.Add(1)
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				cb.answers.Add(1)
			}
		case *http2.RSTStreamFrame:
			cb.answers.Add(1)
		case *http2.GoAwayFrame:
			return errors.New("GOAWAY " + f.ErrCode.String())
		}
	}
}

// window writes one window's abuse, paced over about a second so that
// at most a few dozen streams are open at once (the stream limit is 250).
func (cb *combined) window(id *uint32, p *paced) error {
	get, post, refused := p.block("GET", "/app/small"), p.block("POST", "/app/small"), p.block("GET", "/nowhere")
	glitches, refusals, control := cb.only == "" || cb.only == "glitches", cb.only == "" || cb.only == "refused", cb.only == "" || cb.only == "control"
	for step := range 10 {
		err := cb.write(func() error {
			for range combinedResets / 10 {
				if !glitches {
					break
				}
				if err := cb.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: *id, BlockFragment: get, EndStream: true, EndHeaders: true}); err != nil {
					return err
				}
				if err := cb.fr.WriteRSTStream(*id, http2.ErrCodeCancel); err != nil {
					return err
				}
				*id += 2
				cb.glitches.Add(1)
			}
			for range combinedRefused / 10 {
				if !refusals {
					break
				}
				if err := cb.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: *id, BlockFragment: refused, EndStream: true, EndHeaders: true}); err != nil {
					return err
				}
				*id += 2
				cb.refused.Add(1)
			}
			if !glitches {
				goto control
			}
			// A POST whose body gets empty DATA frames, then ends.
			if err := cb.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: *id, BlockFragment: post, EndHeaders: true}); err != nil {
				return err
			}
			for range combinedEmptyData / 10 {
				if err := cb.fr.WriteData(*id, false, nil); err != nil {
					return err
				}
				cb.glitches.Add(1)
			}
			if err := cb.fr.WriteData(*id, true, []byte("x")); err != nil {
				return err
			}
			*id += 2
			// A header block with empty CONTINUATIONs inside it.
			if err := cb.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: *id, BlockFragment: refused, EndStream: true}); err != nil {
				return err
			}
			for range combinedEmptyConts / 10 {
				if err := cb.fr.WriteContinuation(*id, false, nil); err != nil {
					return err
				}
				cb.glitches.Add(1)
			}
			if err := cb.fr.WriteContinuation(*id, true, nil); err != nil {
				return err
			}
			*id += 2
			cb.refused.Add(1)
		control:
			for range combinedPings / 10 {
				if !control {
					break
				}
				if err := cb.fr.WritePing(false, [8]byte{byte(step)}); err != nil {
					return err
				}
				cb.control.Add(1)
			}
			return nil
		})
		if err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// TestMeasureCombined measures what connections that go just under every
// budget of the guard at once, window after window, cost a running pqedge
// (any build): its peak RSS growth and CPU, how many of them it closed,
// and what they sent. PQEDGE_H2_CONNS connections (default 1) from this
// one address run at once; PQEDGE_H2_ONLY (glitches, refused or control)
// keeps one kind alone, at the same pace, to compare. The upstream's own
// count of requests is read apart. It runs only when asked:
//
//	PQEDGE_H2_TARGET=127.0.0.1:8443 PQEDGE_H2_PID=$(pidof pqedge) PQEDGE_H2_CONNS=50 \
//	  go test -count=1 -run TestMeasureCombined -v ./internal/h2guard
func TestMeasureCombined(t *testing.T) {
	target, pid := measureTarget(t)
	conns := 1
	if s := os.Getenv("PQEDGE_H2_CONNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("PQEDGE_H2_CONNS %q", s)
		}
		conns = n
	}
	rss0, cpu0, start := procKiB(t, pid, "VmRSS"), cpuTicks(t, pid), time.Now()
	var cbs []*combined
	var closed atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		c, err := tls.Dial("tcp", target, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(combinedWindows*(DefaultGlitchWindow+time.Second) + 10*time.Second))
		cb := &combined{only: os.Getenv("PQEDGE_H2_ONLY"), c: c, fr: http2.NewFramer(c, c)}
		cbs = append(cbs, cb)
		c.Write([]byte(http2.ClientPreface))
		cb.write(func() error { return cb.fr.WriteSettings() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			readErr := make(chan error, 1)
			go func() { readErr <- cb.readLoop() }()
			p := &paced{}
			id := uint32(1)
			for w := range combinedWindows {
				if err := cb.window(&id, p); err != nil {
					closed.Add(1)
					return
				}
				select {
				case err := <-readErr:
					t.Logf("closed in window %d: %v", w+1, err)
					closed.Add(1)
					return
				case <-time.After(DefaultGlitchWindow): // after the window's second of writes: one every 11 s
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	peak := rss0
sample:
	for {
		select {
		case <-done:
			break sample
		case <-time.After(20 * time.Millisecond):
			peak = max(peak, procKiB(t, pid, "VmRSS"))
		}
	}
	cpu := time.Duration(cpuTicks(t, pid)-cpu0) * 10 * time.Millisecond
	var answers, glitches, refused, control int64
	for _, cb := range cbs {
		answers += cb.answers.Load()
		glitches += cb.glitches.Load()
		refused += cb.refused.Load()
		control += cb.control.Load()
	}
	t.Logf("kinds %q: %d connections x %d windows in %v: RSS %.1f -> peak %.1f MiB (+%.1f), CPU %v, %d closed; written: %d glitches, %d refused requests, %d PINGs; %d streams answered or reset",
		cmp.Or(os.Getenv("PQEDGE_H2_ONLY"), "all"), conns, combinedWindows, time.Since(start).Round(time.Millisecond), float64(rss0)/1024, float64(peak)/1024, float64(peak-rss0)/1024, cpu,
		closed.Load(), glitches, refused, control, answers)
}
