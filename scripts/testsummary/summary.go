package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json's TestEvent).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	OutputType string // "frame" for the === and --- lines (Go 1.25+)
}

// Skip is one skipped test and why.
type Skip struct {
	Package, Test string
	Reason        string // the test's own lines, without file:line prefixes
}

// maxTestOutput caps what is kept of one test's output while it runs; a
// test that logs without end must not make the summary grow without end.
// Beyond it the output of a failing test is cut, with a note.
const maxTestOutput = 256 << 10

// summary turns the event stream into what plain `go test` prints (package
// results, and the output of failing tests only) and collects the skips.
type summary struct {
	out     io.Writer
	running map[testKey]*testOutput
	skips   []Skip
}

type testKey struct{ pkg, test string }

type testOutput struct {
	buf       bytes.Buffer
	reason    []string // non-frame lines: what a skip says
	truncated bool
}

func newSummary(out io.Writer) *summary {
	return &summary{out: out, running: map[testKey]*testOutput{}}
}

// line handles one line of go test's output. Lines that are not events
// (go's own messages, a toolchain download) are printed as they are.
func (s *summary) line(raw []byte) {
	var ev event
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &ev) != nil || ev.Action == "" {
		s.out.Write(raw)
		s.out.Write([]byte{'\n'})
		return
	}
	switch {
	case ev.Action == "build-output":
		io.WriteString(s.out, ev.Output)
	case ev.Test == "":
		s.packageEvent(ev)
	default:
		s.testEvent(ev)
	}
}

func (s *summary) packageEvent(ev event) {
	// Plain go test prints no PASS line for a passing package, only its
	// "ok" line; everything else (FAIL lines, panics outside a test,
	// "[no test files]") is printed.
	if ev.Action == "output" && ev.Output != "PASS\n" {
		io.WriteString(s.out, ev.Output)
	}
}

func (s *summary) testEvent(ev event) {
	k := testKey{ev.Package, ev.Test}
	t := s.running[k]
	if t == nil {
		t = &testOutput{}
		s.running[k] = t
	}
	switch ev.Action {
	case "output":
		if !isFrame(ev) {
			t.reason = appendCapped(t.reason, ev.Output)
		}
		if strings.HasPrefix(ev.Output, "=== ") {
			return // === RUN, PAUSE, CONT: plain go test prints none
		}
		if t.buf.Len()+len(ev.Output) > maxTestOutput {
			t.truncated = true
			return
		}
		t.buf.WriteString(ev.Output)
	case "fail":
		s.flush(t)
		delete(s.running, k)
	case "pass":
		delete(s.running, k)
	case "skip":
		s.skips = append(s.skips, Skip{Package: ev.Package, Test: ev.Test, Reason: skipReason(t.reason)})
		delete(s.running, k)
	}
}

// flush prints a failing (or never finished) test's output.
func (s *summary) flush(t *testOutput) {
	s.out.Write(t.buf.Bytes())
	if t.truncated {
		fmt.Fprintf(s.out, "    [output cut at %d KiB]\n", maxTestOutput>>10)
	}
}

// isFrame reports the === RUN / --- SKIP lines go test adds around a
// test's own output (marked since Go 1.25; matched by text before).
func isFrame(ev event) bool {
	if ev.OutputType == "frame" {
		return true
	}
	return strings.HasPrefix(ev.Output, "=== ") || strings.HasPrefix(strings.TrimSpace(ev.Output), "--- ")
}

// appendCapped keeps at most a few reason lines: a skip message is one
// line, and the summary shows one line per test.
func appendCapped(lines []string, s string) []string {
	if len(lines) >= 8 {
		return lines
	}
	return append(lines, s)
}

// fileLine is the "name_test.go:12: " prefix testing puts before a message.
var fileLine = regexp.MustCompile(`^\S+\.go:\d+: ?`)

func skipReason(lines []string) string {
	var parts []string
	for _, l := range lines {
		l = fileLine.ReplaceAllString(strings.TrimSpace(l), "")
		if l != "" {
			parts = append(parts, l)
		}
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " / ")
}

// finish prints the output of tests that never ended (a panic or a
// timeout killed the binary: their output says why) and then the skips.
func (s *summary) finish(trim string) {
	keys := make([]testKey, 0, len(s.running))
	for k := range s.running {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b testKey) int { return strings.Compare(a.pkg+" "+a.test, b.pkg+" "+b.test) })
	for _, k := range keys {
		if t := s.running[k]; t.buf.Len() > 0 {
			s.flush(t)
		}
	}
	s.printSkips(trim)
}

func (s *summary) printSkips(trim string) {
	if len(s.skips) == 0 {
		fmt.Fprintln(s.out, "\nskipped tests: none")
		return
	}
	slices.SortStableFunc(s.skips, func(a, b Skip) int { return strings.Compare(a.Package+" "+a.Test, b.Package+" "+b.Test) })
	fmt.Fprintf(s.out, "\nskipped tests: %d (with their reasons; `make peers` installs missing peers)\n", len(s.skips))
	for _, sk := range s.skips {
		fmt.Fprintf(s.out, "  %s %s: %s\n", strings.TrimPrefix(sk.Package, trim), sk.Test, sk.Reason)
	}
}
