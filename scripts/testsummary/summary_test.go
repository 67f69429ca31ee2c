package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The testdata files are real `go test -json` output (Go 1.27) of a small
// module: mixed.json has a skip, a failing subtest, a passing test with a
// log line, a build failure, a package without tests and a panic;
// subtests.json a skipped subtest with a two-line reason and a parallel
// test skipped without a reason.

func summarize(t testing.TB, file string) (string, []Skip) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s := newSummary(&out)
	readLines(bytes.NewReader(data), s.line)
	s.finish("x/")
	return out.String(), s.skips
}

func TestSummary(t *testing.T) {
	tests := []struct {
		file       string
		skips      []Skip
		printed    []string // lines plain go test prints too
		notPrinted []string
	}{
		{
			file:  "testdata/mixed.json",
			skips: []Skip{{Package: "x", Test: "TestA", Reason: "peer chromium is not installed (run `make peers`)"}},
			printed: []string{
				"b/b_test.go:3:32: undefined: undefined\n", // build output
				"    a_test.go:4: hello\n    a_test.go:4: boom\n--- FAIL: TestB/sub (0.00s)\n",
				"--- FAIL: TestB (0.00s)\n",
				"FAIL\tx\t", "FAIL\tx/b [build failed]\n", "?   \tx/c\t[no test files]\n",
				"panic: assignment to entry in nil map", "FAIL\tx/d\t",
				"\nskipped tests: 1 (with their reasons; `make peers` installs missing peers)\n  x TestA: peer chromium is not installed (run `make peers`)\n",
			},
			// Passing and skipped tests' output is what plain go test hides.
			notPrinted: []string{"=== RUN", "a_test.go:5: x", "--- PASS", "--- SKIP", `"Action"`},
		},
		{
			file: "testdata/subtests.json",
			skips: []Skip{
				{Package: "x/e", Test: "TestPar", Reason: "(no reason given)"},
				{Package: "x/e", Test: "TestSkipSub/one", Reason: "needs firefox-esr / second line"},
			},
			printed:    []string{"ok  \tx/e\t", "  e TestPar: (no reason given)\n", "  e TestSkipSub/one: needs firefox-esr / second line\n"},
			notPrinted: []string{"PASS\n", "=== PAUSE", "=== CONT"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			out, skips := summarize(t, tt.file)
			if len(skips) != len(tt.skips) {
				t.Fatalf("skips = %+v, want %+v", skips, tt.skips)
			}
			for i := range skips {
				if skips[i] != tt.skips[i] {
					t.Errorf("skip %d = %+v, want %+v", i, skips[i], tt.skips[i])
				}
			}
			for _, p := range tt.printed {
				if !strings.Contains(out, p) {
					t.Errorf("output lacks %q:\n%s", p, out)
				}
			}
			for _, p := range tt.notPrinted {
				if strings.Contains(out, p) {
					t.Errorf("output has %q, which plain go test hides:\n%s", p, out)
				}
			}
		})
	}
}

func TestNoSkips(t *testing.T) {
	var out bytes.Buffer
	s := newSummary(&out)
	s.line([]byte(`{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}`))
	s.line([]byte("go: downloading go1.27.4 (linux/amd64)"))
	s.finish("")
	want := "ok  \tp\t0.1s\ngo: downloading go1.27.4 (linux/amd64)\n\nskipped tests: none\n"
	if out.String() != want {
		t.Errorf("output = %q, want %q", out.String(), want)
	}
}

// TestUnfinishedTestOutputIsPrinted: when a timeout kills the test binary,
// the test never ends; its output (the panic with the stuck goroutine)
// must still be shown.
func TestUnfinishedTestOutputIsPrinted(t *testing.T) {
	var out bytes.Buffer
	s := newSummary(&out)
	s.line([]byte(`{"Action":"output","Package":"p","Test":"TestHang","Output":"panic: test timed out after 20m0s\n"}`))
	s.finish("")
	if !strings.Contains(out.String(), "panic: test timed out after 20m0s\n") {
		t.Errorf("output of the unfinished test is lost:\n%s", out.String())
	}
}

func TestOutputCap(t *testing.T) {
	var out bytes.Buffer
	s := newSummary(&out)
	line := []byte(`{"Action":"output","Package":"p","Test":"TestLoud","Output":"` + strings.Repeat("a", 1000) + `\n"}`)
	for range 2 * maxTestOutput / 1000 {
		s.line(line)
	}
	s.line([]byte(`{"Action":"fail","Package":"p","Test":"TestLoud"}`))
	if n := out.Len(); n > maxTestOutput+100 {
		t.Errorf("printed %d bytes of one test, cap is %d", n, maxTestOutput)
	}
	if !strings.Contains(out.String(), "[output cut at 256 KiB]") {
		t.Error("a cut output does not say so")
	}
}

func FuzzSummary(f *testing.F) {
	for _, file := range []string{"testdata/mixed.json", "testdata/subtests.json"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("{\"Action\":\"skip\"}\n{not json\n\n{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		s := newSummary(&out)
		readLines(bytes.NewReader(data), s.line)
		s.finish("")
		for _, sk := range s.skips {
			if sk.Reason == "" {
				t.Errorf("skip %+v has an empty reason", sk)
			}
		}
	})
}
