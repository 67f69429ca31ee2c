package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/pqtls/leanclient"
	"github.com/pqedge/pqedge/pqtls/quicclient"
)

// ErrNoSuccess is returned by Run when not one handshake succeeded: the
// report then holds only the errors, never a rate or a latency.
var ErrNoSuccess = errors.New("no handshake succeeded")

// Options configure one handshake benchmark against one target.
type Options struct {
	Target     string // host:port
	ServerName string // SNI; default "localhost"
	// Groups are offered in order, with a key share for the first; the
	// default is X25519MLKEM768 alone. SignatureAlgorithms default to
	// leanclient.DefaultSignatureAlgorithms.
	Groups              []tls.CurveID
	SignatureAlgorithms []tls.SignatureScheme

	// Concurrency is the number of handshakes in flight at most (default 1).
	Concurrency int
	// Count stops after this many handshakes (attempts); Duration stops
	// starting new ones after this long. One of them must be set; with
	// both, whichever comes first.
	Count    int
	Duration time.Duration
	// Rate, when positive, starts handshakes at this many per second (open
	// loop): latency runs from the intended start, so time spent waiting
	// for a free slot counts. Zero is closed loop.
	Rate float64

	// Timeout bounds each handshake, connect included (default 5s): it is
	// what keeps a stalling server from hanging the run.
	Timeout time.Duration
	// Precompute makes every key share once (leanclient.ShareCache) so the
	// client spends its CPU on the handshake, not on key generation.
	Precompute bool
	// Resume makes every handshake after a worker's first offer a session
	// ticket (RFC 8446 PSK with psk_dhe_ke: key shares are still sent).
	// Each worker keeps the first ticket it gets and reuses it, replacing
	// it only when the server declined it (a full handshake, whose new
	// ticket it takes); crypto/tls tickets are reusable, so against it
	// every handshake but each worker's first resumes.
	Resume bool
	// ServerPID, when positive, is the server process whose CPU (with its
	// children's) is read from /proc before and after the run.
	ServerPID int

	// Request, when set, is a path: every handshake then sends
	// `GET Request HTTP/1.1` (Host: ServerName, Connection: close) with
	// its Finished and reads the response to the server's close, so a
	// handshake is what a first visit costs the server (see
	// leanclient.Config.Request). A response outside 2xx counts as a
	// failed handshake (kind "http-CODE"). Over TCP only.
	Request string

	// Progress, when set, is called about once a second from a separate
	// goroutine with the counts so far. It must return quickly.
	Progress func(Progress)
	// Dial is the handshake; nil means leanclient.Dial, or SpreadDial with
	// Sources. Tests replace it.
	Dial func(ctx context.Context, addr string, cfg *leanclient.Config) (*leanclient.Result, error)
	// Sources, when positive, makes each TCP connection from the next of
	// that many loopback source addresses (SpreadDial, SpreadConnDial): a
	// distributed flood.
	Sources int

	// Replay floods instead of handshaking (see replay.go): each attempt
	// sends one of a pool of ClientHellos made before the run and reads
	// the server's flight up to its Finished, whose size one full
	// handshake measured first, then closes; the client does no
	// cryptography. An attempt succeeds when the whole flight arrived.
	// Over TCP, without Resume or Request.
	Replay bool

	// Transport is TransportTCP (the default: TLS 1.3 over TCP with
	// leanclient) or TransportQUIC (QUIC with quic-go and crypto/tls, ALPN
	// h3; see quic.go). Over QUIC, Precompute, Resume and
	// SignatureAlgorithms are not available (crypto/tls chooses).
	Transport string
	// ShapeRTT is the emulated round-trip time of the QUIC shape
	// handshakes made before the load (default DefaultShapeRTT);
	// ShapeCount how many (default 3, negative for none).
	ShapeRTT   time.Duration
	ShapeCount int
}

// Progress is a snapshot of a running benchmark.
type Progress struct {
	Elapsed   time.Duration
	Completed int64 // successful handshakes
	Errors    int64
}

// Report is the outcome of Run. With Succeeded == 0 only the error fields
// mean anything.
type Report struct {
	Target      string   `json:"target"`
	Transport   string   `json:"transport"` // tcp or quic
	Groups      []string `json:"groups"`
	Mode        string   `json:"mode"` // "closed" or "open"
	Concurrency int      `json:"concurrency"`
	Rate        float64  `json:"rate,omitempty"`

	Attempts  int           `json:"attempts"`
	Succeeded int           `json:"succeeded"`
	Failed    int           `json:"failed"`
	Errors    []ErrorCount  `json:"errors,omitempty"`
	Elapsed   time.Duration `json:"elapsed_ns"`

	HandshakesPerSec float64 `json:"handshakes_per_sec"`
	Latency          Latency `json:"latency_ns"`

	// Negotiated is what the last successful handshake chose; Signature
	// that of the last full handshake (a resumed one signs nothing).
	Group     string  `json:"group,omitempty"`
	Signature string  `json:"signature,omitempty"`
	HRRRate   float64 `json:"hrr_rate"`
	// Resume says handshakes offered a session ticket; ResumedRate is the
	// share of successful handshakes the server actually resumed.
	Resume      bool    `json:"resume"`
	ResumedRate float64 `json:"resumed_rate"`

	// Bytes are whole TLS records per handshake, averaged; TCP/IP headers
	// are not counted. Over QUIC they are UDP payloads until the
	// handshake is confirmed, and ServerFlightBytes is what the server
	// sent up to its Finished in the shape handshakes.
	ClientBytes       float64 `json:"client_bytes"`
	ServerBytes       float64 `json:"server_bytes"`
	ServerFlightBytes int     `json:"server_flight_bytes"` // the largest seen
	ExceedsInitCwnd   bool    `json:"exceeds_initcwnd"`

	// ServerCPU is per successful handshake, from /proc (zero without a
	// server pid); ClientCPU is this process's, from getrusage.
	ServerCPU time.Duration `json:"server_cpu_ns,omitempty"`
	ClientCPU time.Duration `json:"client_cpu_ns"`
	// OtherLoad is how many CPUs, on average over the run, were busy with
	// anything but the server (with ServerPID) and this process: the
	// noise other work put on the measurement. Without ServerPID it
	// includes the server.
	OtherLoad float64 `json:"other_load"`

	// QUIC is what the shape handshakes found over QUIC; nil over TCP.
	QUIC *QUICShape `json:"quic,omitempty"`
	// Replay is set for a replay flood (Options.Replay): Succeeded then
	// counts whole server flights, HandshakesPerSec flights per second,
	// Latency runs to a flight's last byte, and ClientBytes are the
	// ClientHello alone. Group and Signature are those of the full
	// handshake that measured the flight.
	Replay *ReplayShape `json:"replay,omitempty"`

	// Request is Options.Request; ResponseBytes the decrypted response
	// per successful handshake (status line, headers, body), averaged.
	// ClientBytes and ServerBytes then include the request and response
	// records.
	Request       string  `json:"request,omitempty"`
	ResponseBytes float64 `json:"response_bytes,omitempty"`
}

// StatusError is a response to Options.Request outside 2xx.
type StatusError struct {
	Path   string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s answered HTTP status %d", e.Path, e.Status)
}

// CheckRequestPath accepts "" (no request) or an absolute path with no
// byte that could end or split the request line (RFC 9112 Section 3.2.1,
// origin-form).
func CheckRequestPath(path string) error {
	if path == "" {
		return nil
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsFunc(path, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return fmt.Errorf("path %q: want an absolute path such as /bench, printable ASCII, no spaces", path)
	}
	return nil
}

// benchRequest is the request Options.Request sends.
func benchRequest(path, host string) ([]byte, error) {
	if err := CheckRequestPath(path); err != nil {
		return nil, err
	}
	if host == "" || strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return nil, fmt.Errorf("server name %q cannot be a Host header", host)
	}
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: pqedge-bench\r\nConnection: close\r\n\r\n"), nil
}

// ErrorCount is how often one kind of failure happened, with one example.
type ErrorCount struct {
	Kind    string `json:"kind"`
	Count   int    `json:"count"`
	Example string `json:"example"`
}

// runState is what the workers of one Run share.
type runState struct {
	opts   Options
	client *leanclient.Config
	dial   func(context.Context, string, *leanclient.Config) (*leanclient.Result, error)
	quic   *quicclient.Config // set for TransportQUIC: the load handshakes
	// dialConn opens the replay flood's connections; replay is set by
	// prepareReplay with Options.Replay.
	dialConn ConnDialer
	replay   *replayState

	started   atomic.Int64 // attempts handed out (Count bounds it)
	completed atomic.Int64
	failed    atomic.Int64

	mu      sync.Mutex // guards the fields below, merged from workers
	samples []time.Duration
	errs    map[string]*ErrorCount
	hrr     int
	resumed int
	resp    int64               // response bytes, with Request
	sig     tls.SignatureScheme // of the last full (not resumed) handshake
	sent    int64
	recv    int64
	flight  int
	group   tls.CurveID // of the last successful handshake
	shape   *QUICShape
}

// Run makes handshakes against opts.Target until Count or Duration is
// reached, or ctx ends, and reports what they cost. It returns ErrNoSuccess
// (with the report of the errors) when every handshake failed.
func Run(ctx context.Context, opts Options) (*Report, error) {
	s, err := newRunState(opts)
	if err != nil {
		return nil, err
	}
	return s.run(ctx)
}

func newRunState(opts Options) (*runState, error) {
	if opts.Target == "" {
		return nil, errors.New("no target address")
	}
	if opts.Count <= 0 && opts.Duration <= 0 {
		return nil, errors.New("neither a count nor a duration: the run would never end")
	}
	if opts.Rate < 0 {
		return nil, fmt.Errorf("rate %v is negative", opts.Rate)
	}
	opts.Concurrency = max(1, opts.Concurrency)
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.ServerName == "" {
		opts.ServerName = "localhost"
	}
	if len(opts.Groups) == 0 {
		opts.Groups = []tls.CurveID{tls.X25519MLKEM768}
	}
	client := &leanclient.Config{
		ServerName:             opts.ServerName,
		Groups:                 opts.Groups,
		KeyShares:              opts.Groups[:1],
		SignatureAlgorithms:    opts.SignatureAlgorithms,
		SkipCertificateParsing: true,
		// The server must read the client Finished before its CPU for the
		// handshake is complete; close_notify proves it did.
		CloseNotify: true,
		ReadTicket:  opts.Resume,
		Timeout:     opts.Timeout,
	}
	if opts.Request != "" {
		if opts.Transport == TransportQUIC {
			return nil, errors.New("a request after the handshake is measured over TCP only")
		}
		req, err := benchRequest(opts.Request, opts.ServerName)
		if err != nil {
			return nil, err
		}
		client.Request = req
	}
	if opts.Precompute {
		client.Precomputed = leanclient.NewShareCache()
		if err := client.Precomputed.Precompute(opts.Groups[0]); err != nil {
			return nil, fmt.Errorf("failed to precompute a key share for %s: %w", pqtls.GroupName(opts.Groups[0]), err)
		}
	}
	dial, dialConn := opts.Dial, ConnDialer(plainConnDial)
	if opts.Sources != 0 {
		if opts.Transport == TransportQUIC {
			return nil, errors.New("source addresses are spread over TCP only")
		}
		var err error
		if dialConn, err = SpreadConnDial(opts.Sources); err != nil {
			return nil, err
		}
		if dial == nil {
			dial, _ = SpreadDial(opts.Sources)
		}
	}
	if dial == nil {
		dial = leanclient.Dial
	}
	if opts.Replay && (opts.Transport == TransportQUIC || opts.Resume || opts.Request != "") {
		return nil, errors.New("a replay flood is over TCP, without resumption or a request")
	}
	s := &runState{opts: opts, client: client, dial: dial, dialConn: dialConn, errs: map[string]*ErrorCount{}}
	if err := s.setupTransport(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *runState) run(ctx context.Context) (*Report, error) {
	s.measureShape(ctx) // before the load and its duration: it costs the load nothing
	if err := s.prepareReplay(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.opts.Duration > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, s.opts.Duration)
		defer stop()
	}
	serverBefore, err := s.serverCPU()
	if err != nil {
		return nil, err
	}
	clientBefore := SelfCPU()
	busyBefore, _ := MachineBusy()
	start := time.Now()
	stopProgress := s.startProgress(start)
	if s.opts.Rate > 0 {
		s.openLoop(ctx, start)
	} else {
		s.closedLoop(ctx)
	}
	elapsed := time.Since(start)
	stopProgress()
	clientCPU := SelfCPU() - clientBefore
	busyAfter, _ := MachineBusy()
	serverAfter, err := s.serverCPU()
	if err != nil {
		return nil, fmt.Errorf("the server exited during the run: %w", err)
	}
	r, err := s.report(elapsed, serverAfter-serverBefore, clientCPU)
	if r != nil && busyAfter > 0 {
		other := busyAfter - busyBefore - clientCPU - (serverAfter - serverBefore)
		r.OtherLoad = max(0, other.Seconds()/elapsed.Seconds())
	}
	return r, err
}

func (s *runState) serverCPU() (time.Duration, error) {
	if s.opts.ServerPID <= 0 {
		return 0, nil
	}
	return TreeCPU(s.opts.ServerPID)
}

// one makes a handshake and records its result. The handshake is not tied
// to ctx: when the duration ends, handshakes in flight finish (within
// Timeout) instead of being cut and counted as timeouts.
func (s *runState) one(ctx context.Context, w *worker, started time.Time) bool {
	hctx := context.WithoutCancel(ctx)
	if s.quic != nil {
		return s.oneQUIC(hctx)
	}
	if s.replay != nil {
		return s.oneReplay(hctx, w)
	}
	cfg := s.client
	if w.session != nil {
		c := *s.client
		c.Session = w.session
		cfg = &c
	}
	res, err := s.dial(hctx, s.opts.Target, cfg)
	if err == nil && s.opts.Request != "" && (res.Status < 200 || res.Status > 299) {
		err = &StatusError{Path: s.opts.Request, Status: res.Status}
	}
	if err != nil {
		s.failed.Add(1)
		s.recordError(err)
		return false
	}
	s.completed.Add(1)
	if !res.Resumed && res.Session != nil {
		// The first ticket, or a replacement for one the server declined.
		w.session = res.Session
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if res.HelloRetry {
		s.hrr++
	}
	if res.Resumed {
		s.resumed++
	} else {
		s.sig = res.SignatureScheme
	}
	s.sent += int64(res.BytesSent)
	s.recv += int64(res.BytesReceived)
	s.resp += int64(res.ResponseBytes)
	s.flight = max(s.flight, res.ServerFlightBytes)
	s.group = res.Group
	return true
}

func (s *runState) recordError(err error) {
	s.recordErrorKind(errorKind(err), err)
}

func (s *runState) recordErrorKind(kind string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ec := s.errs[kind]
	if ec == nil {
		ec = &ErrorCount{Kind: kind, Example: err.Error()}
		s.errs[kind] = ec
	}
	ec.Count++
}

// errorKind names a failure for the error table: the leanclient kind, with
// the alert's name for alerts so that "handshake_failure" (nothing in
// common) and "decrypt_error" are told apart.
func errorKind(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		return fmt.Sprintf("http-%d", se.Status)
	}
	var le *leanclient.Error
	if !errors.As(err, &le) {
		return quicclient.ErrorKind(err) // "other" for what it does not know either
	}
	if le.Kind == leanclient.KindAlert {
		return "alert:" + leanclient.AlertName(le.Alert)
	}
	return le.Kind.String()
}

func (s *runState) startProgress(start time.Time) (stop func()) {
	if s.opts.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				s.opts.Progress(Progress{Elapsed: time.Since(start), Completed: s.completed.Load(), Errors: s.failed.Load()})
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (s *runState) report(elapsed, serverCPU, clientCPU time.Duration) (*Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &Report{
		Target:      s.opts.Target,
		Transport:   s.opts.Transport,
		QUIC:        s.shape,
		Mode:        "closed",
		Concurrency: s.opts.Concurrency,
		Succeeded:   int(s.completed.Load()),
		Failed:      int(s.failed.Load()),
		Elapsed:     elapsed,
	}
	for _, g := range s.opts.Groups {
		r.Groups = append(r.Groups, pqtls.GroupName(g))
	}
	if s.opts.Rate > 0 {
		r.Mode, r.Rate = "open", s.opts.Rate
	}
	r.Attempts = r.Succeeded + r.Failed
	for _, k := range slices.Sorted(maps.Keys(s.errs)) {
		r.Errors = append(r.Errors, *s.errs[k])
	}
	if s.replay != nil {
		s.replayReport(r)
	}
	if r.Succeeded == 0 {
		return r, ErrNoSuccess
	}
	n := float64(r.Succeeded)
	r.HandshakesPerSec = n / elapsed.Seconds()
	r.Latency = summarize(s.samples)
	r.Group = pqtls.GroupName(s.group)
	if s.sig != 0 {
		r.Signature = pqtls.SignatureName(s.sig)
	}
	r.HRRRate = float64(s.hrr) / n
	r.Resume = s.opts.Resume
	r.ResumedRate = float64(s.resumed) / n
	r.ClientBytes = float64(s.sent) / n
	r.ServerBytes = float64(s.recv) / n
	r.ServerFlightBytes = s.flight
	if s.opts.Request != "" {
		r.Request = s.opts.Request
		r.ResponseBytes = float64(s.resp) / n
	}
	if s.replay != nil {
		s.replayReport(r) // the calibrated flight, not the largest read
	}
	r.ExceedsInitCwnd = s.flight > certs.InitialWindowBytes
	if s.quic != nil {
		// Under load the datagrams quic-go read before a handshake
		// completed include retransmissions and post-handshake packets:
		// the shape handshakes, one at a time, measure the flight. TCP's
		// initial window does not apply.
		r.ServerFlightBytes, r.ExceedsInitCwnd = 0, false
		if s.shape != nil && s.shape.Handshakes > 0 {
			r.ServerFlightBytes = s.shape.ServerHandshakeBytes
		}
	}
	if s.opts.ServerPID > 0 {
		r.ServerCPU = serverCPU / time.Duration(r.Succeeded)
	}
	r.ClientCPU = clientCPU / time.Duration(r.Succeeded)
	return r, nil
}
