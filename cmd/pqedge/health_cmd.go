package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/pqedge/pqedge/internal/config"
)

const healthAbout = `Asks a running pqedge whether it is ready: GET /readyz on its admin
listener. Exits 0 when it answers 200 and 1 otherwise, printing its answer
(which check failed). Made for a container HEALTHCHECK in an image without
curl; it never exits 2, which Docker reserves.

The admin address is -admin, else admin.listen of -config FILE, else
127.0.0.1:9180. An unspecified host (0.0.0.0, [::] or none) is asked on
loopback.
`

// defaultAdmin is where health looks without -admin or -config: the admin
// address config.example.toml and the container image's config use.
const defaultAdmin = "127.0.0.1:9180"

// maxHealthBody caps what health reads and prints of /readyz's answer: a
// few lines naming failed checks, and Docker keeps only 4 KiB of output.
const maxHealthBody = 64 << 10

// runHealth is `pqedge health`. Every failure exits 1, usage errors too:
// Docker reads 2 as "reserved" and 1 as unhealthy. -h is help, exit 0.
func runHealth(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("health", "health [-config FILE | -admin ADDR] [-timeout D]", healthAbout, stdout)
	admin := fs.String("admin", "", "the admin listener's `ADDR` (host:port)")
	file := fs.String("config", "", "read the admin address from admin.listen in `FILE`")
	timeout := fs.Duration("timeout", 5*time.Second, "limit `D` for connecting and reading the answer")
	positional, err := fs.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0 // help, printed on stdout
	}
	if err != nil {
		cliFail(stderr, err)
		return 1
	}
	if len(positional) > 0 {
		cliFail(stderr, withHint(fmt.Errorf("health takes no arguments, got %q", positional), "give the address with -admin ADDR or -config FILE"))
		return 1
	}
	if *timeout <= 0 {
		cliFail(stderr, withHint(fmt.Errorf("-timeout must be positive, got %s", *timeout), "e.g. -timeout 3s"))
		return 1
	}
	addr, err := healthAddress(*admin, *file)
	if err != nil {
		cliFail(stderr, err)
		return 1
	}
	if err := checkReady(addr, *timeout, stdout); err != nil {
		cliFail(stderr, err)
		return 1
	}
	return 0
}

// healthAddress is the address to dial, from -admin, -config or the
// default, with a hint saying where it came from.
func healthAddress(admin, file string) (string, error) {
	listen, from := defaultAdmin, "the default"
	switch {
	case admin != "":
		listen, from = admin, "-admin"
	case file != "":
		var err error
		if listen, err = adminListen(file); err != nil {
			return "", err
		}
		from = "admin.listen in " + file
	}
	addr, err := dialAddress(listen)
	if err != nil {
		return "", withHint(fmt.Errorf("bad admin address %q from %s: %w", listen, from, err), "give host:port with a fixed port, e.g. -admin 127.0.0.1:9180")
	}
	return addr, nil
}

// adminListen reads admin.listen from a config file. It decodes only that
// key, leniently, instead of config.Load's full validation: a config
// edited into an invalid state is refused by a reload while the running
// pqedge keeps serving, and health must keep reporting that process.
func adminListen(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", withHint(fmt.Errorf("failed to read config: %w", err), "give the file pqedge runs with, or -admin ADDR")
	}
	return parseAdminListen(file, data)
}

// parseAdminListen is adminListen on the file's contents.
func parseAdminListen(file string, data []byte) (string, error) {
	var c struct {
		Admin config.Admin `toml:"admin"`
	}
	data, err := config.WithoutBOM(file, data)
	if err != nil {
		return "", withHint(err, "save "+file+" as UTF-8")
	}
	if err := toml.Unmarshal(data, &c); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			// FILE:LINE, as config check names a problem; the rest of
			// the file is not checked here, so the hint still sends
			// the operator there.
			line, _ := de.Position()
			return "", withHint(fmt.Errorf("%s:%d: failed to read admin.listen: %s", file, line, strings.TrimPrefix(de.Error(), "toml: ")),
				"`pqedge config check "+file+"` lists every problem")
		}
		return "", withHint(fmt.Errorf("failed to read admin.listen from %s: %w", file, err), "`pqedge config check "+file+"` shows where")
	}
	if c.Admin.Listen == "" {
		return "", withHint(fmt.Errorf("%s has no admin listener, which is where /readyz is served", file),
			"set listen = \"127.0.0.1:9180\" under [admin] in "+file+", or pass -admin ADDR")
	}
	return c.Admin.Listen, nil
}

// dialAddress turns a listen address into one to connect to: a listener on
// every address is asked on loopback.
func dialAddress(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if port == "" || port == "0" {
		return "", errors.New("the port is chosen at random when pqedge starts, so health cannot know it")
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}

// checkReady asks http://addr/readyz and copies the answer's body to out;
// any answer but 200 is an error naming the status.
func checkReady(addr string, timeout time.Duration, out io.Writer) error {
	url := "http://" + addr + "/readyz"
	client := &http.Client{
		// The whole exchange, connect to last byte: a stuck pqedge must
		// read as unhealthy, not hang the check until Docker kills it.
		Timeout: timeout,
		// No proxy: HTTP_PROXY in a container's environment is for its
		// upstream traffic, never for its own loopback.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		// /readyz does not redirect; following one would check something
		// else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(url)
	if err != nil {
		return withHint(fmt.Errorf("failed to ask %s: %w", url, err),
			"is pqedge running, with its admin listener on "+addr+"? (set by admin.listen; pass -admin or -config to ask another)")
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHealthBody))
	if err != nil {
		return fmt.Errorf("failed to read the answer of %s: %w", url, err)
	}
	out.Write(body)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		io.WriteString(out, "\n")
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s answered %s: %s", url, resp.Status, firstLine(body))
	}
	return nil
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if line == "" {
		return "(empty body)"
	}
	return line
}
