package h2guard

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// pacedKinds are the abuses TestMeasurePaced runs, one connection each.
// Unlike floodKinds they read what the server sends and keep within its
// stream limit, so nothing but the guard's budgets can close them: each
// runs until its connection fails or stop closes, adding one to rounds
// per request answered, DATA frame received or PING sent.
var pacedKinds = []struct {
	name string
	run  func(p *paced) error
}{
	// Valid requests pqedge answers itself (404: /nowhere has no route
	// in the measured config), 100 in flight.
	{"refused", func(p *paced) error { return p.requests(p.block("GET", "/nowhere"), false) }},
	// Valid requests to the upstream, each header block sent a byte a
	// frame.
	{"trickled", func(p *paced) error { return p.requests(p.block("GET", "/app/small"), true) }},
	// CVE-2019-9511: a 1-byte stream window, each byte returned as it
	// arrives.
	{"dribble", func(p *paced) error { return p.dribble() }},
	// 500 requests before the client acknowledges the server's SETTINGS
	// (the server refuses 250 with REFUSED_STREAM), then idle.
	{"early_streams", func(p *paced) error { return p.early() }},
	// A 64 MiB download read whole, then a PING flood: how far the
	// credit the download earned carries it.
	{"download_then_pings", func(p *paced) error { return p.downloadThenPings() }},
}

// paced is one connection of a paced kind.
type paced struct {
	c      *tls.Conn
	fr     *http2.Framer
	stop   chan struct{}
	rounds atomic.Int64
}

func (p *paced) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

func (p *paced) block(method, path string) []byte {
	var b []byte
	enc := hpack.NewEncoder(&byteSink{&b})
	for _, f := range [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return b
}

type byteSink struct{ b *[]byte }

func (s *byteSink) Write(p []byte) (int, error) { *s.b = append(*s.b, p...); return len(p), nil }

// read reads one frame and answers it as a client does: SETTINGS with
// an ACK, DATA with connection credit.
func (p *paced) read() (http2.Frame, error) {
	f, err := p.fr.ReadFrame()
	if err != nil {
		return nil, err
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if !f.IsAck() {
			p.fr.WriteSettingsAck()
		}
	case *http2.DataFrame:
		if n := uint32(len(f.Data())); n > 0 {
			p.fr.WriteWindowUpdate(0, n)
		}
	case *http2.GoAwayFrame:
		return nil, fmt.Errorf("GOAWAY %v", f.ErrCode)
	}
	return f, nil
}

func (p *paced) requests(block []byte, trickle bool) error {
	id, inFlight := uint32(1), 0
	for !p.stopped() {
		for ; inFlight < 100; inFlight++ {
			var err error
			if trickle {
				err = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:1], EndStream: true})
				for i := 1; i < len(block) && err == nil; i++ {
					err = p.fr.WriteContinuation(id, i == len(block)-1, block[i:i+1])
				}
			} else {
				err = p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true})
			}
			if err != nil {
				return err
			}
			id += 2
		}
		f, err := p.read()
		if err != nil {
			return err
		}
		if f.Header().Flags.Has(http2.FlagDataEndStream) && (f.Header().Type == http2.FrameData || f.Header().Type == http2.FrameHeaders) ||
			f.Header().Type == http2.FrameRSTStream {
			inFlight--
			p.rounds.Add(1)
		}
	}
	return nil
}

func (p *paced) dribble() error {
	p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: p.block("GET", "/app/big"), EndStream: true, EndHeaders: true})
	for !p.stopped() {
		f, err := p.read()
		if err != nil {
			return err
		}
		if d, ok := f.(*http2.DataFrame); ok && len(d.Data()) > 0 {
			p.rounds.Add(1)
			p.fr.WriteWindowUpdate(1, uint32(len(d.Data())))
		}
	}
	return nil
}

func (p *paced) early() error {
	get := p.block("GET", "/app/small")
	for id := uint32(1); id < 1000; id += 2 {
		p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: get, EndStream: true, EndHeaders: true})
	}
	for !p.stopped() {
		f, err := p.fr.ReadFrame() // no SETTINGS ACK until every stream ended
		if err != nil {
			return err
		}
		if f.Header().Flags.Has(http2.FlagDataEndStream) && f.Header().Type == http2.FrameData || f.Header().Type == http2.FrameRSTStream {
			p.rounds.Add(1)
		}
		if d, ok := f.(*http2.DataFrame); ok && len(d.Data()) > 0 {
			p.fr.WriteWindowUpdate(0, uint32(len(d.Data())))
		}
		if p.rounds.Load() == 500 {
			p.fr.WriteSettingsAck()
			<-p.stop
		}
	}
	return nil
}

func (p *paced) downloadThenPings() error {
	p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: p.block("GET", "/app/big"), EndStream: true, EndHeaders: true})
	for {
		f, err := p.read()
		if err != nil {
			return err
		}
		if d, ok := f.(*http2.DataFrame); ok {
			if n := uint32(len(d.Data())); n > 0 {
				p.fr.WriteWindowUpdate(1, n)
			}
			if d.StreamEnded() {
				break
			}
		}
	}
	time.Sleep(11 * time.Second) // into a later window: only carried credit left
	go func() {
		for {
			if _, err := p.read(); err != nil {
				return
			}
		}
	}()
	for !p.stopped() {
		if err := p.fr.WritePing(false, [8]byte{}); err != nil {
			return err
		}
		p.rounds.Add(1)
	}
	return nil
}

// TestMeasurePaced measures what one connection of each paced kind costs
// a running pqedge (any build), as TestMeasureFloods does, for up to
// 10 s of abuse. It runs only when asked:
//
//	PQEDGE_H2_TARGET=127.0.0.1:8443 PQEDGE_H2_PID=$(pidof pqedge) \
//	  go test -count=1 -run TestMeasurePaced -v ./internal/h2guard
func TestMeasurePaced(t *testing.T) {
	target, pid := measureTarget(t)
	for _, kind := range pacedKinds {
		if !measureKind(kind.name) {
			continue
		}
		time.Sleep(time.Second) // let the previous connection's garbage go
		c, err := tls.Dial("tcp", target, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(40 * time.Second))
		c.Write([]byte(http2.ClientPreface))
		p := &paced{c: c, fr: http2.NewFramer(c, c), stop: make(chan struct{})}
		p.fr.WriteSettings()
		done := make(chan error, 1)
		var start time.Time
		var rss0, cpu0 int64
		begin := func() { rss0, cpu0, start = procKiB(t, pid, "VmRSS"), cpuTicks(t, pid), time.Now() }
		if kind.name == "download_then_pings" {
			// The download is not the abuse: measure from the PINGs.
			go func() { done <- kind.run(p) }()
			for p.rounds.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			begin()
		} else {
			begin()
			go func() { done <- kind.run(p) }()
		}
		peak, cpu, lived, end := attackCost(t, pid, start, rss0, cpu0, done)
		close(p.stop)
		c.Close()
		t.Logf("%-20s RSS +%.1f MiB, CPU %v, %d rounds, closed after %s (%v)",
			kind.name, float64(peak-rss0)/1024, cpu, p.rounds.Load(), lived, end)
	}
}
