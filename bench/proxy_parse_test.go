package bench

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// The parsers of `bench proxy` read other programs' output: h2load's
// summary and request log, nginx's stub_status, a Go front's expvar and
// goroutine profile, /proc statm. Each is tested on real captures in
// testdata and fuzzed.

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseH2LoadSummary(t *testing.T) {
	tests := []struct {
		file string
		want H2LoadSummary
	}{
		{"h2load-h1.txt", H2LoadSummary{}},
		{"h2load-h2-503.txt", H2LoadSummary{Elapsed: 301990 * time.Microsecond, Done: 7103, Failed: 7103, Status: [4]int64{0, 0, 0, 7103}}},
		{"h2load-refused.txt", H2LoadSummary{Elapsed: 1890 * time.Microsecond, Failed: 4, Errored: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := parseH2LoadSummary(readTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == (H2LoadSummary{}) {
				// The capture of a healthy run: everything done succeeded.
				if got.Done == 0 || got.Succeeded != got.Done || got.Failed != 0 || got.Status[0] != got.Done || got.Elapsed <= 0 {
					t.Errorf("got %+v", got)
				}
				return
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseH2LoadSummaryErrors(t *testing.T) {
	full := string(readTestdata(t, "h2load-h1.txt"))
	tests := []struct {
		name, out, want string
	}{
		{"empty", "", "no summary"},
		{"no status line", strings.Replace(full, "status codes:", "status:", 1), "no summary"},
		{"bad duration", strings.Replace(full, "finished in ", "finished in 1.0xs, ", 1), "duration"},
		{"negative count", strings.Replace(full, "requests: ", "requests: -1 total, ", 1), "count"},
		{"count without name", strings.Replace(full, "requests: ", "requests: 5, ", 1), "count"},
		{"no done", "finished in 1s, 0 req/s\nrequests: 1 total\nstatus codes: 1 2xx\n", "no done count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseH2LoadSummary([]byte(tt.out))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestParseH2LoadLog(t *testing.T) {
	got, err := parseH2LoadLog(bytes.NewReader(readTestdata(t, "h2load-log.tsv")), 100)
	if err != nil {
		t.Fatal(err)
	}
	// Five 200s; the three 503s are not latencies of successful requests.
	want := []time.Duration{7223 * time.Microsecond, 7451 * time.Microsecond, 7461 * time.Microsecond, 7471 * time.Microsecond, 243 * time.Microsecond}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sample %d: %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []struct{ name, log string }{
		{"two columns", "1\t200\n"},
		{"text status", "1\tok\t5\n"},
		{"negative duration", "1\t200\t-5\n"},
		{"over a day", "1\t200\t90000000000\n"},
		{"line too long", strings.Repeat("1", 5000) + "\n"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			if _, err := parseH2LoadLog(strings.NewReader(bad.log), 100); err == nil {
				t.Errorf("parsed %q", bad.log)
			}
		})
	}
	if _, err := parseH2LoadLog(strings.NewReader("1\t200\t5\n1\t200\t6\n"), 1); err == nil {
		t.Error("read more samples than the limit")
	}
}

func TestParseH2LoadDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"1.00s": time.Second, "500.12ms": 500120 * time.Microsecond, "60us": 60 * time.Microsecond, "0us": 0,
	} {
		if got, err := parseH2LoadDuration(in); err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "s", "1h", "-1s", "1e20s", "NaNs"} {
		if d, err := parseH2LoadDuration(bad); err == nil {
			t.Errorf("%q parsed as %v", bad, d)
		}
	}
}

func TestParseSmallFormats(t *testing.T) {
	if n, err := parseStubStatusAccepts(readTestdata(t, "nginx-stub-status.txt")); err != nil || n != 7 {
		t.Errorf("stub_status accepts: %d, %v; want 7", n, err)
	}
	if n, err := parseGoroutineTotal(readTestdata(t, "goroutine-debug1.txt")); err != nil || n != 7 {
		t.Errorf("goroutine total: %d, %v; want 7", n, err)
	}
	ms, err := parseExpvarMemStats(readTestdata(t, "expvar.json"))
	if err != nil || ms.Mallocs == 0 || ms.TotalAlloc == 0 || ms.HeapAlloc == 0 || ms.StackInuse == 0 {
		t.Errorf("memstats: %+v, %v", ms, err)
	}
	if n, err := parseStatmResident(readTestdata(t, "statm-init.txt")); err != nil || n != 3848 {
		t.Errorf("statm resident: %d, %v; want 3848", n, err)
	}
	for _, bad := range []struct {
		name  string
		parse func([]byte) error
		in    string
	}{
		{"stub_status without counters", func(b []byte) error { _, err := parseStubStatusAccepts(b); return err }, "Active connections: 1\nserver accepts handled requests\n"},
		{"stub_status text counter", func(b []byte) error { _, err := parseStubStatusAccepts(b); return err }, "server accepts handled requests\n a b c\n"},
		{"goroutine profile of another kind", func(b []byte) error { _, err := parseGoroutineTotal(b); return err }, "heap profile: 1: 2 [3: 4] @ heap/1048576\n"},
		{"expvar without memstats", func(b []byte) error { _, err := parseExpvarMemStats(b); return err }, `{"cmdline": []}`},
		{"expvar not JSON", func(b []byte) error { _, err := parseExpvarMemStats(b); return err }, "memstats"},
		{"statm one field", func(b []byte) error { _, err := parseStatmResident(b); return err }, "12"},
		{"statm negative", func(b []byte) error { _, err := parseStatmResident(b); return err }, "12 -3"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			if err := bad.parse([]byte(bad.in)); err == nil {
				t.Errorf("parsed %q", bad.in)
			}
		})
	}
}

// FuzzParseH2LoadSummary: h2load's output, seeded with real runs (a
// healthy one, one of 503s, one refused). Parsed counts are never
// negative.
func FuzzParseH2LoadSummary(f *testing.F) {
	for _, name := range []string{"h2load-h1.txt", "h2load-h2-503.txt", "h2load-refused.txt"} {
		f.Add(readTestdata(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseH2LoadSummary(data)
		if err != nil {
			return
		}
		if s.Done < 0 || s.Succeeded < 0 || s.Failed < 0 || s.Elapsed < 0 {
			t.Fatalf("negative numbers from %q: %+v", data, s)
		}
	})
}

// FuzzParseH2LoadLog: h2load's request log; latencies are never negative.
func FuzzParseH2LoadLog(f *testing.F) {
	f.Add(readTestdata(f, "h2load-log.tsv"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseH2LoadLog(bytes.NewReader(data), 1000)
		if err != nil {
			return
		}
		for _, d := range got {
			if d < 0 {
				t.Fatalf("negative latency from %q", data)
			}
		}
	})
}

// FuzzParseDebugFormats feeds the same bytes to the parsers of nginx's
// stub_status, Go's goroutine profile, expvar and /proc statm, seeded with
// real captures: none may panic or return a negative count.
func FuzzParseDebugFormats(f *testing.F) {
	for _, name := range []string{"nginx-stub-status.txt", "goroutine-debug1.txt", "expvar.json", "statm-init.txt"} {
		f.Add(readTestdata(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if n, err := parseStubStatusAccepts(data); err == nil && n < 0 {
			t.Fatalf("negative accepts %d", n)
		}
		if n, err := parseGoroutineTotal(data); err == nil && n < 0 {
			t.Fatalf("negative goroutines %d", n)
		}
		parseExpvarMemStats(data)
		if n, err := parseStatmResident(data); err == nil && n < 0 {
			t.Fatalf("negative pages %d", n)
		}
	})
}
