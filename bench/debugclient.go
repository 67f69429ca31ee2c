package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// debugClient reads a Go front's debug listener (`pqedge run
// -debug-listen`, `bench serve-plain -debug-listen`): runtime counters
// from expvar's /debug/vars and profiles from net/http/pprof.
type debugClient struct {
	addr   string
	client *http.Client
}

func newDebugClient(addr string) *debugClient {
	if addr == "" {
		return nil
	}
	return &debugClient{addr: addr, client: &http.Client{}}
}

// goMemStats is the part of runtime.MemStats the harness reports.
type goMemStats struct {
	Mallocs    uint64 // cumulative heap objects allocated
	TotalAlloc uint64 // cumulative bytes allocated
	HeapAlloc  uint64 // bytes of live (and not yet collected) objects
	StackInuse uint64 // bytes of goroutine stacks
	NumGC      uint32
}

// maxDebugBody caps what the harness reads from a debug endpoint; CPU
// profiles of a few seconds are tens of KiB.
const maxDebugBody = 64 << 20

func (d *debugClient) get(ctx context.Context, path string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("failed to read %s from the front's debug listener: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDebugBody))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s from the front's debug listener: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("failed to read %s from the front's debug listener: %s: %s", path, resp.Status, bytes.TrimSpace(data))
	}
	return data, nil
}

// memStats reads runtime.MemStats through expvar.
func (d *debugClient) memStats(ctx context.Context) (goMemStats, error) {
	data, err := d.get(ctx, "/debug/vars", 5*time.Second)
	if err != nil {
		return goMemStats{}, err
	}
	return parseExpvarMemStats(data)
}

func parseExpvarMemStats(data []byte) (goMemStats, error) {
	var v struct {
		MemStats *goMemStats `json:"memstats"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return goMemStats{}, fmt.Errorf("failed to parse /debug/vars: %w", err)
	}
	if v.MemStats == nil {
		return goMemStats{}, errors.New("failed to parse /debug/vars: no memstats")
	}
	return *v.MemStats, nil
}

// collect runs a garbage collection in the front (the heap profile
// endpoint does one before answering with gc=1), so HeapAlloc then counts
// live objects only.
func (d *debugClient) collect(ctx context.Context) error {
	_, err := d.get(ctx, "/debug/pprof/heap?gc=1", 30*time.Second)
	return err
}

// goroutines counts the front's goroutines from the first line of the
// goroutine profile in text form.
func (d *debugClient) goroutines(ctx context.Context) (int64, error) {
	data, err := d.get(ctx, "/debug/pprof/goroutine?debug=1", 30*time.Second)
	if err != nil {
		return 0, err
	}
	return parseGoroutineTotal(data)
}

// parseGoroutineTotal reads "goroutine profile: total N".
func parseGoroutineTotal(data []byte) (int64, error) {
	line, _, _ := bufio.NewReader(bytes.NewReader(data)).ReadLine()
	rest, ok := strings.CutPrefix(string(line), "goroutine profile: total ")
	if !ok {
		return 0, errors.New("failed to parse the goroutine profile: no total on its first line")
	}
	n, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("failed to parse the goroutine profile total %q", rest)
	}
	return n, nil
}

// saveProfile writes a profile from path to file. seconds > 0 makes it a
// profile over that time (CPU, or the delta of an allocation profile).
func (d *debugClient) saveProfile(ctx context.Context, path string, seconds int, file string) error {
	if seconds > 0 {
		path += "?seconds=" + strconv.Itoa(seconds)
	}
	data, err := d.get(ctx, path, time.Duration(seconds)*time.Second+30*time.Second)
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return fmt.Errorf("failed to write %s: %w", file, err)
	}
	return nil
}
