package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pqedge/pqedge/bench"
)

// `bench handshake -replay` through the real command: the JSON report and
// the table both say the attempts were replayed ClientHellos, and every one
// got the whole flight.
func TestRunBenchHandshakeReplay(t *testing.T) {
	addr := startTLSTarget(t)
	var stdout, stderr bytes.Buffer
	code := runBench([]string{"handshake", "-target", addr, "-replay", "-count", "16", "-concurrency", "4", "-sources", "4", "-json"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout.String())
	}
	if rep.Succeeded != 16 || rep.Failed != 0 || rep.Replay == nil || rep.Replay.Client != bench.ReplayClient || rep.Replay.FlightBytes <= 0 {
		t.Fatalf("report: %+v, replay %+v", rep, rep.Replay)
	}

	stdout.Reset()
	stderr.Reset()
	if code := runBench([]string{"handshake", "-target", addr, "-replay", "-count", "4", "-rate", "1000"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{bench.ReplayClient, "4 whole flights, 0 failed", "whole flights/s", "open loop"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
}
