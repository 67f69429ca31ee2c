package server

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestEmptySegmentsRouteAsForwarded: "//" in a path is merged before
// routing (issue 12, kind 6), so "//admin/x" goes to the route for
// "/admin/" and reaches its pool as "/admin/x", never to the "/" route's
// pool, whose upstream may merge the slashes itself and serve "/admin/x"
// past the admin route; a route with merge_slashes = false gets the
// empty segments as sent, and a path whose dots resolve otherwise with
// them kept gets 400. Over HTTP/1.1 and HTTP/2.
func TestEmptySegmentsRouteAsForwarded(t *testing.T) {
	admin, app := newRecordingUpstream(t), newRecordingUpstream(t)
	ts := startServer(t, baseConfig+`
[[site]]
name = "local"
server_names = ["localhost"]
[[site.route]]
path = "/admin/"
pool = "admin"
[[site.route]]
path = "/bucket/"
pool = "app"
merge_slashes = false
[[site.route]]
path = "/"
pool = "app"
[[pool]]
name = "admin"
upstreams = ["`+admin.addr+`"]
[[pool]]
name = "app"
upstreams = ["`+app.addr+`"]
`)
	addr := ts.addr("https")
	h2 := ts.client(tls.X25519MLKEM768)
	send := map[string]func(t *testing.T, path string) int{
		"HTTP/1.1": func(t *testing.T, path string) int {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ts.roots(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			return resp.StatusCode
		},
		"HTTP/2": func(t *testing.T, path string) int {
			// The client sends the URL's path as :path, "//" and dot
			// segments included.
			resp, err := h2.Get("https://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("answered over %s", resp.Proto)
			}
			return resp.StatusCode
		},
	}
	tests := []struct {
		path   string
		status int
		pool   *recordingUpstream // nil: no upstream hears of it
		want   string             // the path the pool's upstream got
	}{
		{"//admin/x", 200, admin, "/admin/x"},
		{"/admin//x", 200, admin, "/admin/x"},
		{"/admin/.//x", 200, admin, "/admin/x"},
		{"/./admin", 200, app, "/admin"}, // not under "/admin/"
		{"/./admin/", 200, admin, "/admin/"},
		{"///admin///x///", 200, admin, "/admin/x/"},
		{"/x//../admin/y", 200, admin, "/admin/y"}, // nginx: merged, then "/x/../admin/y"
		{"//..//admin", 400, nil, ""},              // merged, it climbs above "/" (nginx: 400)
		{"/%2F%2Fadmin/x", 400, nil, ""},           // an encoded slash: still refused here
		// merge_slashes = false: routed merged, forwarded as sent.
		{"/bucket//key", 200, app, "/bucket//key"},
		{"//bucket//a/./b", 200, app, "//bucket//a/b"},
		{"/bucket/a//../b", 400, nil, ""}, // "/bucket/b" merged, "/bucket/a/b" kept
	}
	for proto, do := range send {
		for _, tt := range tests {
			t.Run(proto+" "+tt.path, func(t *testing.T) {
				beforeAdmin, beforeApp := len(admin.requests()), len(app.requests())
				if code := do(t, tt.path); code != tt.status {
					t.Fatalf("status %d, want %d", code, tt.status)
				}
				gotAdmin, gotApp := admin.requests()[beforeAdmin:], app.requests()[beforeApp:]
				for pool, got := range map[*recordingUpstream][]seenRequest{admin: gotAdmin, app: gotApp} {
					switch {
					case pool != tt.pool && len(got) > 0:
						t.Errorf("the wrong pool got %q", got[0].path)
					case pool == tt.pool && (len(got) != 1 || got[0].path != tt.want):
						t.Errorf("the pool got %+v, want one request for %q", got, tt.want)
					}
				}
			})
		}
	}
}
