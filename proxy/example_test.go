package proxy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/pqedge/pqedge/pqtls"
	"github.com/pqedge/pqedge/proxy"
)

// A server puts the facts of each TLS handshake in the request context and
// hands the request to the proxy; the upstream reads them as headers.
func ExampleNewHTTPProxy() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "group=%s pq=%s\n", r.Header.Get("PQEdge-TLS-Group"), r.Header.Get("PQEdge-TLS-PQ"))
	}))
	defer app.Close()

	pool, err := proxy.NewPool("app", proxy.PoolOptions{
		Addresses: []string{app.Listener.Addr().String()},
		Health:    proxy.HealthOptions{Path: "/", Interval: 10 * time.Second},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	px := proxy.NewHTTPProxy(pool, proxy.HTTPOptions{})

	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if r.TLS != nil {
			ctx = proxy.WithHandshakeFacts(ctx, proxy.HandshakeFacts{
				Group:   pqtls.GroupName(r.TLS.CurveID),
				PQ:      pqtls.IsPostQuantumGroup(r.TLS.CurveID),
				Version: pqtls.VersionName(r.TLS.Version),
				Cipher:  tls.CipherSuiteName(r.TLS.CipherSuite),
			})
		}
		ctx, info := proxy.WithRequestInfo(ctx)
		px.ServeHTTP(w, r.WithContext(ctx))
		// A real server logs info.Upstream and info.Err here.
		_ = info
	}))
	defer front.Close()

	resp, err := front.Client().Get(front.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output: group=X25519MLKEM768 pq=true
}

// A stream proxy behind a TLS listener, as for DNS over TLS on port 853,
// telling the upstream who the client is with a PROXY v2 header.
func ExampleStreamProxy() {
	var tlsConfig *tls.Config // the server's certificates and policy

	pool, err := proxy.NewPool("dns", proxy.PoolOptions{
		Addresses: []string{"127.0.0.1:5353", "unix:/run/dns.sock"},
		// An empty Path makes the health check a plain connect.
		Health: proxy.HealthOptions{Interval: 5 * time.Second},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	sp, err := proxy.NewStreamProxy(pool, proxy.StreamOptions{
		ProxyProtocol: 2,
		IdleTimeout:   30 * time.Second,
		OnStreamEnd: func(i proxy.StreamInfo) {
			log.Printf("%v -> %s: %d/%d bytes, err=%v", i.Client, i.Upstream, i.FromClient, i.ToClient, i.Err)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", ":853")
	if err != nil {
		log.Fatal(err)
	}
	go sp.Serve(tls.NewListener(ln, tlsConfig))

	// On SIGTERM: let streams finish for up to ten seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sp.Shutdown(ctx)
}
