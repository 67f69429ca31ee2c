package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// H2Load runs h2load (nghttp2) from the Debian peer root: the load
// generator of the HTTP modes. It is written in C on one event loop, so it
// spends far less CPU per request than a Go client would on the core it
// shares with the upstream, and it speaks HTTP/1.1 and HTTP/2 with the
// same code.
type H2Load struct {
	Root string // the peer root holding /usr/bin/h2load
}

// H2LoadPresent reports why root cannot run h2load, or nil.
func H2LoadPresent(root string) error {
	if _, err := os.Stat(filepath.Join(root, "usr/bin/h2load")); err != nil {
		return fmt.Errorf("no h2load in %s (nghttp2-client; run `make peers`)", root)
	}
	return nil
}

// H2LoadOptions are one h2load run.
type H2LoadOptions struct {
	// URL is what is asked for (its host is the SNI and the Host), and
	// ConnectTo the HOST:PORT connected to instead of the URL's.
	URL, ConnectTo string
	Clients        int  // connections
	Streams        int  // requests in flight per connection (HTTP/2 streams)
	HTTP1          bool // HTTP/1.1 instead of HTTP/2 (one request in flight per connection)
	// Warmup is load before the measured Duration (h2load's
	// --warm-up-time): connections are made and the front warms up, and
	// nothing is counted.
	Warmup, Duration time.Duration
	Groups           []tls.CurveID
	// Timeout ends a connection that sees no activity this long, so a
	// stalled front ends the run with timeouts instead of hanging it.
	Timeout time.Duration

	// MainStarted and MainEnded, when set, are called with h2load's
	// process id as it announces the start and the end of its measured
	// phase (on its output, which it flushes line by line): the caller
	// reads CPU times there, so the connections' handshakes, the warm-up
	// and the requests cut at the end stay outside the measurement. An
	// error from either ends the run.
	MainStarted, MainEnded func(pid int) error
}

// H2LoadResult is what one h2load run reported.
type H2LoadResult struct {
	Summary H2LoadSummary
	// Latencies are those of successful (2xx) requests, unsorted.
	Latencies []time.Duration
	// CPU is h2load's own user plus system time.
	CPU time.Duration
}

// maxLatencySamples caps the per-request log read back from h2load (8 B
// each): far above what a run of minutes at this machine's rates makes.
const maxLatencySamples = 20_000_000

// Run runs h2load once. An error means h2load could not run, its output
// could not be read or a callback failed; failed requests are in the
// summary.
func (h H2Load) Run(ctx context.Context, o H2LoadOptions) (*H2LoadResult, error) {
	host, err := os.MkdirTemp(filepath.Join(h.Root, "tmp"), "pqedge-h2load-")
	if err != nil {
		return nil, fmt.Errorf("failed to make a directory in the peer root: %w", err)
	}
	defer os.RemoveAll(host)
	inside := "/" + strings.TrimPrefix(strings.TrimPrefix(host, h.Root), "/")
	ctx, cancel := context.WithTimeout(ctx, o.Warmup+o.Duration+o.Timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chroot", append([]string{h.Root, "/usr/bin/h2load"}, h2loadArgs(o, inside+"/requests.tsv")...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	out := &limitedBuffer{max: 64 << 10}
	cmd.Stderr = out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start h2load: %w", err)
	}
	phases, cbErr := h2loadPhases(stdout, out, o, cmd.Process.Pid, cancel)
	runErr := cmd.Wait()
	res := &H2LoadResult{}
	if ps := cmd.ProcessState; ps != nil {
		res.CPU = ps.UserTime() + ps.SystemTime()
	}
	switch {
	case cbErr != nil:
		return nil, cbErr
	case runErr != nil:
		return nil, fmt.Errorf("h2load failed (%v): %s", runErr, lastLines(out.String(), 5))
	case phases != 2 && (o.MainStarted != nil || o.MainEnded != nil):
		return nil, fmt.Errorf("h2load did not announce its measured phase: %s", lastLines(out.String(), 5))
	}
	if res.Summary, err = parseH2LoadSummary([]byte(out.String())); err != nil {
		return nil, fmt.Errorf("%w: %s", err, lastLines(out.String(), 5))
	}
	f, err := os.Open(filepath.Join(host, "requests.tsv"))
	if err != nil {
		return nil, fmt.Errorf("failed to read h2load's request log: %w", err)
	}
	defer f.Close()
	if res.Latencies, err = parseH2LoadLog(f, maxLatencySamples); err != nil {
		return nil, err
	}
	return res, nil
}

// h2loadPhases copies h2load's output to out, calling the callbacks on
// the lines that start and end the measured phase; it returns how many of
// the two it saw. A callback error cancels the run.
func h2loadPhases(stdout io.Reader, out io.Writer, o H2LoadOptions, pid int, cancel func()) (int, error) {
	sc := bufio.NewScanner(stdout)
	seen := 0
	var err error
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(out, line)
		var cb func(int) error
		switch {
		case strings.HasPrefix(line, "Main benchmark duration is started"):
			cb, seen = o.MainStarted, seen+1
		case strings.HasPrefix(line, "Main benchmark duration is over"):
			cb, seen = o.MainEnded, seen+1
		}
		if cb != nil && err == nil {
			if err = cb(pid); err != nil {
				cancel()
			}
		}
	}
	return seen, err
}

func h2loadArgs(o H2LoadOptions, logFile string) []string {
	args := []string{
		"-c", strconv.Itoa(max(1, o.Clients)),
		"-D", strconv.FormatInt(max(1, int64(o.Duration.Round(time.Millisecond)/time.Millisecond)), 10) + "ms",
		"-N", strconv.FormatInt(max(1, int64(o.Timeout/time.Second)), 10) + "s",
		"-t", "1",
		"--log-file", logFile,
	}
	if o.Warmup > 0 {
		args = append(args, "--warm-up-time", strconv.FormatInt(max(1, int64(o.Warmup/time.Millisecond)), 10)+"ms")
	}
	if o.HTTP1 {
		args = append(args, "--h1")
	} else {
		args = append(args, "-m", strconv.Itoa(max(1, o.Streams)))
	}
	if o.ConnectTo != "" {
		args = append(args, "--connect-to", o.ConnectTo)
	}
	if len(o.Groups) > 0 {
		args = append(args, "--groups", strings.Join(groupNames(o.Groups), ":"))
	}
	return append(args, o.URL)
}

// H2LoadSummary is the totals h2load prints at the end of a run.
type H2LoadSummary struct {
	Elapsed time.Duration // "finished in": the main duration
	// Request counts of the "requests:" line. Done counts requests that
	// completed, whatever their status; Failed includes Errored and
	// TimedOut.
	Done, Succeeded, Failed, Errored, TimedOut int64
	// Status counts the "status codes:" line: [0] 2xx ... [3] 5xx.
	Status [4]int64
}

// parseH2LoadSummary reads the "finished in", "requests:" and "status
// codes:" lines of h2load's output (nghttp2 1.64).
func parseH2LoadSummary(out []byte) (H2LoadSummary, error) {
	var s H2LoadSummary
	var seen int
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "finished in "):
			f := strings.Fields(strings.TrimPrefix(line, "finished in "))
			if len(f) == 0 {
				return s, errors.New("failed to parse h2load output: empty \"finished in\" line")
			}
			d, err := parseH2LoadDuration(strings.TrimSuffix(f[0], ","))
			if err != nil {
				return s, err
			}
			s.Elapsed = d
			seen |= 1
		case strings.HasPrefix(line, "requests: "):
			counts, err := parseCounts(strings.TrimPrefix(line, "requests: "))
			if err != nil {
				return s, err
			}
			s.Done, s.Succeeded, s.Failed = counts["done"], counts["succeeded"], counts["failed"]
			s.Errored, s.TimedOut = counts["errored"], counts["timeout"]
			if _, ok := counts["done"]; !ok {
				return s, errors.New("failed to parse h2load output: no done count in the requests line")
			}
			seen |= 2
		case strings.HasPrefix(line, "status codes: "):
			counts, err := parseCounts(strings.TrimPrefix(line, "status codes: "))
			if err != nil {
				return s, err
			}
			for i, k := range []string{"2xx", "3xx", "4xx", "5xx"} {
				s.Status[i] = counts[k]
			}
			seen |= 4
		}
	}
	if seen != 7 {
		return s, errors.New("failed to parse h2load output: no summary (finished, requests and status codes lines)")
	}
	return s, nil
}

// parseCounts reads "12878 total, 12882 started, 0 failed" into a map.
func parseCounts(s string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, part := range strings.Split(s, ",") {
		f := strings.Fields(part)
		if len(f) != 2 {
			return nil, fmt.Errorf("failed to parse h2load count %q", strings.TrimSpace(part))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("failed to parse h2load count %q", strings.TrimSpace(part))
		}
		out[f[1]] = n
	}
	return out, nil
}

// parseH2LoadDuration reads h2load's durations: "1.00s", "500.12ms",
// "60us".
func parseH2LoadDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f >= 0 && f <= 1e9) { // also refuses NaN
				break
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("failed to parse h2load duration %q", s)
}

// parseH2LoadLog reads h2load's --log-file (one line per request: start
// time in µs since the epoch, HTTP status or -1 for a failed stream, µs
// until the end of the response) and returns the durations of 2xx
// requests, at most limit of them.
func parseH2LoadLog(r io.Reader, limit int) ([]time.Duration, error) {
	var out []time.Duration
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 4096)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f := strings.Split(string(line), "\t")
		if len(f) < 3 {
			return nil, fmt.Errorf("failed to parse h2load request log line %d: %d columns, want 3", n, len(f))
		}
		status, err1 := strconv.Atoi(f[1])
		us, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || us < 0 || us > int64(24*time.Hour/time.Microsecond) {
			return nil, fmt.Errorf("failed to parse h2load request log line %d: %q", n, line)
		}
		if status < 200 || status > 299 {
			continue
		}
		if len(out) >= limit {
			return nil, fmt.Errorf("h2load request log holds more than %d requests", limit)
		}
		out = append(out, time.Duration(us)*time.Microsecond)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read h2load request log: %w", err)
	}
	return out, nil
}

// lastLines returns the last n non-empty lines of s, for error messages.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
