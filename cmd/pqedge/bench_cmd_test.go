package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/bench"
	"github.com/pqedge/pqedge/internal/peers"
)

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRunBenchErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		stderr   []string
		noStdout bool
	}{
		{"no command", nil, 2, []string{"usage: pqedge bench"}, true},
		{"unknown flag", []string{"matrix", "-frob"}, 2, []string{"flag provided but not defined: -frob", "hint: see `pqedge bench matrix --help`"}, true},
		{"infinite handshake rate", []string{"handshake", "-target", "127.0.0.1:1", "-rate", "Inf"}, 2, []string{`invalid value "+Inf" for flag -rate: want a finite number`, "hint: see `pqedge bench handshake --help`"}, true},
		{"unknown command", []string{"frob"}, 2, []string{`pqedge: error: unknown bench command "frob"`, "hint: commands are handshake, matrix, proxy and overload"}, true},
		{"no target", []string{"handshake"}, 2, []string{"needs -target HOST:PORT", "hint: try `pqedge bench handshake"}, true},
		{"bad group", []string{"handshake", "-target", "127.0.0.1:1", "-groups", "x25519,nope"}, 2, []string{"-groups:", "hint: group names are IANA names"}, true},
		{"bad sigalg", []string{"handshake", "-target", "127.0.0.1:1", "-sigalgs", "md5"}, 2, []string{"-sigalgs:", "hint: signature names"}, true},
		{"resume typo", []string{"handshake", "-target", "127.0.0.1:1", "-resume", "yes"}, 2, []string{`-resume "yes": want on or off`}, true},
		{"bad pid", []string{"handshake", "-target", "127.0.0.1:1", "-count", "1", "-server-pid", "999999999"}, 2, []string{"-server-pid 999999999", "hint: give the pid"}, true},
		{"matrix bad cert", []string{"matrix", "-certs", "dsa"}, 2, []string{`unknown certificate algorithm "dsa"`}, true},
		{"matrix unservable group", []string{"matrix", "-groups", "MLKEM512"}, 2, []string{"-groups:", "hint: the matrix's servers"}, true},
		{"matrix bad server", []string{"matrix", "-servers", "caddy"}, 2, []string{`unknown server "caddy"`, "hint: servers are pqedge, plain and nginx"}, true},
		{"serve-plain without cert", []string{"serve-plain"}, 2, []string{"needs -cert FILE and -key FILE"}, true},
		{"empty groups", []string{"handshake", "-target", "127.0.0.1:1", "-groups", " , "}, 2, []string{`-groups " , " names no group`}, true},
		{"negative count", []string{"handshake", "-target", "127.0.0.1:1", "-count", "-1"}, 2, []string{"must not be negative"}, true},
		{"zero concurrency", []string{"handshake", "-target", "127.0.0.1:1", "-concurrency", "0"}, 2, []string{"-concurrency must be at least 1"}, true},
		{"handshake stray argument", []string{"handshake", "-target", "127.0.0.1:1", "extra"}, 2, []string{`unexpected argument "extra"`}, true},
		{"matrix empty groups", []string{"matrix", "-groups", ","}, 2, []string{`-groups "," names no group`}, true},
		{"matrix zero runs", []string{"matrix", "-runs", "0"}, 2, []string{"-runs, -concurrency and -initcwnd must be at least 1"}, true},
		{"matrix negative rtt", []string{"matrix", "-rtt", "-1ms"}, 2, []string{"-rtt not negative"}, true},
		{"matrix bad duration", []string{"matrix", "-duration", "soon"}, 2, []string{`invalid value "soon"`}, true},
		{"serve-plain bad signer", []string{"serve-plain", "-cert", "c", "-key", "k", "-signer", "openssl"}, 2, []string{"-signer:"}, true},
		{"relative request path", []string{"handshake", "-target", "127.0.0.1:1", "-request", "bench"}, 2, []string{`-request: path "bench": want an absolute path`}, true},
		{"request over quic", []string{"handshake", "-target", "127.0.0.1:1", "-transport", "quic", "-request", "/bench"}, 2, []string{"-request is measured over tcp only", "hint: drop -request"}, true},
		{"matrix request with spaces", []string{"matrix", "-request", "/a b"}, 2, []string{`-request: path "/a b"`, "hint: the upstream serves /bench"}, true},
		{"matrix request over quic", []string{"matrix", "-request", "/bench", "-transports", "tcp,quic"}, 2, []string{"-request is measured over tcp only", "hint: drop quic"}, true},
		{"matrix request without peers", []string{"matrix", "-request", "/bench", "-peers-dir", "/nonexistent"}, 1, []string{"-request needs the nginx upstream", "hint: run `make peers`"}, true},
		{"serve-plain bad group", []string{"serve-plain", "-cert", "c", "-key", "k", "-groups", "x9"}, 2, []string{"-groups:", "hint: group names are IANA names"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runBench(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if tt.noStdout && stdout.Len() > 0 {
				t.Errorf("stdout on error: %s", stdout.String())
			}
		})
	}
}

func TestRunBenchHandshake(t *testing.T) {
	addr := startTLSTarget(t)
	csvFile := filepath.Join(t.TempDir(), "out.csv")
	var stdout, stderr bytes.Buffer
	code := runBench([]string{"handshake", "-target", addr, "-count", "12", "-concurrency", "3", "-json", "-csv", csvFile, "-server-pid", itoa(os.Getpid())}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout.String())
	}
	if rep.Succeeded != 12 || rep.Failed != 0 || rep.Group != "X25519MLKEM768" || rep.Latency.P99 <= 0 {
		t.Errorf("report: %+v", rep)
	}
	data, err := os.ReadFile(csvFile)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil || len(rows) != 2 || rows[1][6] != "12" {
		t.Errorf("CSV %v: %q", err, rows)
	}

	stdout.Reset()
	stderr.Reset()
	if code := runBench([]string{"handshake", "-target", addr, "-count", "4", "-groups", "x25519"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{"handshakes", "4 ok, 0 failed", "x25519", "latency", "p99.9", "server flight", "fits the initial window"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
}

// -resume on: each of the 2 workers makes one full handshake, then resumes
// its ticket; crypto/tls accepts it again and again.
func TestRunBenchHandshakeResume(t *testing.T) {
	addr := startTLSTarget(t)
	csvFile := filepath.Join(t.TempDir(), "out.csv")
	var stdout, stderr bytes.Buffer
	code := runBench([]string{"handshake", "-target", addr, "-count", "10", "-concurrency", "2", "-resume", "on", "-json", "-csv", csvFile}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout.String())
	}
	if rep.Succeeded != 10 || !rep.Resume || rep.ResumedRate < 0.8 || rep.ResumedRate > 0.9 {
		t.Errorf("report: succeeded %d, resume %v, resumed rate %v (want 0.8 or 0.9: one full handshake per worker)", rep.Succeeded, rep.Resume, rep.ResumedRate)
	}
	data, err := os.ReadFile(csvFile)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil || len(rows) != 2 || rows[0][18] != "resumed_rate" || (rows[1][18] != "0.8000" && rows[1][18] != "0.9000") {
		t.Errorf("CSV %v: %q", err, rows)
	}

	stdout.Reset()
	if code := runBench([]string{"handshake", "-target", addr, "-count", "3", "-concurrency", "1", "-resume", "on"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "resumed") || !strings.Contains(stdout.String(), "66.7%") {
		t.Errorf("table lacks the resumed rate:\n%s", stdout.String())
	}
}

// A run where nothing succeeds prints the error table and no numbers, and
// exits 1.
func TestRunBenchHandshakeNothingSucceeds(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := runBench([]string{"handshake", "-target", closedPort(t), "-count", "3"}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "error dial") || !strings.Contains(stdout.String(), "0 ok, 3 failed") {
		t.Errorf("no error table:\n%s", stdout.String())
	}
	for _, number := range []string{"latency", "handshakes/s", "server flight"} {
		if strings.Contains(stdout.String(), number) {
			t.Errorf("a failed run reports %q:\n%s", number, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "pqedge: error: no handshake with") || !strings.Contains(stderr.String(), "hint: ") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

// -request: a handshake, GET, the response read to the close; a path the
// server does not serve makes every handshake an http-404 error.
func TestRunBenchHandshakeRequest(t *testing.T) {
	addr := startHTTPSTarget(t)
	var stdout, stderr bytes.Buffer
	code := runBench([]string{"handshake", "-target", addr, "-count", "6", "-concurrency", "2", "-request", "/hello", "-json"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout.String())
	}
	if rep.Succeeded != 6 || rep.Request != "/hello" || rep.ResponseBytes < float64(len("HTTP/1.1 200 OK\r\n\r\nhello\n")) {
		t.Errorf("report: succeeded %d, request %q, response %.0f B", rep.Succeeded, rep.Request, rep.ResponseBytes)
	}

	stdout.Reset()
	stderr.Reset()
	code = runBench([]string{"handshake", "-target", addr, "-count", "2", "-request", "/nothing-here"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stdout.String(), "error http-404") || !strings.Contains(stdout.String(), "GET /nothing-here answered HTTP status 404") {
		t.Errorf("exit %d; stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// `bench matrix -request` through the real main: pqedge, the plain Go
// proxy and nginx proxy GET /bench to the nginx upstream from the peer
// root, and every cell measures handshake + request + close. Not pinned:
// tests share the machine.
func TestRunBenchMatrixRequest(t *testing.T) {
	root := peers.Trixie(t)
	pqedge, err := exec.LookPath("pqedge")
	if err != nil {
		t.Fatalf("testscript put no pqedge on PATH: %v", err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pqedge, "bench", "matrix", "-request", bench.BenchPath, "-servers", "pqedge,plain,nginx",
		"-groups", "X25519MLKEM768", "-certs", "ecdsa-p256", "-runs", "1", "-duration", "300ms", "-concurrency", "2",
		"-pin=false", "-peers-dir", filepath.Dir(root.Root), "-out", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"each handshake: + GET /bench", "pqedge server CPU <= 1.05x the plain Go proxy"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), "FAILED") {
		t.Errorf("a cell failed:\n%s\n%s", stdout.String(), stderr.String())
	}
	var res bench.MatrixResult
	data, err := os.ReadFile(filepath.Join(out, "matrix.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil || res.Request != bench.BenchPath || len(res.Cells) != 3 {
		t.Fatalf("matrix.json: %v, request %q, %d cells", err, res.Request, len(res.Cells))
	}
	for _, c := range res.Cells {
		// The upstream's 1 KiB answer comes on top of the handshake.
		if c.Error != "" || c.ServerBytes < float64(c.ServerFlightBytes+1024) {
			t.Errorf("cell %s: error %q, server bytes %.0f, flight %d", c.Server, c.Error, c.ServerBytes, c.ServerFlightBytes)
		}
	}
}
