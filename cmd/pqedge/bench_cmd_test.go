package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pqedge/pqedge/bench"
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
		{"unknown command", []string{"frob"}, 2, []string{`pqedge: error: unknown bench command "frob"`, "hint: commands are handshake, matrix and proxy"}, true},
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

func itoa(n int) string { return big.NewInt(int64(n)).String() }
