// Package peers finds the real software pqedge's tests run against: the
// Debian trixie root (OpenSSL 3.5, nginx 1.26, curl 8.14) that scripts/peers
// bootstraps, and the host's Chromium, Firefox ESR and curl.
//
// A test that needs a missing peer is skipped with a one-line reason, unless
// PQEDGE_REQUIRE_PEERS=1 is set (as .ci/run does), in which case it fails.
// It is for tests only; nothing in the pqedge binary imports it.
package peers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Required reports whether a missing peer fails a test instead of skipping it.
func Required() bool { return os.Getenv("PQEDGE_REQUIRE_PEERS") == "1" }

// Missing skips t (or fails it under PQEDGE_REQUIRE_PEERS=1) because a peer
// is absent.
func Missing(t testing.TB, what string) {
	t.Helper()
	msg := what + " is not installed (run `make peers`)"
	if Required() {
		t.Fatal("PQEDGE_REQUIRE_PEERS=1: " + msg)
	}
	t.Skip(msg)
}

// Dir is where scripts/peers keeps the trixie root.
func Dir() string {
	if d := os.Getenv("PQEDGE_PEERS_DIR"); d != "" {
		return d
	}
	return "/var/cache/pqedge/peers"
}

// Chroot is a Debian root file system whose programs run through chroot(8).
type Chroot struct {
	Root string // the root's path on the host
}

// Trixie returns the trixie root with OpenSSL 3.5, nginx and curl, or skips t.
func Trixie(t testing.TB) *Chroot {
	t.Helper()
	root := filepath.Join(Dir(), "trixie")
	if _, err := os.Stat(filepath.Join(root, ".pqedge-complete")); err != nil {
		Missing(t, "the Debian trixie peer root ("+root+")")
	}
	if os.Geteuid() != 0 {
		Missing(t, "root privileges for chroot into "+root)
	}
	return &Chroot{Root: root}
}

// Command runs name inside the root. The process shares the host's network,
// so it reaches servers on loopback.
func (c *Chroot) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "chroot", append([]string{c.Root, name}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C"}
	return cmd
}

// TempDir makes a directory inside the root, removed when t ends. It returns
// the directory's path on the host and its path as seen inside the root.
func (c *Chroot) TempDir(t testing.TB) (host, inside string) {
	t.Helper()
	base := filepath.Join(c.Root, "tmp")
	host, err := os.MkdirTemp(base, "pqedge-test-")
	if err != nil {
		t.Fatalf("failed to make a temp dir in the peer root: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(host) })
	return host, "/" + strings.TrimPrefix(strings.TrimPrefix(host, c.Root), "/")
}

// Binary returns the path of a host program, or skips t when it is absent.
func Binary(t testing.TB, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	Missing(t, strings.Join(names, " or "))
	return ""
}

// ChromiumFlags are the flags headless Chromium needs on these machines: no
// sandbox (tests run as root), no background connections (the network is
// closed and Chromium's retries are refused), no QUIC (pqedge serves TCP).
func ChromiumFlags(userDataDir string) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync",
		"--user-data-dir=" + userDataDir,
	}
}

// ChromiumQUICFlags are ChromiumFlags for a page that must be loaded over
// QUIC (HTTP/3) from localhost:port: QUIC on and forced for that origin,
// without the Alt-Svc discovery that Chromium allows only for publicly
// trusted roots. localhost is mapped to 127.0.0.1: Chromium tries ::1
// first, and over UDP an unserved address fails the load instead of
// falling back as TCP's connection attempts do.
func ChromiumQUICFlags(userDataDir string, port int) []string {
	flags := slices.DeleteFunc(ChromiumFlags(userDataDir), func(f string) bool { return f == "--disable-quic" })
	return append(flags, "--enable-quic", fmt.Sprintf("--origin-to-force-quic-on=localhost:%d", port),
		"--host-resolver-rules=MAP localhost 127.0.0.1")
}
