package bench

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/pqtls/leanclient"
)

// The counters `bench overload` reads from pqedge's /metrics: completed
// handshakes and failures summed over their labels, refusals by reason.
func TestParseCounters(t *testing.T) {
	data, err := os.ReadFile("testdata/pqedge-metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseCounters(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]float64{metricHandshakes: 16, metricRefused + "{handshake_queue}": 850}
	got := frontCounters(before, after)
	want := FrontCounters{Handshakes: 3821, HandshakeFailures: 9, Queued: 3537,
		Refused: map[string]float64{"connections": 0, "handshake_queue": 5000, "handshake_wait": 12, "per_client": 3}}
	if got.Handshakes != want.Handshakes || got.HandshakeFailures != want.HandshakeFailures || got.Queued != want.Queued {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for k, v := range want.Refused {
		if got.Refused[k] != v {
			t.Errorf("refused %s: %v, want %v", k, got.Refused[k], v)
		}
	}
	if got.RefusedTotal() != 5015 {
		t.Errorf("refused in all %v, want 5015", got.RefusedTotal())
	}
	if got.BudgetWaited != 1.25 {
		t.Errorf("CPU budget waited %v s, want 1.25", got.BudgetWaited)
	}
	// A pqedge without a CPU budget has no such counter: zero, no error.
	older, err := parseCounters(strings.NewReader(strings.ReplaceAll(string(data), metricBudgetWaited, "pqedge_other_seconds_total")))
	if err != nil {
		t.Fatalf("metrics without the CPU budget's counter: %v", err)
	}
	if c := frontCounters(before, older); c.BudgetWaited != 0 {
		t.Errorf("CPU budget waited %v s without its counter, want 0", c.BudgetWaited)
	}

	tests := []struct{ name, text, want string }{
		{"a counter missing", strings.ReplaceAll(string(data), "pqedge_handshakes_queued_total", "pqedge_other_total"), "lack pqedge_handshakes_queued_total"},
		{"not the text format", "<html>admin</html>\n", "failed to parse pqedge's metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseCounters(strings.NewReader(tt.text)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzParseCounters(f *testing.F) {
	data, err := os.ReadFile("testdata/pqedge-metrics.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("pqedge_handshakes_total 1\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := parseCounters(bytes.NewReader(in))
		if err == nil && len(m) < 4 {
			t.Errorf("parsed without error but %d counters", len(m))
		}
	})
}

// SpreadDial makes each connection from the next loopback source address,
// wrapping around after n.
func TestSpreadDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			seen <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}
	}()
	dial, err := SpreadDial(3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 4 {
		// The listener closes at once: the handshake fails, the source
		// address is what counts.
		dial(context.Background(), ln.Addr().String(), &leanclient.Config{ServerName: "localhost", Timeout: 5 * time.Second})
		select {
		case ip := <-seen:
			got = append(got, ip)
		case <-time.After(5 * time.Second):
			t.Fatal("no connection arrived")
		}
	}
	if want := []string{"127.1.0.1", "127.1.0.2", "127.1.0.0", "127.1.0.1"}; !slices.Equal(got, want) {
		t.Errorf("sources %v, want %v", got, want)
	}
	for _, n := range []int{0, MaxSources + 1} {
		if _, err := SpreadDial(n); err == nil {
			t.Errorf("SpreadDial(%d) accepted", n)
		}
	}
}

// The control's requests go in clear text straight to an HTTP/1.1 server
// on kept-alive connections, and each phase counts what was answered.
func TestKeepAliveInClearText(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != BenchPath {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		conns[r.RemoteAddr]++
		mu.Unlock()
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	ctx := context.Background()
	ka, err := openKeepAlive(ctx, srv.Listener.Addr().String(), nil, 2, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ka.Close()
	p := ka.phase(ctx, 40, 500*time.Millisecond)
	if p.Failed != 0 || p.Requests < 10 {
		t.Errorf("phase answered %d, failed %d (%v); want about 20 answered, none failed", p.Requests, p.Failed, p.Errors)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 2 {
		t.Errorf("requests came on %d connections, want the 2 kept alive: %v", len(conns), conns)
	}
}

// A front's control ratio is the median of its runs'; runs without a
// control leave it 0.
func TestSummarizeOverloadControl(t *testing.T) {
	run := func(ratio float64, control *OverloadControl) OverloadRun {
		return OverloadRun{Ratio: ratio, Control: control}
	}
	f := OverloadFront{Runs: []OverloadRun{
		run(3, &OverloadControl{Ratio: 1.5}), run(2, &OverloadControl{Ratio: 4}), run(5, &OverloadControl{Ratio: 2}),
	}}
	summarizeOverload(&f)
	if f.Ratio != 3 || f.ControlRatio != 2 {
		t.Errorf("ratio %v, control ratio %v; want 3 and 2", f.Ratio, f.ControlRatio)
	}
	g := OverloadFront{Runs: []OverloadRun{run(3, nil)}}
	summarizeOverload(&g)
	if g.ControlRatio != 0 {
		t.Errorf("control ratio without a control %v, want 0", g.ControlRatio)
	}
}
