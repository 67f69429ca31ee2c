package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pqedge/pqedge/internal/freeport"
	"github.com/pqedge/pqedge/internal/peers"
)

// TestStreamProxyHeaderToNginx checks our PROXY headers against a parser we did
// not write: nginx 1.26 from the trixie peer root, listening with
// proxy_protocol and echoing what it parsed, including the key-exchange
// group sub-TLV (0x26), which nginx reads by number.
func TestStreamProxyHeaderToNginx(t *testing.T) {
	root := peers.Trixie(t)
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			port := freeport.Must(t)
			host, inside := root.TempDir(t)
			conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events {}
http {
	access_log off;
	client_body_temp_path %[1]s;
	proxy_temp_path %[1]s;
	fastcgi_temp_path %[1]s;
	uwsgi_temp_path %[1]s;
	scgi_temp_path %[1]s;
	server {
		listen 127.0.0.1:%[2]d proxy_protocol;
		location / {
			default_type text/plain;
			return 200 "addr=$proxy_protocol_addr:$proxy_protocol_port server=$proxy_protocol_server_addr:$proxy_protocol_server_port version=$proxy_protocol_tlv_ssl_version cipher=$proxy_protocol_tlv_ssl_cipher alpn=$proxy_protocol_tlv_alpn authority=$proxy_protocol_tlv_authority verify=$proxy_protocol_tlv_ssl_verify group=$proxy_protocol_tlv_ssl_0x26\n";
		}
	}
}
`, inside, port)
			if err := os.WriteFile(filepath.Join(host, "nginx.conf"), []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cmd := root.Command(ctx, "nginx", "-c", inside+"/nginx.conf")
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				cancel()
				cmd.Wait()
				if t.Failed() {
					log, _ := os.ReadFile(filepath.Join(host, "error.log"))
					t.Logf("nginx output: %s\nerror.log: %s", out, log)
				}
			})
			upAddr := fmt.Sprintf("127.0.0.1:%d", port)
			waitFor(t, "nginx to listen", func() bool {
				c, err := net.Dial("tcp", upAddr)
				if err == nil {
					c.Close()
				}
				return err == nil
			})

			serverTLS, clientTLS := testTLS(t)
			clientTLS.NextProtos = []string{"http/1.1"}
			serverTLS.NextProtos = []string{"http/1.1"}
			sp := newTestStreamProxy(t, upAddr, StreamOptions{ProxyProtocol: version})
			front := serveTLS(t, sp, serverTLS)
			c, err := tls.Dial("tcp", front, clientTLS)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(15 * time.Second))
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: dot.test\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			want := fmt.Sprintf("addr=%s server=%s", c.LocalAddr(), front)
			if version == 2 {
				want += fmt.Sprintf(" version=TLSv1.3 cipher=%s alpn=http/1.1 authority=dot.test verify=1 group=X25519MLKEM768\n",
					tls.CipherSuiteName(c.ConnectionState().CipherSuite))
			} else {
				want += " version= cipher= alpn= authority= verify= group=\n"
			}
			if string(body) != want {
				t.Errorf("nginx parsed\n%q\nwant\n%q", body, want)
			}
		})
	}
}
