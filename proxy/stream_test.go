package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// testTLS returns a server config with a fresh self-signed ECDSA
// certificate for "dot.test" and a client config trusting it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), DNSNames: []string{"dot.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{"dot"}}
	client = &tls.Config{RootCAs: roots, ServerName: "dot.test", NextProtos: []string{"dot"}}
	return server, client
}

// upstreamListener listens on loopback TCP or a unix socket.
func upstreamListener(t *testing.T, unix bool) (net.Listener, string) {
	t.Helper()
	if unix {
		path := filepath.Join(t.TempDir(), "up.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln, "unix:" + path
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().String()
}

// serveUpstream runs handle for each connection of ln, after reading the
// PROXY header with go-proxyproto when ppVersion is not 0; the header is
// sent on headers.
func serveUpstream(t *testing.T, ln net.Listener, ppVersion int, headers chan<- *proxyproto.Header, handle func(c net.Conn, r io.Reader)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// Bounds a test upstream whose proxy misbehaves.
				c.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(c)
				if ppVersion != 0 {
					h, err := proxyproto.Read(br)
					if err != nil {
						t.Errorf("upstream: failed to read PROXY header: %v", err)
						return
					}
					if int(h.Version) != ppVersion {
						t.Errorf("upstream: PROXY header version %d, want %d", h.Version, ppVersion)
					}
					if headers != nil {
						headers <- h
					}
				}
				handle(c, br)
			}()
		}
	}()
}

// dotAnswer is the test upstream's DNS-over-TCP server (RFC 7766 framing:
// two-byte length, then the message): it answers each query with
// "answer:" + query, and closes its write side once the client has.
func dotAnswer(c net.Conn, r io.Reader) {
	for {
		var n uint16
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			c.(closeWriter).CloseWrite()
			return
		}
		q := make([]byte, n)
		if _, err := io.ReadFull(r, q); err != nil {
			return
		}
		a := append([]byte("answer:"), q...)
		binary.Write(c, binary.BigEndian, uint16(len(a)))
		c.Write(a)
	}
}

func newTestStreamProxy(t *testing.T, addr string, opts StreamOptions) *StreamProxy {
	t.Helper()
	pool := newTestPool(t, PoolOptions{Addresses: []string{addr}, Health: HealthOptions{Interval: -1}})
	if opts.Logger == nil {
		opts.Logger = quietLogger
	}
	sp, err := NewStreamProxy(pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // close what is left at once
		sp.Shutdown(ctx)
	})
	return sp
}

// serveTLS runs sp behind a TLS listener on loopback and returns its address.
func serveTLS(t *testing.T, sp *StreamProxy, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go sp.Serve(tls.NewListener(ln, cfg))
	return ln.Addr().String()
}

func TestStreamDNSOverTLSWithProxyV2(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	ln, upAddr := upstreamListener(t, false)
	headers := make(chan *proxyproto.Header, 1)
	serveUpstream(t, ln, 2, headers, dotAnswer)
	ends := make(chan StreamInfo, 1)
	sp := newTestStreamProxy(t, upAddr, StreamOptions{ProxyProtocol: 2, OnStreamEnd: func(i StreamInfo) { ends <- i }})
	front := serveTLS(t, sp, serverTLS)

	c, err := tls.Dial("tcp", front, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second)) // a broken proxy fails the test instead of hanging it
	queries := []string{"example.com. IN A", "example.org. IN AAAA", "pq.test. IN TXT"}
	for _, q := range queries {
		binary.Write(c, binary.BigEndian, uint16(len(q)))
		io.WriteString(c, q)
	}
	// Close our write side before reading anything: the answers must
	// still all arrive.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for _, q := range queries {
		binary.Write(&want, binary.BigEndian, uint16(len("answer:"+q)))
		want.WriteString("answer:" + q)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading answers: %v (got %q)", err, got)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("answers = %q, want %q", got, want.Bytes())
	}

	h := <-headers
	src, dst, ok := h.TCPAddrs()
	if !ok || src.String() != c.LocalAddr().String() || dst.String() != front {
		t.Errorf("PROXY addresses %v -> %v, want %v -> %v", h.SourceAddr, h.DestinationAddr, c.LocalAddr(), front)
	}
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	ssl, ok := tlvparse.FindSSL(tlvs)
	if !ok || !ssl.ClientSSL() || ssl.Verified() {
		t.Fatalf("PP2_TYPE_SSL = %+v, %v; want client SSL without verified certificate", ssl, ok)
	}
	st := c.ConnectionState()
	for _, f := range []struct {
		name string
		get  func() (string, bool)
		want string
	}{
		{"version", ssl.SSLVersion, "TLSv1.3"},
		{"cipher", ssl.SSLCipher, tls.CipherSuiteName(st.CipherSuite)},
		// The Go 1.27 client and server agree on the hybrid by default.
		{"group", ssl.SSLGroup, "X25519MLKEM768"},
	} {
		if v, ok := f.get(); !ok || v != f.want {
			t.Errorf("SSL %s TLV = %q, %v; want %q", f.name, v, ok, f.want)
		}
	}
	var alpn, authority string
	for _, tlv := range tlvs {
		switch tlv.Type {
		case proxyproto.PP2_TYPE_ALPN:
			alpn = string(tlv.Value)
		case proxyproto.PP2_TYPE_AUTHORITY:
			authority = string(tlv.Value)
		}
	}
	if alpn != "dot" || authority != "dot.test" {
		t.Errorf("ALPN %q, authority %q; want dot and dot.test", alpn, authority)
	}

	info := <-ends
	if info.Err != nil || info.Upstream != upAddr || info.ToClient != int64(want.Len()) {
		t.Errorf("StreamInfo = %+v, want clean end via %s with %d bytes to the client", info, upAddr, want.Len())
	}
}

func TestStreamBigTransfer(t *testing.T) {
	const size = 8 << 20
	tests := []struct {
		name string
		pp   int
		unix bool
	}{
		{"tcp, no PROXY header", 0, false},
		{"tcp, PROXY v1", 1, false},
		{"unix, PROXY v2", 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverTLS, clientTLS := testTLS(t)
			ln, upAddr := upstreamListener(t, tt.unix)
			// The upstream echoes everything, then half-closes.
			serveUpstream(t, ln, tt.pp, nil, func(c net.Conn, r io.Reader) {
				io.Copy(c, r)
				c.(closeWriter).CloseWrite()
			})
			sp := newTestStreamProxy(t, upAddr, StreamOptions{ProxyProtocol: tt.pp})
			front := serveTLS(t, sp, serverTLS)
			c, err := tls.Dial("tcp", front, clientTLS)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))

			sent := sha256.New()
			werr := make(chan error, 1)
			go func() {
				// Write while the echo comes back, so both directions
				// carry megabytes at once.
				_, err := io.CopyN(c, io.TeeReader(rand.Reader, sent), size)
				if err == nil {
					err = c.CloseWrite()
				}
				werr <- err
			}()
			got := sha256.New()
			n, err := io.Copy(got, c)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if n != size || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
				t.Errorf("echoed %d bytes with sha256 %x, want %d bytes with %x", n, got.Sum(nil), size, sent.Sum(nil))
			}
		})
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	ln, upAddr := upstreamListener(t, false)
	serveUpstream(t, ln, 0, nil, func(c net.Conn, r io.Reader) { io.Copy(c, r) })
	ends := make(chan StreamInfo, 1)
	sp := newTestStreamProxy(t, upAddr, StreamOptions{IdleTimeout: 100 * time.Millisecond, OnStreamEnd: func(i StreamInfo) { ends <- i }})
	client, server := net.Pipe()
	go sp.ServeConn(context.Background(), server)
	// One exchange, then silence.
	client.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(client, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	if _, err := client.Read(buf); err == nil || isTimeout(err) {
		t.Errorf("read on an idle stream: err = %v, want the proxy to close it", err)
	}
	info := <-ends
	if !isTimeout(info.Err) || info.FromClient != 4 || info.ToClient != 4 {
		t.Errorf("StreamInfo = %+v, want an idle timeout after 4 bytes each way", info)
	}
}

func TestStreamShutdown(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	ln, upAddr := upstreamListener(t, false)
	serveUpstream(t, ln, 0, nil, func(c net.Conn, r io.Reader) { io.Copy(c, r) })
	ended := make(chan StreamInfo, 2)
	sp := newTestStreamProxy(t, upAddr, StreamOptions{OnStreamEnd: func(i StreamInfo) { ended <- i }})
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- sp.Serve(tls.NewListener(tcpLn, serverTLS)) }()

	c, err := tls.Dial("tcp", tcpLn.Addr().String(), clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, "hi")
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}

	// The stream stays open: a short grace period ends with it closed.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := sp.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a live stream = %v, want deadline exceeded", err)
	}
	if err := <-served; !errors.Is(err, ErrStreamProxyClosed) {
		t.Errorf("Serve = %v, want ErrStreamProxyClosed", err)
	}
	if _, err := c.Read(buf); err == nil || isTimeout(err) {
		t.Errorf("read after Shutdown: err = %v, want closed", err)
	}
	if _, err := net.Dial("tcp", tcpLn.Addr().String()); err == nil {
		t.Errorf("listener still accepts after Shutdown")
	}
	if err := sp.ServeConn(context.Background(), c); !errors.Is(err, ErrStreamProxyClosed) {
		t.Errorf("ServeConn after Shutdown = %v, want ErrStreamProxyClosed", err)
	}
	if err := sp.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v, want nil once every stream ended", err)
	}
	// Every stream has ended (OnStreamEnd runs before a stream stops
	// counting): one call for the stream Shutdown closed, one for the
	// connection refused after it.
	var refused int
	for range 2 {
		select {
		case i := <-ended:
			if i.Upstream == "" {
				refused++
				if !errors.Is(i.Err, ErrStreamProxyClosed) {
					t.Errorf("OnStreamEnd for the refused connection: err %v, want ErrStreamProxyClosed", i.Err)
				}
			}
		default:
			t.Fatal("fewer than 2 OnStreamEnd calls")
		}
	}
	if refused != 1 {
		t.Errorf("%d OnStreamEnd calls without an upstream, want 1 (the refused connection)", refused)
	}
}

func TestStreamShutdownWaits(t *testing.T) {
	ln, upAddr := upstreamListener(t, false)
	serveUpstream(t, ln, 0, nil, func(c net.Conn, r io.Reader) {
		io.Copy(c, r)
		c.(closeWriter).CloseWrite()
	})
	sp := newTestStreamProxy(t, upAddr, StreamOptions{})
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- sp.ServeConn(context.Background(), server) }()
	client.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(client, "x")
	buf := make([]byte, 1)
	if _, err := io.ReadFull(client, buf); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() { shut <- sp.Shutdown(context.Background()) }()
	// The stream finishes on its own: net.Pipe cannot half-close, so
	// closing the client ends both directions.
	client.Close()
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v, want nil after the stream ended", err)
	}
	<-done
}

func TestStreamUpstreamDown(t *testing.T) {
	ends := make(chan StreamInfo, 1)
	sp := newTestStreamProxy(t, deadAddr(t), StreamOptions{OnStreamEnd: func(i StreamInfo) { ends <- i }})
	client, server := net.Pipe()
	go sp.ServeConn(context.Background(), server)
	client.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("read with the upstream down: err = %v, want closed", err)
	}
	info := <-ends
	var de *dialError
	if !errors.As(info.Err, &de) || info.Upstream != "" {
		t.Errorf("StreamInfo = %+v, want a dial error and no upstream", info)
	}
}

func TestNewStreamProxyRejectsVersion(t *testing.T) {
	pool := newTestPool(t, PoolOptions{Addresses: []string{"127.0.0.1:1"}, Health: HealthOptions{Interval: -1}})
	for _, v := range []int{-1, 3} {
		if _, err := NewStreamProxy(pool, StreamOptions{ProxyProtocol: v}); err == nil {
			t.Errorf("ProxyProtocol %d accepted", v)
		}
	}
}
