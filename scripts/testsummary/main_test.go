package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// When TESTSUMMARY_FAKE_GO_TEST is set, the test binary plays `go test
// -json`: it prints one skip and exits with that status.
func TestMain(m *testing.M) {
	if code := os.Getenv("TESTSUMMARY_FAKE_GO_TEST"); code != "" {
		fmt.Println(`{"Action":"output","Package":"example.com/m/p","Test":"TestX","Output":"    x_test.go:9: nginx is not installed\n"}`)
		fmt.Println(`{"Action":"skip","Package":"example.com/m/p","Test":"TestX"}`)
		fmt.Println(`{"Action":"output","Package":"example.com/m/p","Output":"FAIL\texample.com/m/p\t0.1s\n"}`)
		var n int
		fmt.Sscan(code, &n)
		os.Exit(n)
	}
	os.Exit(m.Run())
}

// TestExitStatus checks that `make test` fails exactly when go test does.
func TestExitStatus(t *testing.T) {
	for _, code := range []int{0, 1, 2} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Setenv("TESTSUMMARY_FAKE_GO_TEST", fmt.Sprint(code))
			var stdout, stderr bytes.Buffer
			got := run([]string{"-trim", "example.com/m/", os.Args[0]}, &stdout, &stderr)
			if got != code {
				t.Errorf("exit status %d, want the command's %d (stderr %q)", got, code, stderr.String())
			}
			if !strings.Contains(stdout.String(), "skipped tests: 1 ") || !strings.Contains(stdout.String(), "  p TestX: nginx is not installed\n") {
				t.Errorf("no skip summary:\n%s", stdout.String())
			}
		})
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if got := run(nil, &stdout, &stderr); got != 2 || !strings.Contains(stderr.String(), "usage: testsummary") {
		t.Errorf("run() = %d, stderr %q; want 2 and the usage", got, stderr.String())
	}
	if got := run([]string{"/nonexistent/go"}, &stdout, &stderr); got != 2 || !strings.Contains(stderr.String(), "failed to run /nonexistent/go") {
		t.Errorf("run(missing command) = %d, stderr %q; want 2 and the reason", got, stderr.String())
	}
}
