// Package compat is pqedge's compatibility suite: it drives real clients
// (headless Chromium and Firefox, curl with OpenSSL 3.0 and 3.5, openssl
// s_client, Go crypto/tls) against an in-process pqedge and records, from
// pqedge's own handshake records, what each negotiated under each server
// mode. The result is docs/COMPAT.md.
//
// It is test tooling: the pqedge binary does not import it. The clients are
// found through package peers; a missing one skips its cases (or fails them
// under PQEDGE_REQUIRE_PEERS=1).
package compat

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pqedge/pqedge/internal/peers"
)

// Outcome is what a client itself reported.
type Outcome struct {
	// Body is the page or JSON the client got (the DOM for browsers), empty
	// when it got nothing.
	Body string
	// Verdict is "protected" or "not protected" when the client rendered the
	// inspect page's verdict, else "".
	Verdict string
	// Err is the client's own failure, if any.
	Err error
}

// Trust is a set of root certificates (PEM files) a client is made to trust.
type Trust []string

// run runs cmd and returns stdout, with stderr in the error.
func run(cmd *exec.Cmd) (string, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 400 {
			msg = msg[len(msg)-400:]
		}
		return out.String(), fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Path), err, msg)
	}
	return out.String(), nil
}

// verdictIn finds the inspect page's verdict in HTML or JSON.
func verdictIn(body string) string {
	switch {
	case strings.Contains(body, "Yes: protected against harvest-now-decrypt-later"), strings.Contains(body, `"verdict": "protected"`):
		return "protected"
	case strings.Contains(body, "No: not protected against harvest-now-decrypt-later"), strings.Contains(body, `"verdict": "not protected"`):
		return "not protected"
	}
	return ""
}

// nssDB makes an NSS database in dir trusting roots as TLS server CAs, as
// Chromium ($HOME/.pki/nssdb) and Firefox (the profile) read it.
func nssDB(ctx context.Context, certutil, dir string, roots Trust) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := run(exec.CommandContext(ctx, certutil, "-N", "-d", "sql:"+dir, "--empty-password")); err != nil {
		return err
	}
	for i, r := range roots {
		name := fmt.Sprintf("pqedge-root-%d", i)
		if _, err := run(exec.CommandContext(ctx, certutil, "-A", "-d", "sql:"+dir, "-n", name, "-t", "C,,", "-i", r)); err != nil {
			return fmt.Errorf("failed to import %s: %w", r, err)
		}
	}
	return nil
}

// Chromium loads url in headless Chromium with a fresh profile and HOME
// whose NSS database trusts roots, and returns the DOM after scripts ran.
// virtualTime lets the page's fetches finish (milliseconds of virtual time;
// 0 for none).
//
// NSS 3.87 (bookworm) cannot import an ML-DSA root, so to see whether
// Chromium accepts an ML-DSA chain at all, spki lists SHA-256 hashes
// (base64) of leaf public keys whose certificate errors Chromium is told to
// ignore (--ignore-certificate-errors-spki-list); the handshake signature is
// still verified.
func Chromium(ctx context.Context, chromium, certutil, dir, url string, roots Trust, spki []string, virtualTime int) Outcome {
	return chromium1(ctx, chromium, certutil, dir, url, roots, spki, virtualTime, peers.ChromiumFlags(filepath.Join(dir, "profile")))
}

// ChromiumQUIC is Chromium forced onto QUIC (HTTP/3) for localhost:port,
// the port of url, with a fresh profile trusting roots.
func ChromiumQUIC(ctx context.Context, chromium, certutil, dir, url string, port int, roots Trust) Outcome {
	return chromium1(ctx, chromium, certutil, dir, url, roots, nil, 0, peers.ChromiumQUICFlags(filepath.Join(dir, "profile"), port))
}

func chromium1(ctx context.Context, chromium, certutil, dir, url string, roots Trust, spki []string, virtualTime int, flags []string) Outcome {
	home := filepath.Join(dir, "home")
	if err := nssDB(ctx, certutil, filepath.Join(home, ".pki", "nssdb"), roots); err != nil {
		return Outcome{Err: err}
	}
	args := append(flags, "--dump-dom")
	if len(spki) > 0 {
		args = append(args, "--ignore-certificate-errors-spki-list="+strings.Join(spki, ","))
	}
	if virtualTime > 0 {
		args = append(args, fmt.Sprintf("--virtual-time-budget=%d", virtualTime))
	}
	cmd := exec.CommandContext(ctx, chromium, append(args, url)...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	dom, err := run(cmd)
	return Outcome{Body: dom, Verdict: verdictIn(dom), Err: err}
}

// firefoxPrefs keep a headless Firefox from reaching for the network (the
// machine has none) and from showing first-run pages.
const firefoxPrefs = `user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("app.update.enabled", false);
user_pref("app.normandy.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("network.http.http3.enable", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("extensions.autoDisableScopes", 15);
`

// Firefox loads url in headless Firefox with a fresh profile whose NSS
// database trusts roots and takes a screenshot. Firefox's headless mode
// has no DOM dump, so the verdict is read from the screenshot: the inspect
// page's verdict box has a colour no Firefox error page uses.
func Firefox(ctx context.Context, firefox, certutil, dir, url string, roots Trust) Outcome {
	profile := filepath.Join(dir, "profile")
	if err := nssDB(ctx, certutil, profile, roots); err != nil {
		return Outcome{Err: err}
	}
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(firefoxPrefs), 0o600); err != nil {
		return Outcome{Err: err}
	}
	shot := filepath.Join(dir, "shot.png")
	cmd := exec.CommandContext(ctx, firefox, "--headless", "--no-remote", "-profile", profile,
		"--window-size=800,1000", "--screenshot", shot, url)
	cmd.Env = append(os.Environ(), "HOME="+dir, "MOZ_HEADLESS=1")
	if _, err := run(cmd); err != nil {
		return Outcome{Err: err}
	}
	v, err := verdictFromScreenshot(shot)
	return Outcome{Verdict: v, Err: err}
}

// The inspect page's verdict box backgrounds (inspect.html).
var (
	protectedColor    = [3]uint8{0xe3, 0xf6, 0xe5}
	notProtectedColor = [3]uint8{0xfd, 0xec, 0xea}
)

func verdictFromScreenshot(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("no screenshot: %w", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return "", fmt.Errorf("bad screenshot %s: %w", file, err)
	}
	counts := map[[3]uint8]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			counts[rgb(img, x, y)]++
		}
	}
	// A box, not a stray pixel: at least a few thousand pixels.
	switch {
	case counts[protectedColor] > 2000:
		return "protected", nil
	case counts[notProtectedColor] > 2000:
		return "not protected", nil
	}
	return "", nil
}

func rgb(img image.Image, x, y int) [3]uint8 {
	r, g, b, _ := img.At(x, y).RGBA()
	return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
}

// Command runs a command-line client (curl, openssl s_client) and returns
// what it printed; stdin, if not empty, is sent to it.
func Command(cmd *exec.Cmd, stdin string) Outcome {
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := run(cmd)
	return Outcome{Body: out, Verdict: verdictIn(out), Err: err}
}
