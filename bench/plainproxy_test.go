package bench

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// startPlainProxy runs ServePlainProxy in the test until it ends; an empty
// upstream leaves its listener out.
func startPlainProxy(t *testing.T, upstream, streamUpstream string) (https, stream string) {
	t.Helper()
	chain, err := MakeChain(t.TempDir(), certs.AlgECDSAP256, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := inProcessPlainProxy{}.StartProxy(context.Background(), ProxySpec{Chain: chain, Groups: []tls.CurveID{tls.X25519MLKEM768}, Upstream: upstream, StreamUpstream: streamUpstream})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f.HTTPS, f.Stream
}

// inProcessPlainProxy runs the floor in the test process: its "front CPU"
// is the whole process's, which is enough to exercise the harness.
type inProcessPlainProxy struct{}

func (inProcessPlainProxy) Kind() string { return ServerPlain }

func (inProcessPlainProxy) StartProxy(ctx context.Context, spec ProxySpec) (*Front, error) {
	ctx, cancel := context.WithCancel(ctx)
	opts := PlainProxyOptions{
		Upstream: spec.Upstream, StreamUpstream: spec.StreamUpstream,
		CertFile: spec.Chain.CertFile, KeyFile: spec.Chain.KeyFile, Groups: spec.Groups,
	}
	if spec.Upstream != "" {
		opts.Listen = "127.0.0.1:0"
	}
	if spec.StreamUpstream != "" {
		opts.StreamListen = "127.0.0.1:0"
	}
	ready := make(chan [2]string, 1)
	opts.Ready = func(https, stream string) { ready <- [2]string{https, stream} }
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { errc <- ServePlainProxy(ctx, opts) })
	select {
	case a := <-ready:
		p := &Process{Addr: a[0], PID: os.Getpid(), stopFn: func() { cancel(); wg.Wait() }}
		return &Front{Process: p, HTTPS: a[0], Stream: a[1]}, nil
	case err := <-errc:
		cancel()
		return nil, err
	}
}

// The floor proxies HTTP/1.1 and HTTP/2 as a reverse proxy must: the
// client's Host kept, X-Forwarded-* set, the upstream's answer passed on.
func TestServePlainProxyHTTP(t *testing.T) {
	var mu sync.Mutex
	var seen []*http.Request
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		w.Header().Set("X-Upstream", "yes")
		io.WriteString(w, "hello "+r.URL.Path)
	}), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })
	https, _ := startPlainProxy(t, ln.Addr().String(), "")

	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			var p http.Protocols
			p.SetHTTP1(proto == "http/1.1")
			p.SetHTTP2(proto == "h2")
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig: clientTLS([]tls.CurveID{tls.X25519MLKEM768}), Protocols: &p,
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "tcp", https)
				},
			}}
			resp, err := client.Get("https://localhost/some/path")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "hello /some/path" || resp.Header.Get("X-Upstream") != "yes" {
				t.Errorf("%s: %s %q %v", resp.Proto, resp.Status, body, resp.Header)
			}
			if resp.ProtoMajor != map[string]int{"http/1.1": 1, "h2": 2}[proto] {
				t.Errorf("answered over %s", resp.Proto)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("upstream saw %d requests", len(seen))
	}
	for _, r := range seen {
		if r.Host != "localhost" || r.Header.Get("X-Forwarded-For") != "127.0.0.1" || r.Header.Get("X-Forwarded-Proto") != "https" {
			t.Errorf("upstream request: Host %q, headers %v", r.Host, r.Header)
		}
	}
}

// The floor's stream listener relays both ways and passes the client's
// close on, so an echo upstream's answer arrives whole.
func TestServePlainProxyStream(t *testing.T) {
	echo, err := StartEchoUpstream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(echo.Close)
	_, stream := startPlainProxy(t, "", echo.Addr)
	c, err := tls.Dial("tcp", stream, clientTLS([]tls.CurveID{tls.X25519MLKEM768}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := strings.Repeat("post-quantum ", 10000) // several records
	go func() {
		io.WriteString(c, msg)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != msg {
		t.Errorf("echoed %d of %d bytes, err %v", len(got), len(msg), err)
	}
}

func TestServePlainProxyOptions(t *testing.T) {
	chain, err := MakeChain(t.TempDir(), certs.AlgECDSAP256, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		opts PlainProxyOptions
		want string
	}{
		{"no listener", PlainProxyOptions{}, "no listen address"},
		{"https without upstream", PlainProxyOptions{Listen: "127.0.0.1:0"}, "needs its upstream"},
		{"stream without upstream", PlainProxyOptions{StreamListen: "127.0.0.1:0"}, "needs its upstream"},
		{"upstream with a path", PlainProxyOptions{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1/x"}, "want host:port"},
		{"missing certificate", PlainProxyOptions{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1", CertFile: "/nonexistent", KeyFile: chain.KeyFile}, "failed to read certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			if o.CertFile == "" {
				o.CertFile, o.KeyFile = chain.CertFile, chain.KeyFile
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := ServePlainProxy(ctx, o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}
