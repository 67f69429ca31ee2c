package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/internal/peers"
)

// runFromLayer unpacks this machine's platform layer into a directory and
// runs its pqedge there as a container runtime would: chrooted, as the
// image's user, with the image's environment, and for the serve in a
// network namespace of its own (so the image's fixed port 8443 cannot
// collide with anything on the host).
func runFromLayer(t *testing.T, res *Result, idx v1.ImageIndex) {
	if os.Geteuid() != 0 {
		peers.Missing(t, "root privileges (chroot and a network namespace for the image's pqedge)")
	}
	host, ok := HostPlatform()
	if !ok {
		t.Skipf("this machine (%s) runs none of the image's platforms", runtime.GOARCH)
	}
	var img v1.Image
	for _, b := range res.Images {
		if b.Platform.String() == host.String() {
			var err error
			if img, err = idx.Image(b.Digest); err != nil {
				t.Fatal(err)
			}
		}
	}
	root := t.TempDir()
	unpack(t, img, root)

	t.Run("version", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		cmd := chrootCommand(root, "version")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("pqedge version: %v\n%s", err, stderr.String())
		}
		out := stdout.String()
		if !strings.HasPrefix(out, "pqedge test (go1.") {
			t.Errorf("pqedge version printed %q", out)
		}
		// The image has no CA files: ACME to a public CA needs the roots
		// built into the binary, and they must be the ones in use.
		if !strings.Contains(out, "\nca roots: built in, ") {
			t.Errorf("pqedge version in the image does not use the built-in CA roots:\n%s", out)
		}
	})
	t.Run("serve", func(t *testing.T) { serveFromLayer(t, root) })
}

// unpack extracts img's layer into root with the layer's owners and modes,
// as a container runtime does.
func unpack(t *testing.T, img v1.Image, root string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// t.TempDir is 0700; the image's user must be able to enter "/".
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(root, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(path, root+string(filepath.Separator)) {
			t.Fatalf("layer entry %q escapes the root", hdr.Name)
		}
		mode := os.FileMode(hdr.Mode).Perm()
		if hdr.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.Mkdir(path, mode)
		case tar.TypeReg:
			err = writeFileFrom(path, tr, mode)
		default:
			t.Fatalf("unexpected layer entry type %c for %s", hdr.Typeflag, hdr.Name)
		}
		if err == nil {
			err = os.Lchown(path, hdr.Uid, hdr.Gid)
		}
		if err == nil {
			// Mkdir and OpenFile apply the umask and drop the sticky bit.
			err = os.Chmod(path, mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func writeFileFrom(path string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// chrootCommand runs the image's pqedge with args under root, as the
// image's user, in its working directory and with its environment only.
func chrootCommand(root string, args ...string) *exec.Cmd {
	cmd := exec.Command(BinaryPath, args...)
	cmd.Env = []string{"PATH=/usr/local/bin"}
	cmd.Dir = DataDir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: UID, Gid: GID, Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd
}

// serveFromLayer runs the image's default command in a new network
// namespace, waits for its HEALTHCHECK command to pass, fetches the inspect
// page over TLS verified against the local CA pqedge made in the volume,
// and stops it with SIGTERM as `docker stop` does.
func serveFromLayer(t *testing.T, root string) {
	var stderr syncBuffer
	cmd := chrootCommand(root, "run", "-config", ConfigPath)
	cmd.Stderr = &stderr
	cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	if err := cmd.Start(); err != nil {
		t.Fatalf("failed to start the image's pqedge: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("pqedge stderr:\n%s", stderr.String())
		}
	})
	ns := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	// A new network namespace has only lo, and it is down.
	if err := inNetns(ns, setLoopbackUp); err != nil {
		t.Fatal(err)
	}

	waitHealthy(t, root, ns)

	roots := x509.NewCertPool()
	local, err := certs.FindTrustRoots(filepath.Join(root, DataDir, "local"))
	if err != nil {
		t.Fatalf("no local CA in the data volume: %v", err)
	}
	for _, r := range local {
		roots.AddCert(r.Cert)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: "localhost", RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = inNetns(ns, func() error {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
	resp, err := client.Get("https://127.0.0.1:8443/?format=json")
	if err != nil {
		t.Fatalf("failed to fetch the inspect page: %v", err)
	}
	var page struct {
		Group string `json:"group"`
		PQ    bool   `json:"pq"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&page)
	resp.Body.Close()
	t.Logf("inspect page from the image's pqedge: %s, group %s, pq %v", resp.Status, page.Group, page.PQ)
	if err != nil || resp.StatusCode != 200 || page.Group != "X25519MLKEM768" || !page.PQ {
		t.Errorf("inspect page: %s, group %q pq %v, %v", resp.Status, page.Group, page.PQ, err)
	}

	// The local CA's keys were written by the image's user, private.
	key := filepath.Join(root, DataDir, "local")
	entries, _ := os.ReadDir(key)
	for _, e := range entries {
		fi, err := os.Stat(filepath.Join(key, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != UID || strings.HasSuffix(e.Name(), ".key") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: uid %d mode %s, want uid %d and 0600 keys", e.Name(), st.Uid, fi.Mode(), UID)
		}
	}

	// Everything but the volume could be read-only (docker run --read-only):
	// the user cannot write to the root-owned directories, and /tmp stayed
	// empty.
	if tmp, err := os.ReadDir(filepath.Join(root, "tmp")); err != nil || len(tmp) > 0 {
		t.Errorf("pqedge wrote to /tmp: %v %v", tmp, err)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Errorf("pqedge exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("pqedge did not exit within 15 s of SIGTERM")
	}
}

// waitHealthy runs the image's HEALTHCHECK command in the namespace, as
// Docker would, until it exits 0.
func waitHealthy(t *testing.T, root, ns string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out bytes.Buffer
		cmd := chrootCommand(root, HealthCheck.Test[2:]...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := inNetns(ns, cmd.Run)
		if err == nil {
			return
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("HEALTHCHECK command: %v (want exit 0 or 1)\n%s", err, out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HEALTHCHECK command never passed:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inNetns runs f on an OS thread that has entered the network namespace
// at nsPath: sockets f opens and processes it starts belong to that
// namespace. The thread is thrown away if it cannot return to its own.
func inNetns(nsPath string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer own.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("failed to enter %s: %w", nsPath, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
			// Still locked: the runtime ends the thread with the goroutine.
			errc <- fmt.Errorf("failed to leave %s: %w", nsPath, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// setLoopbackUp brings up lo in the current thread's network namespace.
func setLoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("failed to read lo's flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("failed to bring lo up: %w", err)
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for a process's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
