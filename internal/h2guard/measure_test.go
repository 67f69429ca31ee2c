package h2guard

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pqedge/pqedge/proxy"
)

// TestMeasureRapidReset measures what one rapid-reset connection costs a
// real HTTP/2 server in front of a real upstream (proxy.HTTPProxy), with
// and without the guard: the server's peak RSS growth, how many of the
// reset requests reached the upstream, and how long the connection lived.
// The numbers are in docs/BENCHMARKS.md. It runs only when asked:
//
//	PQEDGE_H2_MEASURE=1 go test -run TestMeasureRapidReset -v -timeout 10m ./internal/h2guard
//
// The server runs in a child process (this test binary again), pinned to
// CPU 0 with taskset when it is present, so its RSS is its own.
func TestMeasureRapidReset(t *testing.T) {
	if os.Getenv("H2GUARD_CHILD") != "" {
		serveChild(t)
		return
	}
	if os.Getenv("PQEDGE_H2_MEASURE") == "" {
		t.Skip("a measurement: set PQEDGE_H2_MEASURE=1 to run it")
	}
	var upstreamRequests atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamRequests.Add(1)
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	const runs = 3
	for _, guard := range []bool{false, true} {
		for run := range runs {
			upstreamRequests.Store(0)
			m := measureOnce(t, up.Listener.Addr().String(), guard)
			m.upstream = upstreamRequests.Load()
			t.Logf("guard=%v run=%d: peak RSS growth %.1f MiB (baseline %.1f MiB), %d resets sent in %v before the server closed=%v, %d requests reached the upstream (%.2f%%)",
				guard, run+1, float64(m.peakGrowth)/(1<<20), float64(m.baseline)/(1<<20), m.sent, m.lived.Round(time.Millisecond), m.closed,
				m.upstream, 100*float64(m.upstream)/float64(max(m.sent, 1)))
		}
	}
}

type measurement struct {
	baseline, peakGrowth int64
	sent, upstream       int64
	lived                time.Duration
	closed               bool
}

// attackFor is how long one rapid-reset connection is kept up if the
// server does not close it first.
const attackFor = 10 * time.Second

func measureOnce(t *testing.T, upstream string, guard bool) measurement {
	args := []string{os.Args[0], "-test.run=^TestMeasureRapidReset$"}
	if path, err := exec.LookPath("taskset"); err == nil {
		args = append([]string{path, "-c", "0"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "H2GUARD_CHILD=1", "H2GUARD_UPSTREAM="+upstream, "H2GUARD_ON="+strconv.FormatBool(guard))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("the server child did not start")
	}
	go io.Copy(io.Discard, out)
	pid := cmd.Process.Pid
	// The child's own pid, not taskset's: taskset execs it, keeping the pid.
	time.Sleep(200 * time.Millisecond) // let the child settle before the baseline
	m := measurement{baseline: procKiB(t, pid, "VmRSS") << 10}

	r := dialRaw(t, addr)
	start := time.Now()
	stop := make(chan struct{})
	done := make(chan struct{})
	var sent atomic.Int64
	go func() {
		defer close(done)
		w := bufio.NewWriterSize(r.c, 64<<10)
		r.c.SetWriteDeadline(time.Now().Add(attackFor + 5*time.Second))
		for id := uint32(1); id < 1<<31-2; id += 2 {
			select {
			case <-stop:
				w.Flush()
				return
			default:
			}
			w.Write(headers(id, flagEndHeaders|flagEndStream))
			if _, err := w.Write(rst(id)); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	peak := m.baseline
	timeout := time.After(attackFor)
sample:
	for {
		select {
		case <-r.closed:
			m.closed = true
			break sample
		case <-timeout:
			break sample
		case <-time.After(10 * time.Millisecond):
			peak = max(peak, procKiB(t, pid, "VmRSS")<<10)
		}
	}
	m.lived = time.Since(start)
	close(stop)
	<-done
	// VmHWM catches a peak between two samples.
	peak = max(peak, procKiB(t, pid, "VmHWM")<<10)
	m.peakGrowth = peak - m.baseline
	m.sent = sent.Load()
	time.Sleep(500 * time.Millisecond) // let requests already sent reach the upstream
	return m
}

// procKiB reads a "Vm..." line of /proc/PID/status, in KiB.
func procKiB(t *testing.T, pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// serveChild is the measured server: TLS with HTTP/2, every connection
// under the guard when H2GUARD_ON is true, proxying to H2GUARD_UPSTREAM.
func serveChild(t *testing.T) {
	runtime.GOMAXPROCS(1)
	pool, err := proxy.NewPool("up", proxy.PoolOptions{Addresses: []string{os.Getenv("H2GUARD_UPSTREAM")}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2", "http/1.1"}}
	var wrapped net.Listener = tlsListener{ln, cfg}
	if os.Getenv("H2GUARD_ON") == "true" {
		wrapped = guardedListener{Listener: ln, cfg: cfg}
	}
	srv := &http.Server{
		Handler:   proxy.NewHTTPProxy(pool, proxy.HTTPOptions{}),
		TLSConfig: &tls.Config{NextProtos: []string{"h2", "http/1.1"}},
		ErrorLog:  nil,
	}
	fmt.Printf("listening %s\n", ln.Addr())
	srv.Serve(wrapped)
}

// tlsListener handshakes like guardedListener, without a guard.
type tlsListener struct {
	net.Listener
	cfg *tls.Config
}

func (l tlsListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(c, l.cfg)
		if err := tc.Handshake(); err != nil {
			c.Close()
			continue
		}
		return tc, nil
	}
}

// measureTarget is the running pqedge a TestMeasure* test measures, from
// PQEDGE_H2_TARGET (its address) and PQEDGE_H2_PID; the test is skipped
// when they are not set.
func measureTarget(t *testing.T) (target string, pid int) {
	target, pidText := os.Getenv("PQEDGE_H2_TARGET"), os.Getenv("PQEDGE_H2_PID")
	if target == "" || pidText == "" {
		t.Skip("a measurement: set PQEDGE_H2_TARGET and PQEDGE_H2_PID to run it")
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		t.Fatalf("PQEDGE_H2_PID %q: %v", pidText, err)
	}
	return target, pid
}

// measureKind says whether the kind named is measured: all of them, or
// only the one PQEDGE_H2_KIND names.
func measureKind(name string) bool {
	only := os.Getenv("PQEDGE_H2_KIND")
	return only == "" || only == name
}
