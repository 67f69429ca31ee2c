package proxy

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestIdleDeadline: a deadline that follows the I/O is set at the first
// read or write, kept while it is fresh, and moved once timeout/16 of it
// has passed, so a stall always has between 15/16 of the timeout and all
// of it.
func TestIdleDeadline(t *testing.T) {
	const timeout = 16 * time.Second
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	var d idleDeadline
	for _, step := range []struct {
		at   time.Duration // since t0
		set  bool
		want time.Duration // the deadline in force afterwards, since t0
	}{
		{0, true, 16 * time.Second},
		{500 * time.Millisecond, false, 16 * time.Second},
		{time.Second, false, 16 * time.Second}, // exactly timeout/16 old: kept
		{time.Second + time.Nanosecond, true, 17*time.Second + time.Nanosecond},
		{10 * time.Second, true, 26 * time.Second},
		{40 * time.Second, true, 56 * time.Second}, // long after it passed
	} {
		now := t0.Add(step.at)
		dl, set := d.next(now, timeout)
		if set != step.set {
			t.Fatalf("at +%v: set = %v, want %v", step.at, set, step.set)
		}
		if set && !dl.Equal(d.until) {
			t.Fatalf("at +%v: returned %v, but keeps %v", step.at, dl, d.until)
		}
		if got := d.until.Sub(t0); got != step.want {
			t.Fatalf("at +%v: deadline +%v, want +%v", step.at, got, step.want)
		}
		if left := d.until.Sub(now); left < timeout-timeout/slackDivisor || left > timeout {
			t.Fatalf("at +%v: %v left for the next I/O, want %v to %v", step.at, left, timeout-timeout/slackDivisor, timeout)
		}
	}
}

// streamDeadlines is an HTTP/2 response writer as http.ResponseController
// sees it, recording the stream deadlines set on it instead of resetting
// the stream.
type streamDeadlines struct {
	http.ResponseWriter
	mu          sync.Mutex
	read, write []time.Time
}

func (s *streamDeadlines) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read = append(s.read, t)
	return nil
}

func (s *streamDeadlines) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.write = append(s.write, t)
	return nil
}

func (s *streamDeadlines) set() (read, write []time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read, s.write
}

// hookReader returns one byte per Read, running during(i) inside read i.
type hookReader struct {
	i      int
	during func(i int)
}

func (h *hookReader) Read(p []byte) (int, error) {
	h.i++
	h.during(h.i)
	p[0] = 'x'
	return 1, nil
}

// TestStreamWatchEndsOnlyAStalledIO: over HTTP/2 the response write and
// request body timeouts reset a stream only when one write or read has
// waited the whole timeout. The timer of the I/O before, whose callback
// started just as that I/O returned (Stop cannot recall it), runs during
// the next one and must leave it alone: it reset a stream whose writes
// and reads all completed in time.
func TestStreamWatchEndsOnlyAStalledIO(t *testing.T) {
	for _, tt := range []struct {
		name    string
		timeout time.Duration
		// second runs inside the second write or read: the first's
		// timer running late, or the second one blocking.
		second    func(late func())
		wantReset bool
	}{
		{"the first timer, run late", time.Hour, func(late func()) { late() }, false},
		{"a stalled second", 20 * time.Millisecond, func(func()) { time.Sleep(200 * time.Millisecond) }, true},
	} {
		t.Run("write/"+tt.name, func(t *testing.T) {
			rec := &streamDeadlines{ResponseWriter: httptest.NewRecorder()}
			ctl := http.NewResponseController(rec)
			w := &writeDeadline{ResponseWriter: rec, ctl: ctl, timeout: tt.timeout, watch: newStallWatch(ctl, false)}
			for i := 1; i <= 2; i++ {
				w.watch.begin(time.Now().Add(w.timeout))
				if i == 2 {
					tt.second(w.watch.fire)
				}
				w.watch.end()
			}
			_, write := rec.set()
			if got := len(write) == 1 && write[0].Before(time.Now()); got != tt.wantReset || len(write) > 1 {
				t.Errorf("stream write deadlines set %v; want a reset %v", write, tt.wantReset)
			}
		})
		t.Run("read/"+tt.name, func(t *testing.T) {
			rec := &streamDeadlines{ResponseWriter: httptest.NewRecorder()}
			ctl := http.NewResponseController(rec)
			b := &clientBody{ctl: ctl, stall: tt.timeout, watch: newStallWatch(ctl, true)}
			b.body = io.NopCloser(&hookReader{during: func(i int) {
				if i == 2 {
					tt.second(b.watch.fire)
				}
			}})
			for range 2 {
				if _, err := b.Read(make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
			}
			read, _ := rec.set()
			if got := len(read) == 1 && read[0].Before(time.Now()); got != tt.wantReset || len(read) > 1 {
				t.Errorf("stream read deadlines set %v; want a reset %v", read, tt.wantReset)
			}
		})
	}
}

// TestStoppedStallWatchHoldsNoRequest checks that an HTTP/2 request whose
// body was read and whose response was written under a stream watch is
// garbage once its handler returned, however long the runtime keeps the
// watch's stopped timer: Go leaves a stopped time.AfterFunc timer, with
// its function and what that reaches, in its timer heap until the timer
// reaches the heap's head or tail, at the latest its deadline
// (golang/go#75935). A timer whose function was the body's or the
// writer's method kept the whole request, its ResponseWriter and body
// (and in net/http, through the body, the HTTP/2 connection) for up to
// request_body or response_write after the request. The timers run in a
// synctest bubble, whose heap is the test's alone; other requests start
// timers due earlier and later while each I/O is under way, so every
// stopped one stays between them for the whole test (as
// TestQUICIdleStoppedClockHoldsNoConnection in internal/server).
func TestStoppedStallWatchHoldsNoRequest(t *testing.T) {
	for _, tt := range []struct {
		name string
		// serve runs one request on rq, calling during inside its I/O.
		serve func(rq *request, rec http.ResponseWriter, during func())
	}{
		{"request body", func(rq *request, rec http.ResponseWriter, during func()) {
			rq.st.bodyBuf = clientBody{body: io.NopCloser(&duringReader{during: during}), ctl: &rq.st.ctl,
				stall: time.Hour, watch: newStallWatch(&rq.st.ctl, true)}
			defer rq.st.bodyBuf.finish()
			if _, err := io.ReadAll(&rq.st.bodyBuf); err != nil {
				t.Error(err)
			}
		}},
		{"request body, closed", func(rq *request, rec http.ResponseWriter, during func()) {
			rq.st.bodyBuf = clientBody{body: io.NopCloser(&duringReader{during: during}), ctl: &rq.st.ctl,
				stall: time.Hour, watch: newStallWatch(&rq.st.ctl, true)}
			rq.st.bodyBuf.Read(make([]byte, 1))
			rq.st.bodyBuf.Close() // the transport is done with it; finish never runs
		}},
		{"response", func(rq *request, rec http.ResponseWriter, during func()) {
			w := &duringWriter{ResponseWriter: rec, during: during}
			rq.st.ww = writeDeadline{ResponseWriter: w, ctl: &rq.st.ctl, timeout: time.Hour,
				watch: newStallWatch(&rq.st.ctl, false)}
			defer rq.st.ww.finish()
			if _, err := rq.st.ww.Write([]byte("answer")); err != nil {
				t.Error(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const requests = 4
				var released atomic.Int64
				var crowd []*time.Timer
				for range requests {
					rec := &streamDeadlines{ResponseWriter: httptest.NewRecorder()}
					runtime.AddCleanup(rec, func(*atomic.Int64) { released.Add(1) }, &released)
					rq := new(request)
					rq.st.ctl = *http.NewResponseController(rec)
					crowd = append(crowd, crowdTimers(8, 30*time.Minute)...)
					tt.serve(rq, rec, func() { crowd = append(crowd, crowdTimers(8, 2*time.Hour)...) })
				}
				synctest.Wait()
				for range 100 {
					if released.Load() == requests {
						break
					}
					runtime.GC()
					runtime.Gosched() // the cleanups run
				}
				if got := released.Load(); got != requests {
					t.Errorf("%d of %d finished requests' ResponseWriters released after 100 collections, their watches (1h) stopped; want all", got, requests)
				}
				for _, tm := range crowd {
					tm.Stop()
				}
			})
		})
	}
}

// duringReader is a body of one byte whose read runs during first.
type duringReader struct {
	during func()
	done   bool
}

func (r *duringReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	r.during()
	r.done = true
	p[0] = 'x'
	return 1, nil
}

// duringWriter is a ResponseWriter whose writes run during first.
type duringWriter struct {
	http.ResponseWriter
	during func()
}

func (w *duringWriter) Write(p []byte) (int, error) {
	w.during()
	return w.ResponseWriter.Write(p)
}

// crowdTimers starts n timers due after d that do nothing.
func crowdTimers(n int, d time.Duration) []*time.Timer {
	ts := make([]*time.Timer, n)
	for i := range ts {
		ts[i] = time.AfterFunc(d, func() {})
	}
	return ts
}

// bodyDeadlines records the read deadlines an HTTP/1.1 body sets on its
// connection.
type bodyDeadlines struct {
	http.ResponseWriter
	mu   sync.Mutex
	read []time.Time
}

func (d *bodyDeadlines) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.read = append(d.read, t)
	return nil
}

// TestMinRateCountsOnlyTheClientsTime: the minimum body rate is counted
// over the time reads waited on the client. An upstream that began to
// read the body late (here: the first read two stall periods after the
// request, with nothing read yet) left the client no time at all: its
// first read got a deadline in the past and the client, who had sent at
// full speed, a 408. A client that really trickles is still held to the
// rate: after waiting ~100 ms for 5 bytes at 1,000 B/s required, the next
// read gets the few milliseconds left, not the whole stall timeout.
func TestMinRateCountsOnlyTheClientsTime(t *testing.T) {
	const stall = 100 * time.Millisecond
	for _, tt := range []struct {
		name     string
		pause    time.Duration // inside each of the first reads: the client's pace
		reads    int           // reads before the one whose deadline is checked
		lateBy   time.Duration // the upstream's delay before the first read
		earliest time.Duration // the checked deadline is at least this after its read
		latest   time.Duration // and at most this
	}{
		{"late first read, nothing waited", 0, 0, 2 * stall, stall - 20*time.Millisecond, stall + 20*time.Millisecond},
		{"a client trickling below the rate", 20 * time.Millisecond, 5, 0, -time.Hour, stall / 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := &bodyDeadlines{ResponseWriter: httptest.NewRecorder()}
			b := &clientBody{ctl: http.NewResponseController(rec), stall: stall, minRate: 1000}
			b.body = io.NopCloser(&hookReader{during: func(int) { time.Sleep(tt.pause) }})
			time.Sleep(tt.lateBy)
			for range tt.reads {
				if _, err := b.Read(make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
			}
			tt.pause = 0
			before := time.Now()
			if _, err := b.Read(make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			rec.mu.Lock()
			dl := rec.read[len(rec.read)-1]
			rec.mu.Unlock()
			if d := dl.Sub(before); d < tt.earliest || d > tt.latest {
				t.Errorf("read %d's deadline %v after it began, want %v to %v", tt.reads+1, d, tt.earliest, tt.latest)
			}
		})
	}
}

// zeroReader fills every read at once: the body of a client that sends
// faster than the upstream reads.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { return len(p), nil }

// BenchmarkClientBodyRead is what the body's deadlines cost one read of
// 16 KiB over HTTP/1.1 with the minimum rate on: the deadline set on the
// connection before it, and the bytes and the client's time counted
// after.
func BenchmarkClientBodyRead(b *testing.B) {
	rec := &bodyDeadlines{ResponseWriter: httptest.NewRecorder()}
	body := &clientBody{body: io.NopCloser(zeroReader{}), ctl: http.NewResponseController(rec), stall: 30 * time.Second, minRate: 1024}
	buf := make([]byte, 16<<10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := body.Read(buf); err != nil {
			b.Fatal(err)
		}
		rec.read = rec.read[:0]
	}
}

// chunkReader returns its reads in turn, each a chunk and an error; past
// the last it returns io.EOF.
type chunkReader struct {
	reads []chunkRead
}

type chunkRead struct {
	data string
	err  error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.reads) == 0 {
		return 0, io.EOF
	}
	next := r.reads[0]
	n := copy(p, next.data)
	if n < len(next.data) {
		r.reads[0].data = next.data[n:]
		return n, nil
	}
	r.reads = r.reads[1:]
	return n, next.err
}

func (r *chunkReader) Close() error { return nil }

// TestClientBodyConfirmsContentLength: the read that completes an HTTP/2
// or HTTP/3 body's content-length returns its bytes only once the stream
// is seen to end there; a stream that goes on (or fails) has them held
// back, so the upstream never receives the whole length of a malformed
// request (RFC 9113 section 8.1.1, RFC 9114 section 4.1.2).
func TestClientBodyConfirmsContentLength(t *testing.T) {
	tooMuch := errors.New("peer sent too much data")
	tests := []struct {
		name     string
		declared int64 // -1: none to confirm
		reads    []chunkRead
		want     string // what the reads delivered
		wantErr  error  // how they ended
	}{
		{"ends at the length", 5, []chunkRead{{"hel", nil}, {"lo", nil}}, "hello", io.EOF},
		{"ends with the last bytes", 5, []chunkRead{{"hello", io.EOF}}, "hello", io.EOF},
		{"goes on past the length", 5, []chunkRead{{"hel", nil}, {"lo", nil}, {"world", nil}}, "hel", errBodyTooLong},
		{"the library's error with the last bytes", 3, []chunkRead{{"hel", tooMuch}}, "", tooMuch},
		{"the library's error after the last bytes", 3, []chunkRead{{"hel", nil}, {"", tooMuch}}, "", tooMuch},
		{"empty reads, then the end", 2, []chunkRead{{"hi", nil}, {"", nil}, {"", nil}, {"", io.EOF}}, "hi", io.EOF},
		{"a length of 0, then the end", 0, nil, "", io.EOF},
		{"a length of 0, then DATA", 0, []chunkRead{{"x", nil}}, "", errBodyTooLong},
		{"no length to confirm (HTTP/1.1)", -1, []chunkRead{{"hel", nil}, {"lo", nil}, {"world", nil}}, "helloworld", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &clientBody{body: &chunkReader{reads: slices.Clone(tt.reads)}, declared: tt.declared, confirm: tt.declared >= 0}
			var got []byte
			buf := make([]byte, 3)
			var err error
			for err == nil {
				var n int
				n, err = b.Read(buf)
				got = append(got, buf[:n]...)
			}
			if string(got) != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("read %q, then %v; want %q, then %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
